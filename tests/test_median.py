"""hyperchroma.core.median_filter against scipy.ndimage / OpenCV / a numpy reference, exhaustive 0/1 checks of the
selection networks, and argument errors."""

import numpy as np
import pytest

from hyperchroma import core

ndi = pytest.importorskip("scipy.ndimage")
cv2 = pytest.importorskip("cv2")

SIZES = [1, 3, 5, 7, 9, 11]
SHAPES = [(1, 1), (1, 7), (7, 1), (2, 2), (13, 17), (37, 29, 2), (16, 16, 3), (5, 5, 1)]


def random_image(rng, shape, dtype, levels=None):
    if dtype == np.uint8:
        return rng.integers(0, 256 if levels is None else levels, size=shape, dtype=np.uint8)
    if levels is not None:
        return rng.integers(0, levels, size=shape).astype(np.float32)
    return (rng.standard_normal(shape) * 10).astype(np.float32)


def scipy_median(img, size):
    return ndi.median_filter(img, size=(size, size) + (1,) * (img.ndim - 2), mode="nearest")


def numpy_median(img, size):
    """Slow, obvious reference: edge-pad, gather every window, sort (NaN sorts last), take the middle."""
    r = size // 2
    a = img if img.ndim == 3 else img[:, :, None]
    padded = np.pad(a, ((r, r), (r, r), (0, 0)), mode="edge")
    win = np.lib.stride_tricks.sliding_window_view(padded, (size, size), axis=(0, 1))  # (H, W, C, k, k)
    win = win.reshape(win.shape[:3] + (size * size,))
    out = np.sort(win, axis=-1)[..., size * size // 2]
    return out.reshape(img.shape)


def weighted_median(img, size):
    """Reference for windows of any size: each pixel counted as often as edge replication repeats it."""
    H, W = img.shape[:2]
    r = size // 2
    a = img if img.ndim == 3 else img[:, :, None]
    out = np.empty_like(a)

    def weights(i, n):
        w = np.ones(n, dtype=np.int64)
        w[0] += max(r - i, 0)
        w[-1] += max(i + r - (n - 1), 0)
        lo, hi = max(i - r, 0), min(i + r, n - 1)
        w[:lo] = 0
        w[hi + 1 :] = 0
        return w

    for y in range(H):
        for x in range(W):
            w = np.outer(weights(y, H), weights(x, W)).ravel()
            for c in range(a.shape[2]):
                v = a[:, :, c].ravel()
                order = np.argsort(v, kind="stable")
                cum = np.cumsum(w[order])
                out[y, x, c] = v[order][np.searchsorted(cum, size * size // 2, side="right")]
    return out.reshape(img.shape)


# ---------------------------------------------------------------------------------------------- vs scipy


@pytest.mark.parametrize("dtype", [np.float32, np.uint8])
@pytest.mark.parametrize("shape", SHAPES)
def test_matches_scipy(dtype, shape):
    rng = np.random.default_rng([*shape, np.dtype(dtype).itemsize])
    img = random_image(rng, shape, dtype)
    for size in SIZES:
        got = core.median_filter(img, size)
        assert got.dtype == img.dtype and got.shape == img.shape
        np.testing.assert_array_equal(got, scipy_median(img, size), err_msg=f"size={size}")


@pytest.mark.parametrize("dtype", [np.float32, np.uint8])
def test_wide_rows_and_many_channels(dtype):
    # several strips per row (the last one shifted left), strips that are not whole vectors, scalar tails
    rng = np.random.default_rng(7)
    for shape in [(6, 700, 2), (5, 1100), (4, 300, 5), (4, 90, 9), (3, 40, 70)]:
        img = random_image(rng, shape, dtype)
        for size in (3, 5, 7, 9):
            np.testing.assert_array_equal(
                core.median_filter(img, size), scipy_median(img, size), err_msg=f"{shape} size={size}"
            )


@pytest.mark.parametrize("dtype", [np.float32, np.uint8])
def test_channel_limits(dtype):
    # the networks take (size-1)*C <= 512; one channel more falls back to the generic paths
    rng = np.random.default_rng(8)
    for size, channels in [(3, 256), (3, 257), (5, 128), (5, 129), (7, 85), (7, 86)]:
        img = random_image(rng, (4, 6, channels), dtype)
        np.testing.assert_array_equal(
            core.median_filter(img, size), scipy_median(img, size), err_msg=f"size={size} C={channels}"
        )


@pytest.mark.parametrize("dtype", [np.float32, np.uint8])
def test_many_ties(dtype):
    rng = np.random.default_rng(3)
    for levels in (1, 2, 3):
        img = random_image(rng, (23, 31, 2), dtype, levels=levels)
        for size in SIZES:
            np.testing.assert_array_equal(core.median_filter(img, size), scipy_median(img, size))


@pytest.mark.parametrize("dtype", [np.float32, np.uint8])
def test_window_larger_than_image(dtype):
    rng = np.random.default_rng(11)
    for shape in [(1, 1), (2, 3), (3, 4, 2), (1, 5)]:
        img = random_image(rng, shape, dtype)
        for size in (7, 13, 101):
            np.testing.assert_array_equal(core.median_filter(img, size), scipy_median(img, size))


@pytest.mark.parametrize("dtype", [np.float32, np.uint8])
def test_huge_windows(dtype):
    # float32 beyond 255x255 switches to the weighted selection; uint8 histograms get large weights
    rng = np.random.default_rng(12)
    img = random_image(rng, (3, 4, 2), dtype)
    for size in (257, 2001, 2**20 + 1):
        np.testing.assert_array_equal(core.median_filter(img, size), weighted_median(img, size))
    np.testing.assert_array_equal(core.median_filter(img, 301), scipy_median(img, 301))


def test_weighted_reference_agrees_with_scipy():
    img = random_image(np.random.default_rng(5), (4, 6, 2), np.float32)
    for size in (3, 9):
        np.testing.assert_array_equal(weighted_median(img, size), scipy_median(img, size))


# ---------------------------------------------------------------------------------------------- vs OpenCV


@pytest.mark.parametrize("channels", [None, 1, 3, 4])
def test_matches_opencv_uint8(channels):
    rng = np.random.default_rng(21)
    for hw in [(1, 1), (2, 9), (13, 17), (40, 33)]:
        shape = hw if channels is None else hw + (channels,)
        img = random_image(rng, shape, np.uint8)
        for size in (3, 5, 7, 9, 11):
            ref = cv2.medianBlur(img, size).reshape(img.shape)
            np.testing.assert_array_equal(core.median_filter(img, size), ref, err_msg=f"{shape} size={size}")


@pytest.mark.parametrize("channels", [None, 1, 2, 3, 4])
def test_matches_opencv_float32(channels):
    rng = np.random.default_rng(22)
    for hw in [(1, 1), (1, 7), (7, 1), (2, 2), (13, 17), (40, 33)]:
        shape = hw if channels is None else hw + (channels,)
        img = random_image(rng, shape, np.float32)
        for size in (3, 5):
            ref = cv2.medianBlur(img, size).reshape(img.shape)
            np.testing.assert_array_equal(core.median_filter(img, size), ref, err_msg=f"{shape} size={size}")


# ---------------------------------------------------------------------------------------------- networks


def de_bruijn(k, n):
    """Cyclic sequence over 0..k-1 holding every length-n word once (standard FKM construction)."""
    a = [0] * k * n
    seq = []

    def db(t, p):
        if t > n:
            if n % p == 0:
                seq.extend(a[1 : p + 1])
        else:
            a[t] = a[t - p]
            db(t + 1, p)
            for j in range(a[t - p] + 1, k):
                a[t] = j
                db(t + 1, t)

    db(1, 1)
    return np.array(seq + seq[: n - 1])


@pytest.mark.parametrize("size", [3, 5, 7])
@pytest.mark.parametrize("dtype", [np.float32, np.uint8])
def test_networks_exhaustive_01(size, dtype):
    """0/1 principle: a min/max network that is right on every 0/1 input is right on all inputs.

    The kernel sorts each window column, then runs the selection network on the sorted columns, so the network
    only ever sees columns described by their number of ones (0..size). A size-row image whose columns follow a
    de Bruijn sequence over those counts shows the network every combination of counts (6^5 for 5x5, 8^7 for
    7x7); each column's ones sit in a different arrangement so the column sort is exercised too. For 3x3 the
    columns run over all 8 bit patterns, covering all 2^9 windows."""
    rng = np.random.default_rng(size)
    symbols = 2**size if size == 3 else size + 1
    seq = de_bruijn(symbols, size)
    if size == 3:
        cols = ((seq[None, :] >> np.arange(3)[:, None]) & 1).astype(dtype)
    else:
        cols = (np.arange(size)[:, None] >= size - seq[None, :]).astype(dtype)  # count ones at the bottom
        cols = np.take_along_axis(cols, rng.permuted(np.tile(np.arange(size)[:, None], len(seq)), axis=0), axis=0)
    img = np.ascontiguousarray(cols)
    got = core.median_filter(img, size)[size // 2]  # middle row: its windows hold exactly the image rows
    ones = np.convolve(img.sum(axis=0, dtype=np.int64), np.ones(size, dtype=np.int64), mode="valid")
    expect = (ones > size * size // 2).astype(dtype)
    r = size // 2
    np.testing.assert_array_equal(got[r : len(seq) - r], expect)


# ---------------------------------------------------------------------------------------------- layout, threads


@pytest.mark.parametrize("dtype", [np.float32, np.uint8])
def test_non_contiguous(dtype):
    rng = np.random.default_rng(31)
    base = random_image(rng, (40, 50, 4), dtype)
    views = [
        base[::2, ::3],
        base[1:-3:3, ::-2, 1],
        base[:, :, ::2],
        base.transpose(1, 0, 2),
        np.asfortranarray(base[..., 0]),
    ]
    for v in views:
        for size in (3, 5, 7, 9):
            np.testing.assert_array_equal(core.median_filter(v, size), scipy_median(v, size))


@pytest.mark.parametrize("dtype", [np.float32, np.uint8])
def test_threads_do_not_change_result(dtype):
    rng = np.random.default_rng(41)
    # the small image runs on one thread whatever is asked; the large one is split into bands (2^17 values or
    # more a thread)
    for shape in ((67, 45, 2), (700, 130, 2)):
        img = random_image(rng, shape, dtype)
        for size in (3, 5, 7, 9):
            one = core.median_filter(img, size, threads=1)
            np.testing.assert_array_equal(core.median_filter(img, size, threads=2), one)
            np.testing.assert_array_equal(core.median_filter(img, size, threads=0), one)


def test_returns_new_array():
    img = np.arange(12, dtype=np.float32).reshape(3, 4)
    out = core.median_filter(img, 1)
    np.testing.assert_array_equal(out, img)
    assert not np.shares_memory(out, img)
    assert out.flags.c_contiguous


# ---------------------------------------------------------------------------------------------- NaN


def test_nan_is_above_inf():
    """float32 keys follow IEEE totalOrder with every NaN largest: the output is NaN exactly when more than half
    of the window is NaN (numpy's sort puts NaN last too, so numpy_median is the reference)."""
    rng = np.random.default_rng(51)
    img = random_image(rng, (19, 23, 2), np.float32)
    img[rng.random(img.shape) < 0.4] = np.nan
    img[0, 0, 0] = -np.nan  # sign bit set: still above +inf
    img[3, 3, 1] = np.inf
    img[4, 4, 1] = -np.inf
    for size in (1, 3, 5, 7, 9):
        got = core.median_filter(img, size)
        np.testing.assert_array_equal(got, numpy_median(img, size), err_msg=f"size={size}")
    assert np.isnan(core.median_filter(np.full((4, 4), np.nan, np.float32), 3)).all()
    one_nan = np.zeros((5, 5), np.float32)
    one_nan[2, 2] = np.nan
    assert not np.isnan(core.median_filter(one_nan, 3)).any()


# ---------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize("dtype", [np.float64, np.int32, np.uint16, np.int8, np.bool_, np.float16])
def test_unsupported_dtype(dtype):
    with pytest.raises(TypeError, match="float32 and uint8"):
        core.median_filter(np.zeros((4, 4), dtype=dtype), 3)


def test_non_array_input():
    with pytest.raises(TypeError):
        core.median_filter([[1.0, 2.0], [3.0, 4.0]], 3)  # becomes float64: not cast silently


@pytest.mark.parametrize("shape", [(4,), (2, 3, 4, 1), ()])
def test_bad_ndim(shape):
    with pytest.raises(ValueError, match=r"\(H,W\) or \(H,W,C\)"):
        core.median_filter(np.zeros(shape, np.float32), 3)


@pytest.mark.parametrize("shape", [(0, 5), (5, 0), (0, 0), (3, 3, 0)])
def test_empty_image(shape):
    with pytest.raises(ValueError, match="empty"):
        core.median_filter(np.zeros(shape, np.uint8), 3)


@pytest.mark.parametrize("size", [0, -1, -3, 2, 4, 2**40 + 1])
def test_bad_size(size):
    with pytest.raises(ValueError, match="size"):
        core.median_filter(np.zeros((4, 4), np.float32), size)
