"""core.SortedIndex's bounded search as a window (3-level keys) against the one-by-one scan it replaces
(scan=True): the same index everywhere, the same distance where an entry was found."""

import numpy as np
import pytest

from hyperchroma import core


def make(rng, n, channels, weights):
    lv = rng.integers(0, 3, (n, channels), dtype=np.uint8)
    if weights == "int":  # many equal projections: ties between sides and within a side
        w = rng.integers(1, 3, channels).astype(np.float32)
    elif weights == "onehot":
        w = np.zeros(channels, np.float32)
        w[0] = 1
    else:
        w = rng.normal(size=channels).astype(np.float32)
    ab = rng.uniform(-50, 50, (n, 2)).astype(np.float32)
    return core.SortedIndex(core.pack_keys(lv, 3), ab, w, channels, 3), lv


@pytest.mark.parametrize("n", [0, 1, 5, 64, 65, 700])
@pytest.mark.parametrize("channels", [5, 32, 56, 70])
@pytest.mark.parametrize("weights", ["random", "int", "onehot"])
def test_window_equals_scan(rng, n, channels, weights):
    index, lv = make(rng, n, channels, weights)
    m = 300
    q = rng.integers(0, 3, (m, channels), dtype=np.uint8)
    if n:
        pick = rng.integers(0, n, m // 2)
        q[: m // 2] = lv[pick]
        flip = rng.random((m // 2, channels)) < 0.1
        q[: m // 2][flip] = rng.integers(0, 3, int(flip.sum()))
    keys = core.pack_keys(q, 3)
    bounds = rng.choice(np.float32([0.0, 1.0, np.sqrt(2), 1.7, 2.0, np.sqrt(5), 3.0, np.inf, np.nan]), m)
    bounds = bounds.astype(np.float32)
    for max_scan in (1, 2, 7, 64, 1000):
        for max_distance in (0.0, 1.0, np.sqrt(3), 5.0, np.inf):
            for b in (None, bounds):
                kw = dict(max_distance=max_distance, max_scan=max_scan, bounds=b)
                i1, d1 = index.search(keys, **kw)
                i2, d2 = index.search(keys, scan=True, **kw)
                np.testing.assert_array_equal(i1, i2)
                np.testing.assert_array_equal(d1[i1 >= 0], d2[i2 >= 0])
                assert np.all(d1[i1 < 0] <= d2[i2 < 0])  # both upper bounds of the nearest distance
                for t in (2, 3):
                    i3, d3 = index.search(keys, threads=t, **kw)
                    np.testing.assert_array_equal(i3, i1)
                    np.testing.assert_array_equal(d3, d1)


def reference_projection(index, lv, levels):
    """The index's projection of keys (rows of levels) in plain numpy, in the kernel's order of sums: per key byte
    (fields of 1, 2, 4 or 8 bits) the partial sum of its channels, the bytes added in order; else channel by
    channel. float64 additions in the same order give bit-identical results."""
    w = index.weights
    channels = lv.shape[1]
    bits = max(1, int(np.ceil(np.log2(levels))))
    x = lv.astype(np.float64)
    acc = np.zeros(len(lv))
    if 8 % bits:
        for c in range(channels):
            acc = acc + w[c] * x[:, c]
        return acc
    per_byte, fpw = 8 // bits, 64 // bits
    words = -(-channels // fpw)
    for word in range(words):
        for b in range(8):
            c0 = word * fpw + b * per_byte
            if c0 >= channels:
                break
            part = np.zeros(len(lv))
            for c in range(c0, min(c0 + per_byte, channels)):
                part = part + w[c] * x[:, c]
            acc = acc + part
    return acc


def reference_scan(index, qlv, levels, max_scan, max_distance):
    """The bounded search as plainly as it can be said: start at the first projection >= the query's
    (np.searchsorted), visit the strictly closer projection first (the higher side on ties) up to max_scan entries,
    stop once a gap exceeds the best distance so far, keep the first visited of the closest."""
    proj = index.projections
    stored = core.unpack_keys(index.keys, qlv.shape[1], levels).astype(np.int64)
    eps = 1e-9 * (1.0 + np.abs(index.weights).sum() * (levels - 1))
    qp = reference_projection(index, qlv, levels)
    out = []
    for q, p in zip(qlv.astype(np.int64), qp):
        hi = int(np.searchsorted(proj, p, side="left"))
        lo = hi - 1
        best, best_d = -1, np.inf
        for _ in range(max_scan):
            glo = p - proj[lo] if lo >= 0 else np.inf
            ghi = proj[hi] - p if hi < len(proj) else np.inf
            take_hi = ghi <= glo
            if (hi >= len(proj)) if take_hi else (lo < 0):
                break
            if (ghi if take_hi else glo) > min(best_d, max_distance) + eps:
                break
            j = hi if take_hi else lo
            hi, lo = (hi + 1, lo) if take_hi else (hi, lo - 1)
            d = float(np.sqrt(((stored[j] - q) ** 2).sum()))
            if d < best_d:
                best, best_d = j, d
            if d == 0:
                break
        out.append(best if best >= 0 and best_d <= max_distance else -1)
    return np.array(out, np.int64)


@pytest.mark.parametrize("n", [0, 1, 15, 16, 17, 33, 48, 500])
@pytest.mark.parametrize("channels,levels", [(56, 3), (37, 3), (20, 4), (9, 2), (12, 5)])
@pytest.mark.parametrize("weights", ["random", "int"])
def test_search_equals_plain_reference(rng, n, channels, levels, weights):
    """The byte-table projections, the two-level binary search and the blocked queries against numpy: the same
    index for every query, window and scan alike (sizes around the 16-entry blocks, ties from integer weights)."""
    lv = rng.integers(0, levels, (n, channels), dtype=np.uint8)
    w = (rng.integers(1, 3, channels) if weights == "int" else rng.normal(size=channels)).astype(np.float32)
    index = core.SortedIndex(core.pack_keys(lv, levels), rng.uniform(-50, 50, (n, 2)).astype(np.float32), w,
                             channels, levels)
    np.testing.assert_array_equal(index.projections, np.sort(reference_projection(index, lv, levels)))
    m = 61  # not a multiple of the 8-query blocks
    q = rng.integers(0, levels, (m, channels), dtype=np.uint8)
    if n:
        q[: m // 2] = lv[rng.integers(0, n, m // 2)]
        flip = rng.random((m // 2, channels)) < 0.1
        q[: m // 2][flip] = rng.integers(0, levels, int(flip.sum()))
    keys = core.pack_keys(q, levels)
    for max_scan in (1, 5, 64):
        want = reference_scan(index, q, levels, max_scan, 5.0)
        for scan in (False, True):
            idx, _ = index.search(keys, max_distance=5.0, max_scan=max_scan, scan=scan, threads=2)
            np.testing.assert_array_equal(idx, want)
