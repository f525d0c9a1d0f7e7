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
    mse = np.mean((pred.astype(np.float64) - true.astype(np.float64)) ** 2) / 255.0**2
    return float("inf") if mse == 0 else float(10 * np.log10(1.0 / mse))


def auc(ab_pred: np.ndarray, ab_true: np.ndarray) -> float:
    """Area under the cumulative ab-error curve over thresholds 0..150, in [0, 1]."""
    if ab_pred.shape != ab_true.shape:
        raise ValueError(f"auc: shapes differ: {ab_pred.shape} vs {ab_true.shape}")
    d = np.sqrt(((ab_pred.astype(np.float64) - ab_true.astype(np.float64)) ** 2).sum(axis=-1)).ravel()
    d.sort()
    # share of pixels with d <= t, for every t
    cdf = np.searchsorted(d, AUC_THRESHOLDS, side="right") / max(d.size, 1)
    return float(cdf.mean())


def colorfulness(rgb: np.ndarray) -> float:
    """Hasler-Suesstrunk colorfulness of a uint8 RGB image (0 for gray)."""
    x = rgb.reshape(-1, 3).astype(np.float64)
    rg = x[:, 0] - x[:, 1]
    yb = 0.5 * (x[:, 0] + x[:, 1]) - x[:, 2]
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))
