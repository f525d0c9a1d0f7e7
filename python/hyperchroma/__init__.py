"""hyperchroma: colorize grayscale images with a CNN classifier's hypercolumns and a hash table."""

from . import core
from .classifier import Classifier, TapInfo

__version__ = "0.1.0"
__all__ = ["core", "__version__", "Classifier", "TapInfo"]
