"""core.upsample_detail (cpp/detail_sampling.hpp) against a slow numpy reference."""

import numpy as np
import pytest

from hyperchroma import core


def reference(ab, H, W, details, motions, scale):
    """The kernel's contract in numpy: upsampled ab plus, per track, weight * bilinear sample / scale."""
    out = core.upsample_bilinear(ab, H, W).astype(np.float64)
    h, w = ab.shape[1:]
    sx, sy = np.float32(W / w), np.float32(H / h)
    for d, m in zip(details, motions):
        mu = core.upsample_bilinear(m, H, W)
        X = mu[0] * sx + (np.float32(0.5) * sx - np.float32(0.5))
        Y = mu[1] * sy + (np.float32(0.5) * sy - np.float32(0.5))
        wt = mu[2]
        with np.errstate(invalid="ignore"):
            ok = np.isfinite(wt) & (wt != 0) & np.isfinite(X) & np.isfinite(Y)
        X = np.clip(np.where(ok, X, 0), 0, W - 1)
        Y = np.clip(np.where(ok, Y, 0), 0, H - 1)
        x0, y0 = np.floor(X).astype(int), np.floor(Y).astype(int)
        x1, y1 = np.minimum(x0 + 1, W - 1), np.minimum(y0 + 1, H - 1)
        fx, fy = X - x0, Y - y0
        for c in range(2):
            p = d[..., c].astype(np.float64)
            v = ((1 - fx) * (1 - fy) * p[y0, x0] + fx * (1 - fy) * p[y0, x1] + (1 - fx) * fy * p[y1, x0]
                 + fx * fy * p[y1, x1])
            out[c] += np.where(ok, np.where(ok, wt, 0) * v / scale, 0)
    return out


@pytest.mark.parametrize("h,w,H,W", [(12, 16, 36, 50), (7, 9, 7, 9), (10, 13, 23, 13), (1, 1, 5, 4)])
def test_matches_reference(rng, h, w, H, W):
    ab = rng.normal(0, 20, (2, h, w)).astype(np.float32)
    details, motions = [], []
    for k in range(3):
        details.append(rng.integers(-3000, 3000, (H, W, 2)).astype(np.int16))
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        m = np.stack([xs + rng.normal(0, 2, (h, w)), ys + rng.normal(0, 2, (h, w)),
                      rng.uniform(0, 1, (h, w))]).astype(np.float32)
        m[2][rng.uniform(size=(h, w)) < 0.2] = 0  # weightless pixels
        m[0, 0, 0] = -50  # far outside: the border is replicated
        motions.append(m)
    got = core.upsample_detail(ab, H, W, details, motions, 64.0, threads=2)
    want = reference(ab, H, W, details, motions, 64.0)
    assert got.shape == (2, H, W) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=2e-3, rtol=1e-5)
    np.testing.assert_array_equal(got, core.upsample_detail(ab, H, W, details, motions, 64.0, threads=1))


def test_no_tracks_is_upsampling_and_identity_gives_the_detail_back(rng):
    ab = rng.normal(0, 20, (2, 8, 10)).astype(np.float32)
    up = core.upsample_bilinear(ab, 24, 30)
    np.testing.assert_array_equal(core.upsample_detail(ab, 24, 30, [], [], 64.0), up)
    ys, xs = np.mgrid[0:8, 0:10].astype(np.float32)
    d = rng.integers(-3000, 3000, (24, 30, 2)).astype(np.int16)
    m = np.stack([xs, ys, np.ones((8, 10), np.float32)])
    got = core.upsample_detail(ab, 24, 30, [d], [m], 64.0)
    # each pixel center maps onto itself, but in the outer pixel (sx / 2) where the upsampling clamps
    inner = (slice(None), slice(2, -2), slice(2, -2))
    np.testing.assert_allclose(got[inner], (up + np.moveaxis(d, -1, 0) / 64.0)[inner], atol=1e-3)


def test_non_finite_positions_and_weights_add_nothing(rng):
    ab = np.zeros((2, 4, 4), np.float32)
    d = np.full((8, 8, 2), 640, np.int16)
    m = np.ones((3, 4, 4), np.float32)
    m[0] = np.nan
    np.testing.assert_array_equal(core.upsample_detail(ab, 8, 8, [d], [m], 64.0), 0)
    m = np.ones((3, 4, 4), np.float32)
    m[2] = np.inf
    np.testing.assert_array_equal(core.upsample_detail(ab, 8, 8, [d], [m], 64.0), 0)


def test_bad_input():
    ab = np.zeros((2, 4, 4), np.float32)
    d = np.zeros((8, 8, 2), np.int16)
    m = np.zeros((3, 4, 4), np.float32)
    with pytest.raises(ValueError, match="ab"):
        core.upsample_detail(np.zeros((3, 4, 4), np.float32), 8, 8, [], [], 64.0)
    with pytest.raises(ValueError, match="one motion per detail"):
        core.upsample_detail(ab, 8, 8, [d], [], 64.0)
    with pytest.raises(ValueError, match="details\\[0\\]"):
        core.upsample_detail(ab, 8, 9, [d], [m], 64.0)
    with pytest.raises(ValueError, match="motions\\[0\\]"):
        core.upsample_detail(ab, 8, 8, [d], [np.zeros((3, 4, 5), np.float32)], 64.0)
    with pytest.raises(ValueError, match="scale"):
        core.upsample_detail(ab, 8, 8, [d], [m], 0.0)
