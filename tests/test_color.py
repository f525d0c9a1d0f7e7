"""Color conversion against a plain float64 numpy reference of the sRGB/D65/CIE Lab formulas."""

import numpy as np
import pytest

from hyperchroma import core

M = np.array([[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750], [0.0193339, 0.1191920, 0.9503041]])
WHITE = np.array([0.95047, 1.0, 1.08883])


def srgb_to_linear(v):
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(v):
    return np.where(v <= 0.0031308, v * 12.92, 1.055 * np.abs(v) ** (1 / 2.4) - 0.055)


def f(t):
    d = 6 / 29
    return np.where(t > d**3, np.cbrt(t), t / (3 * d * d) + 4 / 29)


def finv(t):
    d = 6 / 29
    return np.where(t > d, t**3, 3 * d * d * (t - 4 / 29))


def rgb_to_lab_ref(rgb):
    xyz = srgb_to_linear(rgb / 255.0) @ M.T / WHITE
    fx, fy, fz = f(xyz[..., 0]), f(xyz[..., 1]), f(xyz[..., 2])
    return np.stack([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)], axis=-1)


def lab_to_linear_ref(lab):
    fy = (lab[..., 0] + 16) / 116
    xyz = np.stack([finv(fy + lab[..., 1] / 500), finv(fy), finv(fy - lab[..., 2] / 200)], axis=-1) * WHITE
    return xyz @ np.linalg.inv(M).T


def test_rgb_to_lab_matches_reference(rng):
    rgb = rng.integers(0, 256, (37, 23, 3), dtype=np.uint8)
    L, ab = core.rgb_to_lab(rgb)
    assert L.shape == (37, 23) and ab.shape == (37, 23, 2) and L.dtype == np.float32
    ref = rgb_to_lab_ref(rgb.astype(np.float64))
    np.testing.assert_allclose(L, ref[..., 0], atol=1e-3)
    np.testing.assert_allclose(ab, ref[..., 1:], atol=1e-3)


def test_round_trip_in_gamut_is_exact(rng):
    rgb = rng.integers(0, 256, (4096, 3), dtype=np.uint8)
    L, ab = core.rgb_to_lab(rgb)
    np.testing.assert_array_equal(core.lab_to_rgb(L, ab), rgb)
    planar = np.ascontiguousarray(np.moveaxis(ab, -1, 0))
    np.testing.assert_array_equal(core.lab_to_rgb(L, planar, planar=True, threads=2), rgb)


def test_lab_to_rgb_rounds_like_reference(rng):
    # In-gamut random Lab: encode exactly like round(255 * srgb(linear)).
    L = rng.uniform(0, 100, 20000).astype(np.float32)
    ab = rng.uniform(-30, 30, (20000, 2)).astype(np.float32)
    lin = lab_to_linear_ref(np.column_stack([L, ab]).astype(np.float64))
    ok = np.all((lin >= 1e-6) & (lin <= 1 - 1e-6), axis=1)
    ref = np.round(255 * linear_to_srgb(lin[ok])).astype(int)
    got = core.lab_to_rgb(L, ab)[ok].astype(int)
    # exact except for values within float32 rounding of a decision boundary
    assert np.mean(got == ref) > 0.999
    assert np.abs(got - ref).max() <= 1


def test_out_of_gamut_keeps_lightness_and_hue(rng):
    L = rng.uniform(5, 95, 5000).astype(np.float32)
    ab = rng.uniform(-128, 127, (5000, 2)).astype(np.float32)
    rgb = core.lab_to_rgb(L, ab)
    L2, ab2 = core.rgb_to_lab(rgb)
    np.testing.assert_allclose(L2, L, atol=0.8)  # 8-bit rounding of each channel moves L a little
    chroma_in, chroma_out = np.hypot(*ab.T), np.hypot(*ab2.T)
    assert np.all(chroma_out <= chroma_in + 1.5)
    big = chroma_out > 10
    cos = (ab[big] * ab2[big]).sum(1) / (chroma_in[big] * chroma_out[big])
    assert np.percentile(cos, 5) > 0.95  # hue kept


def test_gray_lightness_luts():
    g = np.arange(256, dtype=np.uint8)
    L = core.gray_to_lightness(g)
    np.testing.assert_allclose(L, core.rgb_to_lab(np.repeat(g[:, None], 3, 1))[0], atol=1e-3)
    np.testing.assert_allclose(core.lightness_to_gray(L) * 255, g, atol=1e-3)
    Ls = np.linspace(-10, 110, 10001).astype(np.float32)
    exact = linear_to_srgb(finv((np.clip(Ls.astype(np.float64), 0, 100) + 16) / 116))
    np.testing.assert_allclose(core.lightness_to_gray(Ls), exact, atol=2e-6)
    np.testing.assert_array_equal(core.lab_to_rgb(L, np.zeros((256, 2), np.float32))[:, 0], g)


def test_non_finite_and_out_of_range_are_safe():
    L = np.array([np.nan, -5, 150, 50], np.float32)
    ab = np.array([[0, 0], [10, 10], [10, 10], [np.inf, 0]], np.float32)
    rgb = core.lab_to_rgb(L, ab)
    assert rgb.shape == (4, 3)
    assert rgb[1].max() <= 1  # black, up to the gamut tolerance
    np.testing.assert_array_equal(rgb[2], [255, 255, 255])


def test_bad_shapes():
    with pytest.raises(ValueError, match=r"\(\.\.\., 3\)"):
        core.rgb_to_lab(np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="matching"):
        core.lab_to_rgb(np.zeros((4, 4), np.float32), np.zeros((4, 4, 3), np.float32))
