import numpy as np
import pytest

from hyperchroma import metrics


def test_psnr(rng):
    a = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    assert metrics.psnr(a, a) == float("inf")
    b = a.astype(int)
    b[0, 0, 0] = (b[0, 0, 0] + 51) % 256
    mse = ((a.astype(float) - b) ** 2).mean() / 255**2
    assert metrics.psnr(a, b.astype(np.uint8)) == pytest.approx(10 * np.log10(1 / mse))
    with pytest.raises(ValueError):
        metrics.psnr(a, a[:4])


def test_auc_matches_definition(rng):
    p = rng.normal(0, 40, (50, 40, 2))
    t = rng.normal(0, 40, (50, 40, 2))
    d = np.sqrt(((p - t) ** 2).sum(-1)).ravel()
    ref = np.mean([np.mean(d <= th) for th in range(151)])
    assert metrics.auc(p, t) == pytest.approx(ref)
    assert metrics.auc(t, t) == 1.0


def test_colorfulness():
    gray = np.full((4, 4, 3), 128, np.uint8)
    assert metrics.colorfulness(gray) == 0.0
    red = np.zeros((4, 4, 3), np.uint8)
    red[..., 0] = 255
    # rg = 255, yb = 127.5, no spread: 0.3 * sqrt(255^2 + 127.5^2)
    assert metrics.colorfulness(red) == pytest.approx(0.3 * np.hypot(255, 127.5))
