"""hyperchroma: colorize grayscale images with a CNN classifier's hypercolumns and a hash table."""

from . import core

__version__ = "0.1.0"
__all__ = ["core", "__version__"]
