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
  comes back gray or nearly so, never with invented saturated colors;
- **closer than any held-out image**: held out, a training image is as far from the rest as the training set
  is spread, so with diverse training images (keyframes of different shots) every held-out ``m`` is large and
  its ``s`` small, and the regression alone would give that small confidence even to a training image itself
  (``m`` = 0) and to frames next to one. Each calibration image is therefore also colorized by a table that
  holds it (in-sample: ``m_in``, ``s_in``, about 0 and 1), and below the smallest held-out ``m`` the
  confidence runs linearly from the in-sample mean to the regression's value there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
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
    """The held-out images' descriptors ``m`` (k,) and best chroma scales ``s`` (k,), float64; ``m_in`` and
    ``s_in``: the same images colorized in-sample (empty for models calibrated before they were kept)."""

    m: np.ndarray
    s: np.ndarray
    m_in: np.ndarray = field(default_factory=lambda: np.zeros(0))
    s_in: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def __post_init__(self) -> None:
        for a, b in (("m", "s"), ("m_in", "s_in")):
            m = np.asarray(getattr(self, a), np.float64).reshape(-1)
            s = np.asarray(getattr(self, b), np.float64).reshape(-1)
            if m.shape != s.shape or (a == "m" and m.size < 1):
                raise ValueError(f"calibration: expected equal non-empty {a} and {b}, got {m.shape} and {s.shape}")
            if not (np.all(np.isfinite(m)) and np.all(np.isfinite(s))) or np.any(s < 0) or np.any(s > 1):
                raise ValueError(f"calibration: {a} must be finite and {b} in [0, 1]")
            if np.any(m < 0):
                raise ValueError(f"calibration: {a} must not be negative")
            object.__setattr__(self, a, m)
            object.__setattr__(self, b, s)

    @property
    def bandwidth(self) -> float:
        return max(MIN_BANDWIDTH, 0.5 * float(self.m.std()))

    def _regression(self, m: float) -> float:
        h = self.bandwidth
        w = np.exp(-0.5 * ((m - self.m) / h) ** 2)
        value = float((w * self.s).sum() / w.sum()) if w.sum() > 1e-12 else float(self.s[np.argmin(abs(m - self.m))])
        beyond = max(0.0, m - float(self.m.max()))
        return value * float(np.exp(-0.5 * (beyond / h) ** 2))

    def confidence(self, m: float) -> float:
        """Confidence in [0, 1] of an image with descriptor ``m``."""
        m0 = float(self.m.min())
        if self.m_in.size and m < m0:
            a = float(self.m_in.mean())
            if m0 > a:  # linear from the in-sample mean (a, s_in) to the regression at the nearest held-out m
                t = max(0.0, (m - a) / (m0 - a))
                return float(np.clip((1 - t) * float(self.s_in.mean()) + t * self._regression(m0), 0.0, 1.0))
        return float(np.clip(self._regression(m), 0.0, 1.0))


Colorizer = Callable[[int], Tuple[np.ndarray, np.ndarray, np.ndarray]]


def calibrate(truths: Sequence[np.ndarray], make_colorizer: Callable[[List[int]], Colorizer],
              folds: int) -> Calibration:
    """k-fold calibration over training images, and each image in-sample (a table from all of them).

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
    colorize = make_colorizer(list(range(n)))  # in-sample: each image colorized by a table that holds it
    m_in, s_in = [], []
    for j in range(n):
        ab, status, distance = colorize(j)
        m_in.append(descriptor(status, distance))
        s_in.append(safe_scale(ab, truths[j]))
    return Calibration(np.array(ms), np.array(ss), np.array(m_in), np.array(s_in))
