"""core.SortedIndex against a brute-force numpy reference (all pairwise level distances)."""

import gc
import threading

import numpy as np
import pytest

from hyperchroma import core

# (channels, levels): field widths 1, 2, 2, 2, 3 (generic), 4 (4 words), 4 bits, 7 bits (generic), 8 bits.
LAYOUTS = [(56, 3), (56, 4), (8, 2), (40, 5), (100, 4), (20, 16), (30, 100), (12, 200)]


def clustered_levels(rng, n, channels, levels, clusters=12):
    """Levels drawn around a few cluster centers, so that near neighbours exist (like real hypercolumns)."""
    centers = rng.integers(0, levels, size=(clusters, channels))
    rows = centers[rng.integers(0, clusters, size=n)]
    flip = rng.random((n, channels)) < 0.15
    rows = np.where(flip, rng.integers(0, levels, size=(n, channels)), rows)
    return rows.astype(np.uint8)


def perturb(rng, lv, levels, p=0.05):
    flip = rng.random(lv.shape) < p
    return np.where(flip, rng.integers(0, levels, size=lv.shape), lv).astype(np.uint8)


def make_weights(rng, lv, kind):
    if kind == "random":
        return rng.normal(size=lv.shape[1]).astype(np.float32)
    if kind == "onehot":  # a poor projection: huge runs of equal projections (ties)
        return np.eye(lv.shape[1], dtype=np.float32)[0] * 3.0
    x = lv.astype(np.float64)
    x -= x.mean(axis=0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    return vt[0].astype(np.float32)  # first principal component


def brute_d2(q_levels, k_levels):
    """All squared level distances (M, N), exact integers (float64 sums of small integers are exact)."""
    q = q_levels.astype(np.float64)
    k = k_levels.astype(np.float64)
    d2 = (q * q).sum(1)[:, None] + (k * k).sum(1)[None, :] - 2.0 * q @ k.T
    return np.rint(d2).astype(np.int64)


def setup(seed, channels, levels, n=1500, m=250, weights="random"):
    rng = np.random.default_rng(seed)
    lv = clustered_levels(rng, n, channels, levels)
    keys = core.pack_keys(lv, levels)
    ab = rng.uniform(-100, 100, size=(n, 2)).astype(np.float32)
    w = make_weights(rng, lv, weights)
    index = core.SortedIndex(keys, ab, w, channels, levels)
    qlv = np.concatenate([perturb(rng, lv[rng.integers(0, n, size=m - m // 5)], levels),
                          rng.integers(0, levels, size=(m // 5, channels)).astype(np.uint8)])
    queries = core.pack_keys(qlv, levels)
    # Brute force over the index's sorted keys, so that returned indices can be checked directly.
    d2 = brute_d2(qlv, core.unpack_keys(index.keys, channels, levels))
    return index, keys, ab, w, queries, d2


def as_f32_dist(d2):
    return np.sqrt(d2.astype(np.float64)).astype(np.float32)


@pytest.mark.parametrize("weights", ["random", "pca", "onehot"])
@pytest.mark.parametrize("channels,levels", LAYOUTS)
def test_exact_equals_brute_force(channels, levels, weights):
    index, keys, ab, _, queries, d2 = setup(channels * 1000 + levels, channels, levels, weights=weights)
    idx, dist = index.search(queries, exact=True)
    assert idx.dtype == np.int64 and dist.dtype == np.float32 and idx.shape == dist.shape == (len(queries),)
    best = d2.min(axis=1)
    np.testing.assert_array_equal(dist, as_f32_dist(best))
    assert (idx >= 0).all()
    # Ties may pick another entry, but the returned one must be at the minimum distance.
    np.testing.assert_array_equal(d2[np.arange(len(idx)), idx], best)
    # Sorted views are consistent with the inputs.
    np.testing.assert_array_equal(index.keys, keys[index.order])
    np.testing.assert_array_equal(index.ab, ab[index.order])
    np.testing.assert_array_equal(index.colors(idx), ab[index.order[idx]])


@pytest.mark.parametrize("channels,levels", [(56, 3), (8, 2), (40, 5), (100, 4)])
@pytest.mark.parametrize("weights", ["random", "pca"])
def test_bounded_scan(channels, levels, weights):
    index, _, _, _, queries, d2 = setup(7 + channels, channels, levels, n=800, weights=weights)
    best = d2.min(axis=1)
    rows = np.arange(len(queries))
    for max_scan in (1, 4, 64):
        idx, dist = index.search(queries, max_scan=max_scan)
        assert (idx >= 0).all()
        true = d2[rows, idx]
        np.testing.assert_array_equal(dist, as_f32_dist(true))  # the returned entry's true distance
        assert (true >= best).all()
    idx, dist = index.search(queries, max_scan=len(index))
    np.testing.assert_array_equal(dist, as_f32_dist(best))
    np.testing.assert_array_equal(d2[rows, idx], best)
    # More budget never hurts.
    _, d16 = index.search(queries, max_scan=16)
    _, d256 = index.search(queries, max_scan=256)
    assert (d256 <= d16).all()


@pytest.mark.parametrize("exact", [True, False])
def test_max_distance(exact):
    index, _, _, _, queries, d2 = setup(3, 56, 3)
    rows = np.arange(len(queries))
    _, ref = index.search(queries, exact=exact)
    limit = float(np.median(ref))
    idx, dist = index.search(queries, max_distance=limit, exact=exact)
    far = idx == -1
    assert far.any() and (~far).any()
    assert (dist[far] > limit).all()
    assert (dist[far] >= as_f32_dist(d2.min(axis=1))[far]).all()  # best found, not better than brute force
    np.testing.assert_array_equal(dist[~far], ref[~far])
    np.testing.assert_array_equal(dist[~far], as_f32_dist(d2[rows[~far], idx[~far]]))
    if exact:
        np.testing.assert_array_equal(far, d2.min(axis=1) > limit**2)
    colors = index.colors(idx)
    assert (colors[far] == 0).all()
    np.testing.assert_array_equal(colors[~far], index.ab[idx[~far]])
    # max_distance=0 accepts exact hits only.
    idx0, dist0 = index.search(index.keys[:5], max_distance=0.0, exact=exact)
    assert (idx0 >= 0).all() and (dist0 == 0).all()


@pytest.mark.parametrize("channels,levels", LAYOUTS)
def test_stored_keys_have_distance_zero(channels, levels):
    rng = np.random.default_rng(11)
    lv = rng.integers(0, levels, size=(700, channels)).astype(np.uint8)
    keys = core.pack_keys(lv, levels)
    index = core.SortedIndex(keys, np.zeros((700, 2), np.float32), rng.normal(size=channels).astype(np.float32),
                             channels, levels)
    for exact in (True, False):
        idx, dist = index.search(keys, exact=exact, max_scan=8)
        assert (dist == 0).all()
        np.testing.assert_array_equal(index.keys[idx], keys)


def test_projections_and_order():
    rng = np.random.default_rng(5)
    channels, levels = 40, 5
    lv = rng.integers(0, levels, size=(500, channels)).astype(np.uint8)
    lv[100:110] = lv[7]  # duplicates: equal projections, must keep the input order (stable)
    keys = core.pack_keys(lv, levels)
    w = rng.normal(size=channels).astype(np.float32)
    index = core.SortedIndex(keys, np.zeros((500, 2), np.float32), w * 7.5, channels, levels)
    wn = w.astype(np.float64) / np.linalg.norm(w.astype(np.float64))
    np.testing.assert_allclose(index.weights, wn, rtol=1e-6)
    proj = index.projections
    assert proj.dtype == np.float64 and (np.diff(proj) >= 0).all()
    np.testing.assert_allclose(proj, lv[index.order].astype(np.float64) @ index.weights, rtol=0, atol=1e-9)
    assert sorted(index.order.tolist()) == list(range(500))
    dup = np.flatnonzero(np.isin(index.order, [7, *range(100, 110)]))
    assert (np.diff(dup) == 1).all() and (np.diff(index.order[dup]) > 0).all()


def test_empty_and_single():
    empty = core.SortedIndex(np.zeros((0, 2), np.uint64), np.zeros((0, 2), np.float32),
                             np.ones(56, np.float32), 56, 3)
    assert len(empty) == 0 and empty.keys.shape == (0, 2) and empty.ab.shape == (0, 2)
    assert empty.projections.shape == (0,) and empty.order.shape == (0,)
    q = core.pack_keys(np.ones((3, 56), np.uint8), 3)
    for exact in (True, False):
        idx, dist = empty.search(q, exact=exact)
        np.testing.assert_array_equal(idx, [-1, -1, -1])
        assert np.isinf(dist).all()
    np.testing.assert_array_equal(empty.colors(idx), np.zeros((3, 2), np.float32))
    idx, dist = empty.search(np.zeros((0, 2), np.uint64))
    assert idx.shape == (0,) and dist.shape == (0,)

    key = core.pack_keys(np.full((1, 56), 2, np.uint8), 3)
    one = core.SortedIndex(key, np.array([[3.0, -4.0]], np.float32), np.ones(56, np.float32), 56, 3)
    idx, dist = one.search(q, exact=False, max_scan=1)
    np.testing.assert_array_equal(idx, [0, 0, 0])
    np.testing.assert_allclose(dist, np.sqrt(56.0), rtol=1e-6)
    idx, dist = one.search(q, max_distance=7.5)
    np.testing.assert_array_equal(idx, [0, 0, 0])
    # Beyond max_distance: -1. Here the projection gap alone (= the distance, weights along the difference)
    # already exceeds the limit, so the entry is pruned without being examined: distance = inf (none found).
    idx, dist = one.search(q, max_distance=7.0)
    np.testing.assert_array_equal(idx, [-1, -1, -1])
    assert (dist > 7.0).all()
    np.testing.assert_array_equal(one.colors(np.array([0, -1])), [[3.0, -4.0], [0.0, 0.0]])


def test_non_contiguous_inputs():
    rng = np.random.default_rng(9)
    channels, levels = 56, 3
    lv = rng.integers(0, levels, size=(600, channels)).astype(np.uint8)
    keys = core.pack_keys(lv, levels)
    ab = rng.normal(size=(600, 2)).astype(np.float32)
    w = rng.normal(size=channels).astype(np.float32)
    ref = core.SortedIndex(keys[::2].copy(), ab[::2].copy(), w.copy(), channels, levels)
    w2 = np.repeat(w, 2)[::2]
    ab_f = np.asfortranarray(ab[::2].astype(np.float64))  # Fortran order and float64: converted
    index = core.SortedIndex(keys[::2], ab_f, w2, channels, levels)
    np.testing.assert_array_equal(index.keys, ref.keys)
    np.testing.assert_array_equal(index.ab, ref.ab)
    q = np.asfortranarray(keys[1::2])
    for exact in (True, False):
        i1, d1 = index.search(q, exact=exact)
        i2, d2 = ref.search(np.ascontiguousarray(q), exact=exact)
        np.testing.assert_array_equal(i1, i2)
        np.testing.assert_array_equal(d1, d2)
    np.testing.assert_array_equal(index.colors(i1[::-2]), ref.colors(i2[::-2].copy()))


def test_threads_equal_single_thread():
    index, _, _, _, queries, _ = setup(21, 56, 3, n=2000, m=1500)
    for exact in (True, False):
        i1, d1 = index.search(queries, exact=exact, threads=1)
        for t in (2, 0):
            it, dt = index.search(queries, exact=exact, threads=t)
            np.testing.assert_array_equal(it, i1)
            np.testing.assert_array_equal(dt, d1)


def test_concurrent_python_threads():
    index, _, _, _, queries, _ = setup(22, 56, 4, n=2000, m=800)
    expected = index.search(queries, exact=True)
    results = [None] * 4

    def work(k):
        results[k] = index.search(queries, exact=True)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in results:
        np.testing.assert_array_equal(r[0], expected[0])
        np.testing.assert_array_equal(r[1], expected[1])


def test_views_are_read_only_and_keep_index_alive():
    index, keys, _, _, _, _ = setup(4, 8, 2, n=100, m=10)
    for name in ("keys", "ab", "projections", "order", "weights"):
        view = getattr(index, name)
        assert not view.flags.writeable
        with pytest.raises(ValueError):
            view[0] = 0
    view = index.keys
    expected = view.copy()
    del index
    gc.collect()
    np.testing.assert_array_equal(view, expected)


def test_properties_and_repr():
    index, _, _, _, _, _ = setup(6, 100, 4, n=300, m=5)
    assert (index.channels, index.levels, index.words, len(index)) == (100, 4, 4, 300)
    assert index.memory_bytes() >= 300 * (4 * 8 + 2 * 4 + 8 + 8)
    r = repr(index)
    assert r.startswith("SortedIndex(") and "n=300" in r and "channels=100" in r
    assert core.SortedIndex.search.__doc__ and core.SortedIndex.__init__.__doc__ and core.SortedIndex.colors.__doc__


def test_bad_input():
    rng = np.random.default_rng(1)
    C, L = 56, 3
    keys = core.pack_keys(rng.integers(0, L, size=(10, C)).astype(np.uint8), L)
    ab = np.zeros((10, 2), np.float32)
    w = np.ones(C, np.float32)
    with pytest.raises(TypeError):
        core.SortedIndex(keys.astype(np.int64), ab, w, C, L)
    with pytest.raises(TypeError):
        core.SortedIndex(keys.astype(np.float64), ab, w, C, L)
    with pytest.raises(ValueError, match="keys"):
        core.SortedIndex(keys[:, :1], ab, w, C, L)  # key width does not match channels/levels
    with pytest.raises(ValueError, match="keys"):
        core.SortedIndex(keys, ab, w[:8], 8, L)
    with pytest.raises(ValueError, match="ab"):
        core.SortedIndex(keys, ab[:9], w, C, L)
    with pytest.raises(ValueError, match="ab"):
        core.SortedIndex(keys, np.zeros((10, 3), np.float32), w, C, L)
    with pytest.raises(ValueError, match="weights"):
        core.SortedIndex(keys, ab, w[:-1], C, L)
    with pytest.raises(ValueError, match="weights"):
        core.SortedIndex(keys, ab, np.zeros(C, np.float32), C, L)
    with pytest.raises(ValueError, match="weights"):
        core.SortedIndex(keys, ab, np.full(C, np.nan, np.float32), C, L)
    with pytest.raises(ValueError, match="weights"):
        core.SortedIndex(keys, ab, np.where(np.arange(C) == 3, np.inf, 1).astype(np.float32), C, L)
    with pytest.raises(ValueError):
        core.SortedIndex(keys, ab, w, C, 1)
    bad = keys.copy()
    bad[2, 0] |= np.uint64(3)  # level 3 at 3 levels
    with pytest.raises(ValueError, match="row 2"):
        core.SortedIndex(bad, ab, w, C, L)
    bad = keys.copy()
    bad[4, 1] |= np.uint64(1) << np.uint64(60)  # channel 62 does not exist: padding must stay zero
    with pytest.raises(ValueError, match="row 4"):
        core.SortedIndex(bad, ab, w, C, L)

    index = core.SortedIndex(keys, ab, w, C, L)
    with pytest.raises(TypeError):
        index.search(keys.astype(np.int64))
    with pytest.raises(ValueError):
        index.search(keys[:, :1])
    with pytest.raises(ValueError):
        index.search(keys[0])
    with pytest.raises(ValueError, match="max_scan"):
        index.search(keys, max_scan=0)
    for md in (-1.0, float("nan")):
        with pytest.raises(ValueError, match="max_distance"):
            index.search(keys, max_distance=md)
    with pytest.raises(ValueError, match="threads"):
        index.search(keys, threads=-1)
    bad = keys.copy()
    bad[3, 0] |= np.uint64(3)
    with pytest.raises(ValueError, match="row 3"):
        index.search(bad, threads=2)
    with pytest.raises(ValueError):
        index.colors(np.array([10]))
    with pytest.raises(ValueError):
        index.colors(np.array([-2]))
    with pytest.raises(TypeError):
        index.colors(np.array([0.0]))
    with pytest.raises(ValueError):
        index.colors(np.zeros((2, 2), np.int64))


def test_generic_path_padding_bit():
    # 3-bit fields: 21 per word, the top bit of each word is padding.
    C, L = 40, 5
    keys = core.pack_keys(np.zeros((2, C), np.uint8), L)
    keys[1, 0] |= np.uint64(1) << np.uint64(63)
    with pytest.raises(ValueError, match="row 1"):
        core.SortedIndex(keys, np.zeros((2, 2), np.float32), np.ones(C, np.float32), C, L)
