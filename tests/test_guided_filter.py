"""Guided filter against a plain float64 numpy reference of He et al.'s Algorithm 1 (box sums by cumsum)."""

import numpy as np
import pytest

from hyperchroma import core


def box_mean(x, r):
    """Mean over the (2r+1)^2 window clipped to the image: window sum (2-D cumulative sums) / pixel count."""
    H, W = x.shape[:2]
    c = np.zeros((H + 1, W + 1) + x.shape[2:])
    c[1:, 1:] = np.cumsum(np.cumsum(x, 0), 1)
    y0, y1 = np.clip(np.arange(H) - r, 0, H), np.clip(np.arange(H) + r + 1, 0, H)
    x0, x1 = np.clip(np.arange(W) - r, 0, W), np.clip(np.arange(W) + r + 1, 0, W)
    s = c[y1][:, x1] - c[y0][:, x1] - c[y1][:, x0] + c[y0][:, x0]
    n = np.outer(y1 - y0, x1 - x0).astype(np.float64)
    return s / (n if x.ndim == 2 else n[..., None])


def guided_ref(guide, src, r, eps):
    I = guide.astype(np.float64)
    p = src.astype(np.float64)
    flat = p.ndim == 2
    if flat:
        p = p[..., None]
    Ic = I[..., None]
    mI, mp = box_mean(I, r)[..., None], box_mean(p, r)
    var = box_mean(I * I, r)[..., None] - mI * mI
    cov = box_mean(Ic * p, r) - mI * mp
    a = cov / (var + eps)
    b = mp - a * mI
    q = box_mean(a, r) * Ic + box_mean(b, r)
    return q[..., 0] if flat else q


def inputs(rng, h, w, c=2):
    guide = rng.uniform(0, 255, (h, w)).astype(np.float32)
    # a guide with edges: some flat regions, so a is not ~0 everywhere
    guide[: h // 2] = np.round(guide[: h // 2] / 64) * 64
    src = (rng.standard_normal((h, w, c)) * 30 + 0.2 * guide[..., None]).astype(np.float32)
    return guide, src


@pytest.mark.parametrize("h,w", [(1, 1), (1, 7), (9, 1), (17, 23), (64, 48), (101, 37)])
@pytest.mark.parametrize("r,eps", [(1, 1.0), (2, 100.0), (4, 400.0), (13, 25.0)])
def test_matches_reference(rng, h, w, r, eps):
    guide, src = inputs(rng, h, w)
    got = core.guided_filter(guide, src, r, eps)
    assert got.shape == src.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, guided_ref(guide, src, r, eps), rtol=0, atol=1e-4)


def test_radius_larger_than_image(rng):
    guide, src = inputs(rng, 11, 6)
    for r in (6, 11, 50, 10**9):
        np.testing.assert_allclose(core.guided_filter(guide, src, r, 50.0), guided_ref(guide, src, min(r, 11), 50.0),
                                   atol=1e-4)


def test_radius_zero_is_identity(rng):
    guide, src = inputs(rng, 13, 9)
    np.testing.assert_array_equal(core.guided_filter(guide, src, 0, 1.0), src)


def test_constant_guide_gives_box_mean(rng):
    # var_I = 0 -> a = 0, b = mean(p), q = mean(b): the box mean applied twice (the filter's two box passes).
    _, src = inputs(rng, 30, 41)
    guide = np.full((30, 41), 77.0, np.float32)
    twice = box_mean(box_mean(src.astype(np.float64), 3), 3)
    np.testing.assert_allclose(core.guided_filter(guide, src, 3, 1e-2), twice, atol=1e-4)


def test_constant_src_is_kept(rng):
    guide, _ = inputs(rng, 20, 20)
    src = np.full((20, 20, 2), -12.5, np.float32)
    np.testing.assert_allclose(core.guided_filter(guide, src, 4, 10.0), src, atol=1e-4)


def test_edges_are_kept(rng):
    # A step edge in the guide and in src: with a small eps the filter keeps the edge, a box filter blurs it.
    guide = np.zeros((40, 40), np.float32)
    guide[:, 20:] = 200
    src = np.zeros((40, 40, 2), np.float32)
    src[:, 20:] = 50
    src += rng.standard_normal(src.shape).astype(np.float32)
    q = core.guided_filter(guide, src, 5, 10.0)
    assert np.abs(q[:, :20]).max() < 2 and np.abs(q[:, 20:] - 50).max() < 2
    assert np.std(q[:, 25:35]) < np.std(src[:, 25:35]) / 3  # and smooths the noise


