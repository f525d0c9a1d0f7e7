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


# ---------------------------------------------------------------- compose_luma
LUMA_W = np.array([19595, 38470, 7471])  # Pillow's Image.convert("L"): (19595 R + 38470 G + 7471 B + 32768) >> 16


def pillow_luma(rgb):
    return (rgb.astype(np.int64) @ LUMA_W + 32768) >> 16


def srgb_ext(lin):
    """linear -> sRGB, extended: the linear segment below 0, the power curve above 1."""
    return np.where(lin <= 0.0031308, 12.92 * lin, 1.055 * np.abs(lin) ** (1 / 2.4) - 0.055)


def luma_of_lab(L, a, b):
    lin = lab_to_linear_ref(np.stack([L, a, b], -1))
    return 255 * srgb_ext(lin) @ LUMA_W / 65536, lin


def excess(lin):
    return np.max(np.maximum(-1e-4 - lin, lin - (1 + 1e-4)), -1)


def solve_L(y, a, b):
    """L in [0, 100] with luma(L, a, b) == y, by bisection (an end when there is no root)."""
    lo, hi = np.zeros_like(y), np.full_like(y, 100.0)
    for _ in range(50):
        mid = (lo + hi) / 2
        below = luma_of_lab(mid, a, b)[0] < y
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    return (lo + hi) / 2


