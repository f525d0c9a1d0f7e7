"""Spatial seeds and bounded searches against brute-force references."""

import numpy as np
import pytest

from hyperchroma import core


def levels_of(keys, channels, levels):
    return core.unpack_keys(keys, channels, levels).astype(np.int64)


def seeds_reference(q, found, H, W, r):
    seed = np.full(H * W, -1, np.int64)
    dist = np.full(H * W, np.inf)
    for p in range(H * W):
        if found[p]:
            seed[p], dist[p] = p, 0
            continue
        y, x = divmod(p, W)
        for ny in range(max(0, y - r), min(H, y + r + 1)):
            for nx in range(max(0, x - r), min(W, x + r + 1)):
                n = ny * W + nx
                if found[n]:
                    d = np.sqrt(((q[p] - q[n]) ** 2).sum())
                    if d < dist[p]:
                        seed[p], dist[p] = n, d
    return seed, dist


@pytest.mark.parametrize("channels,levels", [(56, 3), (8, 2), (40, 5), (100, 4)])
@pytest.mark.parametrize("radius", [0, 1, 2])
def test_neighbor_seeds_match_brute_force(rng, channels, levels, radius):
    H, W = 9, 13
    q = rng.integers(0, levels, (H * W, channels)).astype(np.uint8)
    keys = core.pack_keys(q, levels)
    found = (rng.random(H * W) < 0.4).astype(np.uint8)
    seed, dist = core.neighbor_seeds(keys, found, H, W, channels, levels, radius, threads=2)
    rseed, rdist = seeds_reference(q.astype(np.int64), found, H, W, radius)
    np.testing.assert_allclose(dist, rdist, rtol=1e-6)
    np.testing.assert_array_equal(seed == -1, rseed == -1)
    ok = seed >= 0
    # ties may pick another neighbor at the same distance: check the chosen one's distance
    chosen = np.sqrt(((q[ok].astype(np.int64) - q[seed[ok]].astype(np.int64)) ** 2).sum(1))
    np.testing.assert_allclose(chosen, rdist[ok], rtol=1e-6)


def test_neighbor_seeds_bad_input():
    keys = np.zeros((6, 2), np.uint64)
    with pytest.raises(ValueError, match="H\\*W"):
        core.neighbor_seeds(keys, np.zeros(6, np.uint8), 2, 4, 56, 3)
    with pytest.raises(ValueError, match="found"):
        core.neighbor_seeds(keys, np.zeros(5, np.uint8), 2, 3, 56, 3)
    with pytest.raises(ValueError, match="radius"):
        core.neighbor_seeds(keys, np.zeros(6, np.uint8), 2, 3, 56, 3, radius=-1)
    with pytest.raises(TypeError):
        core.neighbor_seeds(keys.astype(np.int64), np.zeros(6, np.uint8), 2, 3, 56, 3)


@pytest.mark.parametrize("exact", [True, False])
def test_search_with_bounds(rng, exact):
    C, L = 24, 3
    stored = rng.integers(0, L, (3000, C)).astype(np.uint8)
    queries = rng.integers(0, L, (400, C)).astype(np.uint8)
    w = rng.standard_normal(C).astype(np.float32)
    idx = core.SortedIndex(core.pack_keys(stored, L), rng.normal(size=(3000, 2)).astype(np.float32), w, C, L)
    all_d = np.sqrt(((queries[:, None, :].astype(int) - stored[None].astype(int)) ** 2).sum(-1))
    true = all_d.min(1)
    bounds = rng.uniform(0, 6, 400).astype(np.float32)
    bounds[:50] = np.inf
    i, d = idx.search(core.pack_keys(queries, L), exact=exact, max_scan=100000 if not exact else 64, bounds=bounds)
    hit = i >= 0
    # found exactly when some entry is within the bound, and then it is the nearest one
    np.testing.assert_array_equal(hit, true <= bounds + 1e-6)
    np.testing.assert_allclose(d[hit], true[hit], rtol=1e-6)
    assert np.all(np.isinf(d[~hit]))
    with pytest.raises(ValueError, match="bounds"):
        idx.search(core.pack_keys(queries, L), bounds=bounds[:3])


def test_huge_radius_and_bounds_behave():
    q = np.array([[2, 2, 2], [0, 0, 0], [1, 1, 1], [2, 2, 1]], np.uint8)
    keys = core.pack_keys(q, 3)
    found = np.array([1, 0, 0, 0], np.uint8)
    small = core.neighbor_seeds(keys, found, 2, 2, 3, 3, radius=1)
    huge = core.neighbor_seeds(keys, found, 2, 2, 3, 3, radius=2**31 - 1)
    for a, b in zip(small, huge):
        np.testing.assert_array_equal(a, b)
    idx = core.SortedIndex(keys[:1], np.zeros((1, 2), np.float32), np.ones(3, np.float32), 3, 3)
    for bound in (1e9, 1e10, 1e19, 1e30, np.inf):
        i, d = idx.search(keys[1:2], exact=True, bounds=np.array([bound], np.float32))
        assert i[0] == 0 and d[0] == pytest.approx(np.sqrt(12))


@pytest.mark.parametrize("radius", [0, 1, 2])
def test_seeds_at_listed_pixels_equal_the_full_result(radius):
    rng = np.random.default_rng(7)
    H, W, channels, levels = 13, 17, 20, 3
    keys = core.pack_keys(rng.integers(0, levels, (H * W, channels), dtype=np.uint8), levels)
    found = (rng.random(H * W) < 0.5).astype(np.uint8)
    seed, dist = core.neighbor_seeds(keys, found, H, W, channels, levels, radius, threads=2)
    for pixels in (np.flatnonzero(found == 0), rng.integers(0, H * W, 50), np.zeros(0, np.int64),
                   np.flatnonzero(found == 0)[::-1].astype(np.int32)):
        s, d = core.neighbor_seeds(keys, found, H, W, channels, levels, radius, threads=3, pixels=pixels)
        np.testing.assert_array_equal(s, seed[pixels])
        np.testing.assert_array_equal(d, dist[pixels])
    with pytest.raises(ValueError, match="outside"):
        core.neighbor_seeds(keys, found, H, W, channels, levels, radius, pixels=np.array([H * W]))
    with pytest.raises(TypeError, match="integer"):
        core.neighbor_seeds(keys, found, H, W, channels, levels, radius, pixels=np.array([0.5]))
