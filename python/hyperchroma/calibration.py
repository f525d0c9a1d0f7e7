"""How far a model can trust its colors on an image, learned at fit time from the training images themselves.

The failure of the method on images unlike the training ones is at image level (a gray-blue photo gets the
saturated colors of green and orange training photos), and no per-pixel signal predicts it. So:

- **descriptor**: how far an image is from what the model was fit on, as its keys see it: the mean over its
  pixels of the distance to the key(s) whose color was used (0 for exact hits, 1 for one-step neighbours,
  up to ``max_distance``; gray pixels count as :data:`FAR`);
- **what transfers**: at fit time, k-fold over the training images: a table filled without one fold
  colorizes that fold's images from their gray version, and each held-out image gives its descriptor ``m``
  and the chroma scale ``s`` in [0, 1] that is safe for its true colors: the smaller of the least-squares
  scale (``<ab, ab_true> / <ab, ab>``) and the scale with the best AuC (on a grid of 0.05), so the output is
  scaled no further than either PSNR or AuC supports (1 when the colors transfer, 0 when gray would have been
  better);
- **confidence** of a new image: a kernel regression of ``s`` on ``m`` over those held-out images, decaying to
  0 beyond the largest ``m`` seen (cross-validation alone is over-optimistic for truly unrelated images:
  the distance term covers them). The model scales the image's chroma by it, so an image it cannot color
  comes back gray or nearly so, never with invented saturated colors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np

from .lookup import Status
from .metrics import auc

#: Distance a gray (unmatched) pixel counts for in the descriptor, and the clip of every pixel's distance.
FAR = 6.0
#: Held-out training images used for calibration at most (evenly spread over the training set).
MAX_IMAGES = 48
#: Smallest kernel bandwidth of the regression, in descriptor units.
MIN_BANDWIDTH = 0.2
#: Chroma scales tried for the AuC-best scale of a held-out image.
AUC_SCALES = np.linspace(0.0, 1.0, 21)


def descriptor(status: np.ndarray, distance: np.ndarray, clipped: Optional[np.ndarray] = None,
               mask: Optional[np.ndarray] = None) -> float:
    """Mean clipped key distance of an image's pixels (gray pixels count :data:`FAR`). ``clipped`` (float32) and
    ``mask`` (bool), shaped like ``status``: scratch arrays to use instead of allocating."""
    d = np.minimum(distance, np.float32(FAR), out=clipped)
    np.copyto(d, np.float32(FAR), where=np.equal(status, Status.GRAY, out=mask))
    return float(d.mean(dtype=np.float64)) if d.size else FAR


def optimal_scale(ab_pred: np.ndarray, ab_true: np.ndarray) -> float:
    """The chroma scale s in [0, 1] minimizing ||s ab_pred - ab_true||^2 (0 when the prediction is gray)."""
    p = ab_pred.reshape(-1, 2).astype(np.float64)
    t = ab_true.reshape(-1, 2).astype(np.float64)
    pp = float((p * p).sum())
    return 0.0 if pp <= 1e-9 else float(np.clip((p * t).sum() / pp, 0.0, 1.0))


def auc_scale(ab_pred: np.ndarray, ab_true: np.ndarray) -> float:
    """The chroma scale in :data:`AUC_SCALES` with the best AuC (the largest of equals)."""
    p = np.asarray(ab_pred, np.float32).reshape(-1, 2)
    t = np.asarray(ab_true, np.float32).reshape(-1, 2)
    scores = [auc(np.float32(a) * p, t) for a in AUC_SCALES]
    best = max(scores)
    return float(max(a for a, v in zip(AUC_SCALES, scores) if v >= best))


def safe_scale(ab_pred: np.ndarray, ab_true: np.ndarray) -> float:
    """The calibration target: the smaller of the least-squares and the AuC-best chroma scale."""
    return min(optimal_scale(ab_pred, ab_true), auc_scale(ab_pred, ab_true))


@dataclass(frozen=True)
class Calibration:
    """The held-out images' descriptors ``m`` (k,) and best chroma scales ``s`` (k,), float64."""

    m: np.ndarray
    s: np.ndarray

    def __post_init__(self) -> None:
        m = np.asarray(self.m, np.float64).reshape(-1)
        s = np.asarray(self.s, np.float64).reshape(-1)
        if m.shape != s.shape or m.size < 1:
            raise ValueError(f"calibration: expected equal non-empty m and s, got {m.shape} and {s.shape}")
        if not (np.all(np.isfinite(m)) and np.all(np.isfinite(s))) or np.any(s < 0) or np.any(s > 1):
            raise ValueError("calibration: m must be finite and s in [0, 1]")
        object.__setattr__(self, "m", m)
        object.__setattr__(self, "s", s)

    @property
    def bandwidth(self) -> float:
        return max(MIN_BANDWIDTH, 0.5 * float(self.m.std()))

    def confidence(self, m: float) -> float:
        """Confidence in [0, 1] of an image with descriptor ``m``."""
        h = self.bandwidth
        w = np.exp(-0.5 * ((m - self.m) / h) ** 2)
        value = float((w * self.s).sum() / w.sum()) if w.sum() > 1e-12 else float(self.s[np.argmin(abs(m - self.m))])
        beyond = max(0.0, m - float(self.m.max()))
        return float(np.clip(value * np.exp(-0.5 * (beyond / h) ** 2), 0.0, 1.0))


Colorizer = Callable[[int], Tuple[np.ndarray, np.ndarray, np.ndarray]]


def calibrate(truths: Sequence[np.ndarray], make_colorizer: Callable[[List[int]], Colorizer],
              folds: int) -> Calibration:
    """k-fold calibration over training images.

    ``truths[i]`` is image i's true model-size ab; ``make_colorizer(train)`` fills a table from the images
    ``train`` only and returns ``colorize(i) -> (smoothed ab, status, distance)`` for a held-out image ``i``.
    """
    n = len(truths)
    if n < 2:
        raise ValueError("calibration needs at least 2 training images")
    k = max(2, min(folds, n))
    fold_of = np.arange(n) % k
    ms, ss = [], []
    for f in range(k):
        colorize = make_colorizer([i for i in range(n) if fold_of[i] != f])
        for i in np.flatnonzero(fold_of == f):
            ab, status, distance = colorize(int(i))
            ms.append(descriptor(status, distance))
            ss.append(safe_scale(ab, truths[int(i)]))
    return Calibration(np.array(ms), np.array(ss))