def compose_luma_ref(gray, ab, band=63 / 128):
    """Slow, obvious float64 version of compose_luma, pixel rule by pixel rule, bisection everywhere:
    1. the Lab color (L', a, b) with luma exactly gray; if inside sRGB, that color;
    2. else, if it is within 0.01 of the gamut, the luma offset in [-63/128, 63/128] nearest 0 that fits;
    3. else a chroma scale k (L' re-solved for each k) that fits at luma gray, by 14 bisection steps (which
       k fit need not be an interval; the kernel bisects the same way);
    then encoded, its luma brought into gray +- 63/128 along the gray axis, rounded, and replaced by the nearest
    code within +-1 per channel whose Pillow luma is gray where rounding missed it."""
    y = gray.reshape(-1).astype(np.float64)
    a, b = (ab.reshape(-1, 2).astype(np.float64)).T
    lin = luma_of_lab(solve_L(y, a, b), a, b)[1]
    e0 = excess(lin)
    todo = e0 > 0
    near = todo & (e0 < 0.01)
    for side in (-band, band):  # 2. the band
        idx = np.flatnonzero(near)
        if not len(idx):
            break
        ls = luma_of_lab(solve_L(y[idx] + side, a[idx], b[idx]), a[idx], b[idx])[1]
        ok = excess(ls) <= 0
        idx = idx[ok]
        inn, out = np.full(len(idx), side), np.zeros(len(idx))
        for _ in range(8):
            mid = (inn + out) / 2
            fits = excess(luma_of_lab(solve_L(y[idx] + mid, a[idx], b[idx]), a[idx], b[idx])[1]) <= 0
            inn, out = np.where(fits, mid, inn), np.where(fits, out, mid)
        lin[idx] = luma_of_lab(solve_L(y[idx] + inn, a[idx], b[idx]), a[idx], b[idx])[1]
        near[idx] = todo[idx] = False
    idx = np.flatnonzero(todo)  # 3. chroma reduction
    lo, hi = np.zeros(len(idx)), np.ones(len(idx))
    for _ in range(14):
        k = (lo + hi) / 2
        fits = excess(luma_of_lab(solve_L(y[idx], a[idx] * k, b[idx] * k), a[idx] * k, b[idx] * k)[1]) <= 0
        lo, hi = np.where(fits, k, lo), np.where(fits, hi, k)
    lin[idx] = luma_of_lab(solve_L(y[idx], a[idx] * lo, b[idx] * lo), a[idx] * lo, b[idx] * lo)[1]
    target = 255 * srgb_ext(np.clip(lin, 0, 1))
    y0 = target @ LUMA_W / 65536
    center = np.clip(y0, y - band, y + band)
    d = target - y0[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        room = np.where(d > 0, (255 - center[:, None]) / d, np.where(d < 0, center[:, None] / -d, np.inf))
    s = np.clip(room.min(1), 0, 1)
    target = np.clip(center[:, None] + s[:, None] * d, 0, 255)
    q = np.floor(target + 0.5).astype(np.int64)
    deltas = np.array(np.meshgrid([-1, 0, 1], [-1, 0, 1], [-1, 0, 1], indexing="ij")).reshape(3, -1).T
    cand = q[:, None, :] + deltas[None]  # (n, 27, 3)
    ok = np.all((cand >= 0) & (cand <= 255), -1) & (pillow_luma(cand) == y[:, None])
    err = np.where(ok, ((cand - target[:, None]) ** 2).sum(-1), np.inf)
    best = cand[np.arange(len(y)), err.argmin(1)]
    neutral = np.repeat(y[:, None], 3, 1).astype(np.int64)
    out = np.where((pillow_luma(q) == y)[:, None], q, np.where(np.isfinite(err.min(1))[:, None], best, neutral))
    plain = ((a == 0) & (b == 0)) | (y == 0) | (y == 255)
    out[plain] = neutral[plain]
    return out.reshape(gray.shape + (3,)).astype(np.uint8)


def random_gray_ab(rng, shape, spread=60.0):
    gray = rng.integers(0, 256, shape, dtype=np.uint8)
    ab = (rng.standard_normal(shape + (2,)) * spread).astype(np.float32)
    return gray, ab


def test_pillow_luma_formula(rng):
    Image = pytest.importorskip("PIL.Image")
    rgb = rng.integers(0, 256, (512, 1024, 3), dtype=np.uint8)  # exact on all 2^24 colors too (checked once)
    np.testing.assert_array_equal(pillow_luma(rgb), np.asarray(Image.fromarray(rgb).convert("L")))


@pytest.mark.parametrize("shape", [(1, 1), (1, 5), (7, 1), (13, 17), (64, 96), (3,), (2, 3, 4)])
def test_compose_luma_matches_reference(rng, shape):
    gray, ab = random_gray_ab(rng, shape)
    got = core.compose_luma(gray, ab)
    assert got.shape == shape + (3,) and got.dtype == np.uint8
    ref = compose_luma_ref(gray, ab)
    diff = np.abs(got.astype(int) - ref)
    assert diff.max() <= 1  # float32 vs float64 at rounding boundaries
    assert np.mean(np.all(diff == 0, -1)) >= 0.999
    np.testing.assert_array_equal(pillow_luma(got), gray)  # exact everywhere, by construction


def test_compose_luma_round_trips_through_pillow(rng):
    Image = pytest.importorskip("PIL.Image")
    for spread in (10.0, 40.0, 100.0):
        gray, ab = random_gray_ab(rng, (240, 320), spread)
        rgb = core.compose_luma(gray, ab)
        np.testing.assert_array_equal(np.asarray(Image.fromarray(rgb).convert("L")), gray)


def test_compose_luma_zero_and_non_finite_ab_give_gray(rng):
    gray = np.arange(256, dtype=np.uint8).reshape(16, 16)
    np.testing.assert_array_equal(core.compose_luma(gray, np.zeros((16, 16, 2), np.float32)),
                                  np.repeat(gray[..., None], 3, -1))
    ab = np.zeros((4, 2), np.float32)
    ab[0, 0], ab[1, 1], ab[2] = np.nan, np.inf, [-np.inf, 5]
    g4 = np.array([0, 100, 200, 255], np.uint8)
    np.testing.assert_array_equal(core.compose_luma(g4, ab), np.repeat(g4[:, None], 3, -1))


def test_compose_luma_extreme_ab_keeps_luma():
    gray = np.tile(np.array([1, 50, 128, 200, 254], np.uint8), 4)
    ab = np.repeat(np.array([[1e20, 0], [-1e30, 3e38], [500, -500], [-128, 127]], np.float32), 5, 0)
    rgb = core.compose_luma(gray, ab)
    np.testing.assert_array_equal(pillow_luma(rgb), gray)
    np.testing.assert_array_equal(rgb[:10], np.repeat(gray[:10, None], 3, 1))  # overflowing Lab: neutral


def test_compose_luma_black_and_white_stay_neutral(rng):
    for v in (0, 255):
        gray = np.full((50, 50), v, np.uint8)
        _, ab = random_gray_ab(rng, (50, 50))
        np.testing.assert_array_equal(core.compose_luma(gray, ab), v)


def test_compose_luma_keeps_hue(rng):
    gray = rng.integers(30, 226, 20000, dtype=np.uint8)
    ab = (rng.standard_normal((20000, 2)) * 40).astype(np.float32)
    rgb = core.compose_luma(gray, ab)
    _, ab2 = core.rgb_to_lab(rgb)
    c_in, c_out = np.hypot(*ab.T), np.hypot(*ab2.T)
    big = (c_out > 10) & (c_in > 10)
    assert big.mean() > 0.5
    cos = (ab[big] * ab2[big]).sum(1) / (c_in[big] * c_out[big])
    assert np.percentile(cos, 5) > 0.95


def test_compose_luma_gives_real_colors_back(rng):
    # A color, reduced to (its Pillow luma, its ab), comes back within 1 level: the lightness is solved, not
    # taken from the gray (compose_luma(gray, truth ab) is the upper bound of the composition).
    rgb = rng.integers(0, 256, (50000, 3), dtype=np.uint8)
    _, ab = core.rgb_to_lab(rgb)
    out = core.compose_luma(pillow_luma(rgb).astype(np.uint8), ab)
    diff = np.abs(out.astype(int) - rgb)
    assert diff.max() <= 1
    assert np.mean(np.all(diff == 0, -1)) > 0.8


def test_compose_luma_planar_non_contiguous_and_threads(rng):
    gray, ab = random_gray_ab(rng, (97, 131))
    want = core.compose_luma(gray, ab)
    planar = np.ascontiguousarray(np.moveaxis(ab, -1, 0))
    np.testing.assert_array_equal(core.compose_luma(gray, planar, planar=True), want)
    np.testing.assert_array_equal(core.compose_luma(gray, np.moveaxis(planar, 0, -1)), want)  # strided view
    np.testing.assert_array_equal(core.compose_luma(np.asfortranarray(gray), ab), want)
    np.testing.assert_array_equal(core.compose_luma(gray, ab.astype(np.float64)), want)
    for threads in (2, 3, 0):
        np.testing.assert_array_equal(core.compose_luma(gray, ab, threads=threads), want)
        np.testing.assert_array_equal(core.compose_luma(gray, planar, planar=True, threads=threads), want)


def test_compose_luma_bad_arguments():
    g = np.zeros((4, 5), np.uint8)
    ab = np.zeros((4, 5, 2), np.float32)
    with pytest.raises(TypeError, match="uint8"):
        core.compose_luma(g.astype(np.float32), ab)
    with pytest.raises(TypeError, match="uint8"):
        core.compose_luma(g.astype(np.uint16), ab)
    with pytest.raises(TypeError, match="real-valued"):
        core.compose_luma(g, ab.astype(np.complex64))
    with pytest.raises(ValueError, match=r"expected \(\.\.\., 2\).*planar=True"):
        core.compose_luma(g, np.zeros((2, 4, 5), np.float32))
    with pytest.raises(ValueError, match=r"expected \(2, \.\.\.\)"):
        core.compose_luma(g, ab, planar=True)
    with pytest.raises(ValueError, match="matching gray's shape"):
        core.compose_luma(g, np.zeros((5, 4, 2), np.float32))
    with pytest.raises(ValueError, match="threads"):
        core.compose_luma(g, ab, threads=-1)


def smooth_gray_ab(rng, shape, chroma):
    """Real-like input: a smooth gray ramp with a little noise and smooth ab fields (low-frequency waves) of the
    given peak chroma, the kind the colorizer outputs."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    gray = np.clip(40 + 180 * xx + 25 * np.sin(7 * yy) + rng.normal(0, 3, shape), 0, 255).astype(np.uint8)
    ph = rng.uniform(0, 2 * np.pi, 4)
    a = np.sin(5 * xx + 3 * yy + ph[0]) * np.cos(4 * yy + ph[1])
    b = np.cos(3 * xx - 6 * yy + ph[2]) * np.sin(2 * xx + ph[3])
    return gray, (np.stack([a, b], -1) * chroma).astype(np.float32)


@pytest.mark.parametrize("chroma", [8.0, 25.0, 60.0])
def test_compose_luma_smooth_fields_match_reference(rng, chroma):
    # the vectorized common case (Taylor start, Newton steps, direct rounding) against the float64 reference
    gray, ab = smooth_gray_ab(rng, (48, 64), chroma)
    got = core.compose_luma(gray, ab)
    diff = np.abs(got.astype(int) - compose_luma_ref(gray, ab))
    assert diff.max() <= 1
    assert np.mean(np.all(diff == 0, -1)) >= 0.999
    np.testing.assert_array_equal(pillow_luma(got), gray)


def test_compose_luma_gamut_edges_match_reference(rng):
    # very dark and very bright gray with high chroma: the band and the chroma reduction (the queued, vectorized
    # slow path), and the lanes that need more Newton steps
    n = 3000
    gray = np.concatenate([rng.integers(1, 12, n), rng.integers(244, 255, n), rng.integers(1, 255, n)]).astype(np.uint8)
    ang = rng.uniform(0, 2 * np.pi, 3 * n)
    c = np.concatenate([rng.uniform(0, 40, n), rng.uniform(0, 40, n), rng.uniform(60, 140, n)])
    ab = np.stack([c * np.cos(ang), c * np.sin(ang)], -1).astype(np.float32)
    got = core.compose_luma(gray, ab)
    diff = np.abs(got.astype(int) - compose_luma_ref(gray, ab))
    assert diff.max() <= 1
    assert np.mean(np.all(diff == 0, -1)) >= 0.999
    np.testing.assert_array_equal(pillow_luma(got), gray)


def test_compose_luma_is_per_pixel(rng):
    # every pixel's result depends on that pixel only, not on the block or the queue of slow pixels it went with:
    # shuffled, or one at a time, the same colors come out (threads cannot change them either)
    gray, ab = random_gray_ab(rng, (4099,), 50.0)
    g2, ab2 = smooth_gray_ab(rng, (31, 67), 40.0)
    gray = np.concatenate([gray, g2.ravel()])
    ab = np.concatenate([ab, ab2.reshape(-1, 2)])
    want = core.compose_luma(gray, ab)
    perm = rng.permutation(len(gray))
    np.testing.assert_array_equal(core.compose_luma(gray[perm], ab[perm], threads=3), want[perm])
    for i in rng.choice(len(gray), 200, replace=False):
        np.testing.assert_array_equal(core.compose_luma(gray[i : i + 1], ab[i : i + 1])[0], want[i])


def test_compose_luma_photo_like_contract(rng):
    # a photo-like frame (smooth regions of any color, up to fully saturated, edges, noise), its gray and a
    # smoothed, scaled version of its own ab, like model output: luma exact, and as the reference
    cv2 = pytest.importorskip("cv2")
    small = rng.integers(0, 256, (12, 16, 3)).astype(np.float32)
    rgb = cv2.resize(small, (128, 96), interpolation=cv2.INTER_CUBIC) + rng.normal(0, 4, (96, 128, 3))
    rgb = np.clip(rgb, 0, 255).astype(np.uint8)
    gray = pillow_luma(rgb).astype(np.uint8)
    _, ab = core.rgb_to_lab(rgb)
    ab = (cv2.blur(ab, (5, 5)) * 0.8).astype(np.float32)
    got = core.compose_luma(gray, ab, threads=2)
    np.testing.assert_array_equal(pillow_luma(got), gray)
    diff = np.abs(got.astype(int) - compose_luma_ref(gray, ab))
    assert diff.max() <= 1
    assert np.mean(np.all(diff == 0, -1)) >= 0.999
