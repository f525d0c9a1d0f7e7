"""hyperchroma: colorize grayscale images with a CNN classifier's hypercolumns and a hash table.

>>> import hyperchroma as hc
>>> model = hc.fit(["frame1.jpg", "frame2.jpg"])   # color training images
>>> rgb = model.colorize("old_photo.png")          # uint8 (H, W, 3) at the input's resolution
>>> model.save("film.hyc"); model = hc.load("film.hyc")
"""

__version__ = "0.1.0"

from . import core
from .classifier import Classifier, TapInfo
from .images import ImageError, load_image
from .model import STATUS_EXACT, STATUS_GRAY, STATUS_NEAREST, Model, Settings, fit, load
from .model_file import ModelFileError

__all__ = [
    "core", "Classifier", "TapInfo", "ImageError", "load_image", "Model", "Settings", "fit", "load",
    "ModelFileError", "STATUS_EXACT", "STATUS_GRAY", "STATUS_NEAREST", "__version__",
]
