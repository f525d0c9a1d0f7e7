"""Cut detection between consecutive frames from their model-size gray images and the flow between them.

A cut is declared when the gray-level histograms of the two frames differ strongly, or when almost no pixel
can be followed from one frame to the other (flow consistent forward-backward and gray levels agreeing).
The second test catches cuts between shots of similar brightness; a shot change so fast that the flow fails
everywhere is treated like a cut, which is harmless: propagation would carry nothing across it anyway.
"""

from __future__ import annotations

import numpy as np

BINS = 32


def histogram(gray_small: np.ndarray) -> np.ndarray:
    """Normalized gray-level histogram (BINS,) float64 of a uint8 image."""
    h = np.bincount((gray_small.ravel() >> 3).astype(np.intp), minlength=BINS).astype(np.float64)
    return h / max(h.sum(), 1.0)


def histogram_distance(h1: np.ndarray, h2: np.ndarray) -> float:
    """Total variation distance in [0, 1] between two normalized histograms."""
    return float(0.5 * np.abs(h1 - h2).sum())


class CutDetector:
    """Decides, frame by frame, whether a new shot starts.

    ``hist_threshold``: histogram distance above which two frames are in different shots.
    ``follow_threshold``: share of reliably followed pixels below which they are too.
    """

    def __init__(self, hist_threshold: float = 0.5, follow_threshold: float = 0.2):
        self.hist_threshold = float(hist_threshold)
        self.follow_threshold = float(follow_threshold)

    def is_cut(self, hist_prev: np.ndarray, hist_cur: np.ndarray, followed_share: float) -> bool:
        return (histogram_distance(hist_prev, hist_cur) > self.hist_threshold
                or followed_share < self.follow_threshold)
