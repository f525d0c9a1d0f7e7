"""The paper's test-stage metrics, each with its all-gray baseline (input L, zero ab).

- PSNR on RGB scaled to [0, 1].
- AuC: per pixel d = ||ab_pred - ab_true||; the share of pixels with d <= t for t = 0..150, averaged over t
  (raw accuracy, Zhang et al. 2016).
- Colorfulness: Hasler and Suesstrunk 2003 on 0..255 RGB, signed opponent channels.
"""

from __future__ import annotations

import numpy as np

AUC_THRESHOLDS = np.arange(151, dtype=np.float64)


def psnr(pred: np.ndarray, true: np.ndarray) -> float:
    """PSNR in dB between two uint8 RGB images; inf when they are equal."""
    if pred.shape != true.shape:
        raise ValueError(f"psnr: shapes differ: {pred.shape} vs {true.shape}")
    diff = pred.astype(np.int16) - true.astype(np.int16)
    mse = float(np.einsum("i,i->", diff.ravel(), diff.ravel(), dtype=np.int64)) / max(diff.size, 1) / 255.0**2
    return float("inf") if mse == 0 else float(10 * np.log10(1.0 / mse))


def auc(ab_pred: np.ndarray, ab_true: np.ndarray) -> float:
    """Area under the cumulative ab-error curve over thresholds 0..150, in [0, 1]."""
    if ab_pred.shape != ab_true.shape:
        raise ValueError(f"auc: shapes differ: {ab_pred.shape} vs {ab_true.shape}")
    diff = np.asarray(ab_pred, np.float32) - np.asarray(ab_true, np.float32)
    d = np.sqrt(np.einsum("...i,...i->...", diff, diff, dtype=np.float32)).ravel()
    # share of pixels with d <= t for every integer t: d <= t exactly when ceil(d) <= t, so a histogram of
    # ceil(d) (no sort, float32, one pass) gives the cumulative curve
    last = len(AUC_THRESHOLDS)
    bins = np.minimum(np.ceil(d), last).astype(np.int64)
    cdf = np.cumsum(np.bincount(bins, minlength=last + 1)[:last]) / max(d.size, 1)
    return float(cdf.mean())


def colorfulness(rgb: np.ndarray) -> float:
    """Hasler-Suesstrunk colorfulness of a uint8 RGB image (0 for gray)."""
    x = rgb.reshape(-1, 3)
    r, g, b = (x[:, i].astype(np.float32) for i in range(3))
    rg = r - g
    yb = np.float32(0.5) * (r + g) - b
    std = np.hypot(rg.std(dtype=np.float64), yb.std(dtype=np.float64))
    return float(std + 0.3 * np.hypot(rg.mean(dtype=np.float64), yb.mean(dtype=np.float64)))
