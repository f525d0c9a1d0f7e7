"""Training tool for the classifier CNN (PyTorch, optional extra ``[train]``) and its ONNX export.

- :mod:`.spec`: the architecture as a formula-(1) spec string (``parse_spec``, ``tap_layout``);
- :mod:`.net`: the PyTorch module of a spec (``build_net``);
- :mod:`.data`: training images and labels (class folders, or the images' own colors as ab bins);
- :mod:`.loop`: the training loop with the paper's stopping rules (``train_classifier``, ``random_classifier``);
- :mod:`.export`: the ONNX export with the taps as extra outputs (``export_onnx``).

Labels come from a folder per class (``labels="folder"``, the paper's image classification) or, for images
without labels, from the images' own colors: ``"dominant"`` (each image's dominant Lab ab bin, predicted by
the FC head) or ``"pixel"`` (each pixel's ab bin, predicted from the hypercolumn by a 1x1 conv, so that the
taps themselves learn to predict color; the FC head is trained on the dominant bin at the same time).

PyTorch is imported only inside the functions that need it: importing this package is cheap.
"""

from .data import AbBins, list_images, skimage_photos, training_lab
from .export import export_onnx
from .loop import TrainResult, random_classifier, train_classifier
from .net import build_net
from .spec import DEFAULT_SPEC, Layer, parse_spec, tap_layout

__all__ = ["DEFAULT_SPEC", "Layer", "TrainResult", "AbBins", "parse_spec", "tap_layout", "build_net", "export_onnx",
           "train_classifier", "random_classifier", "skimage_photos", "list_images", "training_lab"]