def test_single_channel_and_other_channel_counts(rng):
    guide, src = inputs(rng, 19, 27, c=3)
    np.testing.assert_allclose(core.guided_filter(guide, src, 2, 30.0), guided_ref(guide, src, 2, 30.0), atol=1e-4)
    flat = np.ascontiguousarray(src[..., 1])
    np.testing.assert_allclose(core.guided_filter(guide, flat, 2, 30.0), guided_ref(guide, flat, 2, 30.0), atol=1e-4)


def test_non_contiguous_and_cast_inputs(rng):
    guide, src = inputs(rng, 40, 60)
    want = core.guided_filter(guide, src, 3, 20.0)
    g_big = np.zeros((80, 60), np.float32)
    g_big[::2] = guide
    s_t = np.ascontiguousarray(src.transpose(1, 0, 2)).transpose(1, 0, 2)
    np.testing.assert_array_equal(core.guided_filter(g_big[::2], s_t, 3, 20.0), want)
    np.testing.assert_array_equal(core.guided_filter(guide.astype(np.float64), src.astype(np.float64), 3, 20.0), want)
    g8 = rng.integers(0, 256, (40, 60), dtype=np.uint8)
    np.testing.assert_array_equal(core.guided_filter(g8, src, 3, 20.0),
                                  core.guided_filter(g8.astype(np.float32), src, 3, 20.0))


def test_threads_give_identical_results(rng):
    # tall enough that 2 and 3 threads really run (a thread is started per ~64k pixels)
    guide, src = inputs(rng, 1501, 101)
    want = core.guided_filter(guide, src, 5, 40.0)
    for threads in (2, 3, 0):
        np.testing.assert_array_equal(core.guided_filter(guide, src, 5, 40.0, threads=threads), want)
    want = core.guided_filter(guide, src, 40, 40.0)
    np.testing.assert_array_equal(core.guided_filter(guide, src, 40, 40.0, threads=2), want)


def test_bad_arguments():
    g = np.zeros((8, 9), np.float32)
    s = np.zeros((8, 9, 2), np.float32)
    with pytest.raises(TypeError, match="real-valued"):
        core.guided_filter(g.astype(np.complex64), s, 1, 1.0)
    with pytest.raises(TypeError, match="real-valued"):
        core.guided_filter(g, s.astype(bool), 1, 1.0)
    with pytest.raises(ValueError, match=r"expected an \(h,w\)"):
        core.guided_filter(s, s, 1, 1.0)
    with pytest.raises(ValueError, match=r"expected \(8,9,C\)"):
        core.guided_filter(g, np.zeros((9, 8, 2), np.float32), 1, 1.0)
    with pytest.raises(ValueError, match="empty"):
        core.guided_filter(np.zeros((0, 9), np.float32), np.zeros((0, 9, 2), np.float32), 1, 1.0)
    with pytest.raises(ValueError, match="radius"):
        core.guided_filter(g, s, -1, 1.0)
    for eps in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="eps"):
            core.guided_filter(g, s, 1, eps)
    with pytest.raises(ValueError, match="threads"):
        core.guided_filter(g, s, 1, 1.0, threads=-1)
    bad = s.copy()
    bad[3, 4, 1] = np.nan
    with pytest.raises(ValueError, match="src has a non-finite value"):
        core.guided_filter(g, bad, 2, 1.0)
    bad = g.copy()
    bad[0, 0] = np.inf
    with pytest.raises(ValueError, match="guide has a non-finite value"):
        core.guided_filter(bad, s, 0, 1.0)


@pytest.mark.parametrize("scale,eps", [(1 / 255, 1e-4), (1 / 255, 1e-2), (1.0, 1e-3)])
def test_unit_range_guide_and_tiny_eps(rng, scale, eps):
    guide, src = inputs(rng, 57, 83)
    guide = (guide * scale).astype(np.float32)
    np.testing.assert_allclose(core.guided_filter(guide, src, 4, eps), guided_ref(guide, src, 4, eps), atol=1e-4,
                               rtol=1e-6)
