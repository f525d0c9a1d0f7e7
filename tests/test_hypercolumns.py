"""Hypercolumn kernels against slow, obvious references (OpenCV resize, a numpy bilinear, numpy quantize/pack)."""

import cv2
import numpy as np
import pytest

from hyperchroma import core


def bilinear_numpy(maps, H, W):
    """Half-pixel bilinear with clamped edges, written out directly (the reference for the convention)."""
    C, h, w = maps.shape

    def taps(src, dst):
        s = (np.arange(dst) + 0.5) * (src / dst) - 0.5
        s = np.maximum(s, 0)
        i0 = np.floor(s).astype(int)
        f = s - i0
        f[i0 >= src - 1] = 0
        i0 = np.minimum(i0, src - 1)
        i1 = np.minimum(i0 + 1, src - 1)
        return i0, i1, f

    y0, y1, fy = taps(h, H)
    x0, x1, fx = taps(w, W)
    m = maps.astype(np.float64)
    top = m[:, y0][:, :, x0] * (1 - fx) + m[:, y0][:, :, x1] * fx
    bot = m[:, y1][:, :, x0] * (1 - fx) + m[:, y1][:, :, x1] * fx
    return (top * (1 - fy)[:, None] + bot * fy[:, None]).astype(np.float32)


def quantize_pack_numpy(hc, thresholds, weights, levels):
    """The fused kernel's contract, the slow way: level = #thresholds <= value; pack; weighted sum."""
    n, C = hc.shape
    q = np.zeros((n, C), np.uint64)
    for c in range(C):
        q[:, c] = np.searchsorted(thresholds[c], hc[:, c], side="right")
    bits = int(np.ceil(np.log2(levels)))
    fpw = 64 // bits
    words = -(-C // fpw)
    keys = np.zeros((n, words), np.uint64)
    for c in range(C):
        keys[:, c // fpw] |= q[:, c] << np.uint64((c % fpw) * bits)
    sums = (q.astype(np.float64) * weights.astype(np.float64)).sum(axis=1)
    return keys, sums, q.astype(np.uint8)


def random_pyramid(rng, H, W):
    # The paper's taps: 15, 25 channels at stride 1; 4, 4 at stride 2; 4, 4 at stride 4.
    specs = [(15, 1), (25, 1), (4, 2), (4, 2), (4, 4), (4, 4)]
    return [
        rng.standard_normal((c, max(1, H // s), max(1, W // s))).astype(np.float32) for c, s in specs
    ]


@pytest.mark.parametrize("shape", [(3, 7, 9, 20, 31), (2, 1, 1, 5, 4), (1, 8, 8, 8, 8), (4, 13, 5, 6, 3), (2, 3, 4, 1, 1)])
def test_upsample_matches_opencv_and_reference(rng, shape):
    C, h, w, H, W = shape
    maps = rng.standard_normal((C, h, w)).astype(np.float32)
    out = core.upsample_bilinear(maps, H, W)
    assert out.shape == (C, H, W) and out.dtype == np.float32
    np.testing.assert_allclose(out, bilinear_numpy(maps, H, W), atol=1e-5)
    ref = np.stack([cv2.resize(m, (W, H), interpolation=cv2.INTER_LINEAR) for m in maps])
    np.testing.assert_allclose(out, ref, atol=1e-4)


def test_upsample_matches_torch_align_corners_false(rng):
    torch = pytest.importorskip("torch")
    maps = rng.standard_normal((5, 11, 7)).astype(np.float32)
    ref = torch.nn.functional.interpolate(
        torch.from_numpy(maps)[None], size=(37, 29), mode="bilinear", align_corners=False
    )[0].numpy()
    np.testing.assert_allclose(core.upsample_bilinear(maps, 37, 29), ref, atol=1e-4)


def test_upsample_threads_and_noncontiguous(rng):
    big = rng.standard_normal((6, 20, 30)).astype(np.float32)
    maps = big[::2, ::2, ::3]  # non-contiguous view
    assert not maps.flags.c_contiguous
    one = core.upsample_bilinear(maps, 41, 23, threads=1)
    np.testing.assert_array_equal(one, core.upsample_bilinear(np.ascontiguousarray(maps), 41, 23))
    np.testing.assert_array_equal(one, core.upsample_bilinear(maps, 41, 23, threads=2))
    # float64 input is converted (forcecast), same numbers
    np.testing.assert_array_equal(one, core.upsample_bilinear(maps.astype(np.float64), 41, 23))


def test_hypercolumns_concatenate_upsampled_maps(rng):
    H, W = 23, 17
    maps = random_pyramid(rng, H, W)
    hc = core.hypercolumns(maps, H, W)
    assert hc.shape == (H * W, 56) and hc.dtype == np.float32
    ref = np.concatenate([bilinear_numpy(m, H, W) for m in maps]).reshape(56, -1).T
    np.testing.assert_allclose(hc, ref, atol=1e-5)
    # exactly the per-map upsampling kernel, laid out pixel-major
    up = np.concatenate([core.upsample_bilinear(m, H, W) for m in maps]).reshape(56, -1).T
    np.testing.assert_array_equal(hc, up)


@pytest.mark.parametrize("levels", [2, 3, 4, 5, 8, 16, 256])
@pytest.mark.parametrize("size", [(24, 32), (1, 1), (7, 3)])
def test_fused_keys_equal_quantized_materialized(rng, levels, size):
    H, W = size
    maps = random_pyramid(rng, max(H, 4), max(W, 4))
    hc = core.hypercolumns(maps, H, W)
    # thresholds: per-channel quantiles (the fit's rule), plus ties at exact values
    qs = np.linspace(0, 1, levels + 1)[1:-1]
    thresholds = np.quantile(hc, qs, axis=0).T.astype(np.float32)
    thresholds = np.sort(thresholds, axis=1)
    weights = rng.standard_normal(56).astype(np.float32)
    keys, sums = core.hypercolumn_keys(maps, H, W, thresholds, weights, threads=2)
    rkeys, rsums, q = quantize_pack_numpy(hc, thresholds, weights, levels)
    assert keys.dtype == np.uint64 and keys.shape == (H * W, core.key_words(56, levels))
    np.testing.assert_array_equal(keys, rkeys)
    np.testing.assert_allclose(sums, rsums, rtol=1e-5, atol=1e-3)
    np.testing.assert_array_equal(core.unpack_keys(keys, 56, levels), q)
    np.testing.assert_array_equal(core.pack_keys(q, levels), keys)


def test_value_equal_to_threshold_goes_up(rng):
    maps = [np.array([[[0.0, 1.0], [2.0, 3.0]]], np.float32)]
    thr = np.array([[1.0, 2.0]], np.float32)
    keys, sums = core.hypercolumn_keys(maps, 2, 2, thr, np.ones(1, np.float32))
    np.testing.assert_array_equal(keys[:, 0], [0, 1, 2, 2])
    np.testing.assert_array_equal(sums, [0, 1, 2, 2])


def test_key_layout():
    assert core.key_words(56, 3) == 2 and core.key_words(56, 4) == 2
    assert core.key_words(32, 4) == 1 and core.key_words(33, 4) == 2
    assert core.key_words(21, 5) == 1 and core.key_words(22, 5) == 2  # 3-bit fields never straddle words
    assert core.key_words(8, 256) == 1 and core.key_words(9, 256) == 2


def test_bad_inputs_raise_clear_errors(rng):
    maps = random_pyramid(rng, 8, 8)
    thr = np.zeros((56, 2), np.float32)
    w = np.ones(56, np.float32)
    with pytest.raises(ValueError, match=r"\(C,h,w\)"):
        core.upsample_bilinear(np.zeros((4, 4), np.float32), 8, 8)
    with pytest.raises(ValueError, match="at least 1x1"):
        core.upsample_bilinear(np.zeros((1, 4, 4), np.float32), 0, 0)
    with pytest.raises(ValueError, match="empty"):
        core.upsample_bilinear(np.zeros((1, 0, 4), np.float32), 2, 2)
    with pytest.raises(ValueError, match="at least one"):
        core.hypercolumns([], 4, 4)
    with pytest.raises(ValueError, match=r"maps\[1\]"):
        core.hypercolumns([maps[0], np.zeros((3, 3), np.float32)], 4, 4)
    with pytest.raises(ValueError, match="thresholds"):
        core.hypercolumn_keys(maps, 8, 8, np.zeros((55, 2), np.float32), w)
    with pytest.raises(ValueError, match="weights"):
        core.hypercolumn_keys(maps, 8, 8, thr, np.ones(3, np.float32))
    with pytest.raises(ValueError, match="sorted"):
        core.hypercolumn_keys(maps, 8, 8, np.tile([[1.0, 0.0]], (56, 1)).astype(np.float32), w)
    with pytest.raises(ValueError, match="NaN"):
        core.hypercolumn_keys(maps, 8, 8, np.full((56, 2), np.nan, np.float32), w)
    with pytest.raises(ValueError, match="levels"):
        core.hypercolumn_keys(maps, 8, 8, np.zeros((56, 256), np.float32), w)
    with pytest.raises(TypeError):
        core.hypercolumns([np.array([["a"]])], 4, 4)
    with pytest.raises(ValueError, match="out of range"):
        core.pack_keys(np.full((2, 3), 3, np.uint8), 3)
    with pytest.raises(TypeError, match="uint64"):
        core.unpack_keys(np.zeros((2, 2), np.float64), 56, 3)
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        core.unpack_keys(np.zeros((2, 3), np.uint64), 56, 3)


def test_sizes_beyond_int_are_refused():
    m = np.ones((1, 2, 2), np.float32)
    with pytest.raises(ValueError, match="too large"):
        core.upsample_bilinear(m, 2**32 + 1, 1)
    with pytest.raises(ValueError, match="too large"):
        core.hypercolumns([m], 1, 2**32 + 1)


@pytest.mark.parametrize("fn", [lambda a: core.rgb_to_lab(a), lambda a: core.gray_to_lightness(a[..., 0]),
                                lambda a: core.pack_keys(a, 3)])
def test_uint8_kernels_refuse_other_dtypes(fn):
    with pytest.raises(TypeError, match="uint8"):
        fn(np.array([[300.0, -5, 1.5]]))
    with pytest.raises(TypeError, match="uint8"):
        fn(np.array([[3, 1, 1]], np.int64))
