"""core.resize_gray (cpp/resample.hpp), the classifier's input, against a plain numpy statement of the same
sums and against Pillow's BILINEAR resize of the float plane (what images.py used before)."""

import numpy as np
import pytest
from PIL import Image

from hyperchroma import core
from hyperchroma.images import model_gray


def _axis(n_in, n_out):
    """Pillow's precompute_coeffs for the triangle filter: per output, (first input, weights)."""
    scale = float(n_in) / n_out
    filterscale = max(scale, 1.0)
    support = filterscale
    out = []
    for o in range(n_out):
        center = (o + 0.5) * scale
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), n_in)
        w = [max(0.0, 1.0 - abs((i + lo - center + 0.5) * (1.0 / filterscale))) for i in range(hi - lo)]
        total = 0.0
        for v in w:
            total += v
        out.append((lo, [v / total for v in w] if total != 0.0 else w))
    return out


def _sums(values, weights):
    s = 0.0
    for v, k in zip(values, weights):
        s += float(v) * k
    return s


def reference(gray, h, w):
    """The horizontal pass (width) then the vertical pass (height), each skipped when its size is unchanged."""
    f = gray * np.float32(1 / 255)
    H, W = f.shape
    if w != W:
        ax = _axis(W, w)
        f = np.array([[_sums(row[lo:lo + len(k)], k) for lo, k in ax] for row in f], np.float32).reshape(H, w)
    if h != H:
        ay = _axis(H, h)
        f = np.array([[_sums(f[lo:lo + len(k), x], k) for x in range(f.shape[1])] for lo, k in ay],
                     np.float32).reshape(h, f.shape[1])
    return f.astype(np.float32)


def pillow(gray, h, w):
    return np.asarray(Image.fromarray(gray * np.float32(1 / 255), mode="F").resize((w, h), Image.Resampling.BILINEAR),
                      dtype=np.float32)


def _sizes(rng, n):
    for i in range(n):
        H, W = (int(v) for v in rng.integers(1, 90, 2))
        h, w = (int(v) for v in rng.integers(1, 90, 2))
        if i % 4 == 0:
            h = H
        if i % 5 == 0:
            w = W
        yield H, W, h, w


def test_equals_the_plain_sums_on_random_sizes():
    rng = np.random.default_rng(7)
    for H, W, h, w in _sizes(rng, 120):
        g = rng.integers(0, 256, (H, W), dtype=np.uint8)
        got = core.resize_gray(g, h, w, threads=int(rng.integers(1, 4)))
        assert got.dtype == np.float32 and got.shape == (h, w)
        np.testing.assert_array_equal(got, reference(g, h, w), err_msg=f"{H}x{W} -> {h}x{w}")


def test_matches_pillow_to_the_last_bit_or_one_rounding():
    """Bit for bit where Pillow runs the width pass first (every Pillow before 13; a single-axis resize always);
    otherwise within the rounding of the intermediate float rows."""
    rng = np.random.default_rng(8)
    for H, W, h, w in _sizes(rng, 150):
        g = rng.integers(0, 256, (H, W), dtype=np.uint8)
        got, want = core.resize_gray(g, h, w), pillow(g, h, w)
        if h == H or w == W:
            np.testing.assert_array_equal(got, want, err_msg=f"{H}x{W} -> {h}x{w}")
        else:
            np.testing.assert_allclose(got, want, rtol=0, atol=3e-7, err_msg=f"{H}x{W} -> {h}x{w}")


def test_large_reductions_and_enlargements():
    rng = np.random.default_rng(9)
    for H, W, h, w in [(528, 720, 164, 224), (1080, 1920, 126, 224), (17, 13, 160, 224), (480, 3, 16, 1),
                       (1, 300, 1, 7), (300, 1, 7, 1), (2, 2, 1, 1), (5, 700, 64, 64)]:
        g = rng.integers(0, 256, (H, W), dtype=np.uint8)
        want = reference(g, h, w)
        for t in (1, 2, 3):
            np.testing.assert_array_equal(core.resize_gray(g, h, w, threads=t), want, err_msg=f"{H}x{W} -> {h}x{w}")


def test_same_size_is_the_scaled_input_and_extremes_stay_in_range():
    g = np.array([[0, 255, 128], [1, 254, 7]], np.uint8)
    np.testing.assert_array_equal(core.resize_gray(g, 2, 3), g * np.float32(1 / 255))
    rng = np.random.default_rng(10)
    big = rng.choice(np.array([0, 255], np.uint8), size=(99, 77))
    r = core.resize_gray(big, 13, 200)
    assert r.min() >= 0.0 and r.max() <= 1.0


def test_model_gray_uses_it():
    rng = np.random.default_rng(11)
    g = rng.integers(0, 256, (131, 97), dtype=np.uint8)
    np.testing.assert_array_equal(model_gray(g, (40, 30)), reference(g, 40, 30))
    rgb = rng.integers(0, 256, (131, 97, 3), dtype=np.uint8)
    np.testing.assert_array_equal(model_gray(rgb, (40, 30)),
                                  reference(np.asarray(Image.fromarray(rgb).convert("L")), 40, 30))


@pytest.mark.parametrize("bad, h, w, err", [
    (np.zeros((4, 4), np.float32), 2, 2, TypeError),
    (np.zeros((4, 4, 1), np.uint8), 2, 2, ValueError),
    (np.zeros((0, 4), np.uint8), 2, 2, ValueError),
    (np.zeros((4, 4), np.uint8), 0, 2, ValueError),
    (np.zeros((4, 4), np.uint8), 2, -1, ValueError),
])
def test_bad_input(bad, h, w, err):
    with pytest.raises(err):
        core.resize_gray(bad, h, w)


def test_bad_threads():
    with pytest.raises(ValueError, match="threads"):
        core.resize_gray(np.zeros((4, 4), np.uint8), 2, 2, threads=-1)


def test_non_contiguous_input_is_read_as_its_values():
    rng = np.random.default_rng(12)
    g = rng.integers(0, 256, (60, 80), dtype=np.uint8)
    view = g[::2, 1::3]
    np.testing.assert_array_equal(core.resize_gray(view, 11, 9), reference(np.ascontiguousarray(view), 11, 9))
