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
