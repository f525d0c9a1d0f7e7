"""What image sizes a foreign CNN accepts, and how the gray input is fitted to them.

- **any size** (most CNNs): the image is run as it is;
- **a stride multiple** (FPN/YOLO-style models whose Concat/Add of upsampled maps needs both sides to be
  multiples of e.g. 32): the image is reflect-padded at the bottom and right to the multiple; the tap maps
  then cover that padded *frame*, and keys are made on the frame and cropped back to the image, so every
  key stays aligned with its pixel;
- **a fixed size** (models with hard-coded shapes): the image is resized to it; the maps cover the whole
  image, so the frame is the image itself.

:func:`probe_geometry` finds which, by running the model on a few sizes (a model that fails at odd sizes but
runs at them padded to a power of two has that multiple); the result is recorded in the runtime model's
metadata, so a saved classifier is not probed again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Callable

import numpy as np

#: Size of the probe image (square) every foreign model is first run at.
PROBE_SIZE = 224
#: Odd sizes that tell whether a model needs a stride multiple (neither is a multiple of 2).
ODD_SIZE = (169, 223)
#: Stride multiples tried, smallest first.
MULTIPLES = (2, 4, 8, 16, 32, 64, 128)


def _up(n: int, m: int) -> int:
    return -(-n // m) * m


@dataclass(frozen=True)
class Geometry:
    """How a model's input is fitted: padded to a ``multiple`` of its stride, or resized to a ``fixed``
    (height, width); ``Geometry()`` runs images as they are."""

    multiple: int = 1
    fixed: tuple[int, int] | None = None
    one_at_a_time: bool = False  #: the model runs batches of one only (a static batch dimension)

    def input_shape(self, h: int, w: int) -> tuple[int, int]:
        """The (height, width) the model is run at for an (h, w) image."""
        if self.fixed is not None:
            return self.fixed
        return _up(h, self.multiple), _up(w, self.multiple)

    def frame(self, h: int, w: int) -> tuple[int, int]:
        """The (height, width), in image pixels, that the tap maps of an (h, w) image cover: the padded image
        (its top-left (h, w) is the image), or the image itself when it is run as is or resized."""
        if self.fixed is not None:
            return h, w
        return _up(h, self.multiple), _up(w, self.multiple)

    def fit_input(self, x: np.ndarray) -> np.ndarray:
        """(N, h, w) float32 gray -> (N, H, W) at :meth:`input_shape` (reflect-padded or resized)."""
        _n, h, w = x.shape
        H, W = self.input_shape(h, w)
        if (H, W) == (h, w):
            return x
        if self.fixed is not None:
            from ..images import resize_float

            return np.stack([resize_float(im, (H, W)) for im in x])
        # reflect needs a side of 2+ pixels; a 1-pixel side repeats its edge
        pads = ((0, 0), (0, H - h), (0, W - w))
        if h >= 2 and w >= 2:
            return np.pad(x, pads, mode="reflect")
        return np.pad(x, pads, mode="edge")

    def describe(self) -> str:
        if self.fixed is not None:
            return f"fixed size {self.fixed[0]}x{self.fixed[1]}: images are resized to it"
        if self.multiple > 1:
            return f"sides must be multiples of {self.multiple}: images are reflect-padded to them, keys cropped back"
        return "any size"

    def describe_batch(self) -> str:
        return "one image at a time (a static batch of 1)" if self.one_at_a_time else "batches"

    def to_json(self) -> str:
        return json.dumps({"multiple": self.multiple, "fixed": list(self.fixed) if self.fixed else None,
                           "one_at_a_time": self.one_at_a_time})

    @classmethod
    def from_json(cls, text: str | None) -> Geometry:
        if not text:
            return cls()
        try:
            d = json.loads(text)
            fixed = d.get("fixed")
            g = cls(int(d.get("multiple", 1)), (int(fixed[0]), int(fixed[1])) if fixed else None,
                    bool(d.get("one_at_a_time", False)))
        except (ValueError, TypeError, KeyError, IndexError):
            raise ValueError(f"unreadable input geometry {text!r} in the classifier's metadata") from None
        if g.multiple < 1 or (g.fixed is not None and min(g.fixed) < 1):
            raise ValueError(f"invalid input geometry {text!r} in the classifier's metadata")
        return g


def probe_geometry(fails: Callable[..., str | None], static: tuple[int | None, int | None] | None,
                   origin: str) -> Geometry:
    """The :class:`Geometry` of a model, from runs on a few sizes; ``fails(h, w, n=1)`` runs it on n (h, w)
    images and returns the error's text, or None when it ran; ``static`` is the input size it declares
    (either side may be None: symbolic)."""
    g = _sizes(fails, static, origin)
    H, W = g.input_shape(PROBE_SIZE, PROBE_SIZE)
    if fails(H, W, 2) is not None:
        return Geometry(g.multiple, g.fixed, one_at_a_time=True)
    return g


def _sizes(fails: Callable[..., str | None], static: tuple[int | None, int | None] | None, origin: str) -> Geometry:
    first = fails(PROBE_SIZE, PROBE_SIZE)
    if first is None:
        a, b = ODD_SIZE
        if fails(a, b) is None:
            return Geometry()
        for m in MULTIPLES:
            if fails(_up(a, m), _up(b, m)) is None and fails(_up(b, m), _up(a, m)) is None:
                return Geometry(multiple=m)
    size = None if static is None else (static[0] or PROBE_SIZE, static[1] or PROBE_SIZE)
    if size is not None and size != (PROBE_SIZE, PROBE_SIZE) and fails(*size) is None:
        return Geometry(fixed=size)  # a declared side (e.g. a text model's height 64) fixed, the other probed
    if first is None:  # runs only at the probe size
        return Geometry(fixed=(PROBE_SIZE, PROBE_SIZE))
    where = f" (nor at its declared {size[0]}x{size[1]})" if size else ""
    raise ValueError(f"{origin}: the model fails on a {PROBE_SIZE}x{PROBE_SIZE} input{where}: {first}")
