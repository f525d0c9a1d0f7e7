"""The quantizer: per-channel thresholds that turn hypercolumns into levels, and the projection (weights of
the weighted sum) the sorted index orders keys by. Learned at fit time from sampled hypercolumns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Tuple

import numpy as np

from . import core


def learn_thresholds(samples: np.ndarray, levels: int) -> np.ndarray:
    """Per-channel thresholds (C, levels-1) splitting the samples (N, C) into equally filled levels.

    Ties are common (ReLU taps are mostly exact zeros), so each threshold splits what is left above the
    previous one, and always separates at least the lowest remaining value: a level is never empty by
    construction, as plain quantiles would make it.
    """
    n, C = samples.shape
    out = np.empty((C, levels - 1), np.float32)
    top = np.finfo(np.float32).max
    for c in range(C):
        s = np.sort(samples[:, c].astype(np.float32))
        start = 0
        for k in range(levels - 1):
            if start >= n:
                out[c, k:] = top
                break
            idx = min(n - 1, start + int(np.ceil((n - start) / (levels - k))))
            t = s[idx]
            if t <= s[start]:  # a tie mass at the bottom: put the cut just above it
                j = int(np.searchsorted(s, s[start], side="right"))
                t = s[j] if j < n else top
            out[c, k] = t
            start = int(np.searchsorted(s, t, side="left"))
    return out


def quantize(samples: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Levels (N, C) uint8 of hypercolumns (N, C): the number of a channel's thresholds at or below the value."""
    return np.stack([np.searchsorted(thresholds[c], samples[:, c], side="right")
                     for c in range(samples.shape[1])], axis=1).astype(np.uint8)


def projection_weights(levels_sample: np.ndarray) -> np.ndarray:
    """Unit-norm first principal component of quantized hypercolumns: the sorted index's projection."""
    q = levels_sample.astype(np.float64)
    q -= q.mean(axis=0)
    vals, vecs = np.linalg.eigh(q.T @ q)
    w = vecs[:, -1] if vals[-1] > 0 else np.ones(q.shape[1])
    if w.sum() < 0:
        w = -w
    return (w / np.linalg.norm(w)).astype(np.float32)


@dataclass(frozen=True)
class Quantizer:
    """Thresholds (C, levels-1) float32, sorted per channel, and projection weights (C,) float32."""

    thresholds: np.ndarray
    weights: np.ndarray

    def __post_init__(self) -> None:
        t = np.ascontiguousarray(self.thresholds, dtype=np.float32)
        w = np.ascontiguousarray(self.weights, dtype=np.float32)
        if t.ndim != 2 or t.shape[0] < 1 or t.shape[1] < 1:
            raise ValueError(f"thresholds: expected (channels, levels - 1), got shape {t.shape}")
        if w.shape != (t.shape[0],):
            raise ValueError(f"weights: expected ({t.shape[0]},) for {t.shape[0]} channels, got shape {w.shape}")
        if not (np.all(np.isfinite(w)) and not np.any(np.isnan(t))):
            raise ValueError("thresholds and weights must be numbers (no NaN; weights finite)")
        if t.shape[1] > 1 and np.any(np.diff(t, axis=1) < 0):
            raise ValueError("thresholds must be sorted per channel")
        object.__setattr__(self, "thresholds", t)
        object.__setattr__(self, "weights", w)

    @classmethod
    def learn(cls, samples: np.ndarray, levels: int) -> "Quantizer":
        """Learn thresholds (equal-fill levels) and the projection from sampled hypercolumns (N, C)."""
        if samples.ndim != 2 or samples.shape[0] < 1:
            raise ValueError(f"samples: expected (N >= 1, channels) hypercolumns, got shape {samples.shape}")
        thresholds = learn_thresholds(samples, levels)
        return cls(thresholds, projection_weights(quantize(samples, thresholds)))

    @property
    def channels(self) -> int:
        return int(self.thresholds.shape[0])

    @property
    def levels(self) -> int:
        return int(self.thresholds.shape[1]) + 1

    def keys(self, maps: Sequence[np.ndarray], shape: Tuple[int, int], threads: int = 1) -> np.ndarray:
        """Packed keys (h*w, words) uint64 of the tap maps upsampled to ``shape`` (fused C++ kernel)."""
        keys, _ = core.hypercolumn_keys(maps, shape[0], shape[1], self.thresholds, self.weights, threads=threads)
        return keys
