"""The CNN classifier run through ONNX Runtime, with its conv layers' outputs ("taps") as the result.

:class:`Classifier` loads an ONNX CNN (by default the small classifier shipped in ``hyperchroma/models``),
builds from it a *runtime model* (:mod:`.graph`: tapping, pruning, normalization) and runs that in reused
``InferenceSession`` objects (:mod:`.runner`). Its ``metadata_props`` (:mod:`.metadata`) record the taps and
the input normalization, so that ``Classifier.from_bytes(clf.model_bytes)`` rebuilds exactly the same
classifier (same :attr:`Classifier.identity`).

Any ONNX CNN can be tapped: by default every ``Conv`` (its activation's output where a BatchNormalization
and/or an activation follows it alone) that carries per-pixel information, up to a channel cap
(:mod:`.choice`), or the tensors / nodes named in ``taps``. Input sizes are fitted to what the model accepts
(:mod:`.geometry`: padded to a stride multiple, or resized to a fixed size).

Providers (:mod:`.providers`): the CUDA execution provider when it is actually usable (the driver loads, a
device exists, the provider's libraries load), else the CPU one, chosen without printing anything;
``providers=`` overrides.
"""

from .choice import TapChoice
from .geometry import Geometry
from .metadata import GRAY_TAP, IMAGENET_MEAN, IMAGENET_STD, META_PREFIX, TapInfo, default_model_path
from .providers import available_providers, cuda_status, cuda_usable, resolve_providers
from .runner import Classifier

__all__ = ["Classifier", "TapInfo", "TapChoice", "Geometry", "default_model_path", "available_providers", "cuda_usable", "cuda_status",
           "resolve_providers", "GRAY_TAP", "IMAGENET_MEAN", "IMAGENET_STD", "META_PREFIX"]
