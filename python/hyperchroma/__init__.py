"""hyperchroma: colorize grayscale images with a CNN classifier's hypercolumns and a hash table.

>>> import hyperchroma as hc
>>> model = hc.fit(["frame1.jpg", "frame2.jpg"])   # color training images
>>> rgb = model.colorize("old_photo.png")          # uint8 (H, W, 3) at the input's resolution
>>> model.save("film.hyc"); model = hc.load("film.hyc")
"""

from ._version import __version__
from . import core
from .classifier import Classifier, TapInfo
from .images import ImageError, load_image
from .lookup import Status
from .model import Model, fit, load
from .model_file import ModelFileError
from .pipeline import Colorization
from .quantizer import Quantizer
from .settings import ColorizeSettings, FitSettings, Settings
from .table import ColorTable

#: Per-pixel status values (aliases of :class:`Status`).
STATUS_GRAY = Status.GRAY
STATUS_EXACT = Status.EXACT
STATUS_NEAREST = Status.NEAREST

__all__ = [
    "core", "Classifier", "TapInfo", "ImageError", "load_image", "Model", "fit", "load", "ModelFileError",
    "Colorization", "Status", "Settings", "FitSettings", "ColorizeSettings", "ColorTable", "Quantizer",
    "STATUS_EXACT", "STATUS_GRAY", "STATUS_NEAREST", "__version__",
]
