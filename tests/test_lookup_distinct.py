"""The lookup chain run once per distinct missing key (hyperchroma.lookup.lookup) against the same chain run
once per pixel (the previous implementation, kept here as the obvious reference), and core.unique_keys
against numpy."""

import numpy as np
import pytest

from hyperchroma import ColorizeSettings, FitSettings, Status, core
from hyperchroma.lookup import Lookup, lookup, lookup_py
from hyperchroma.table import ColorTable


def per_pixel(table, keys, shape, settings, threads=1):
    """The chain one pixel at a time: every missing pixel probed and searched with its own bound."""
    h, w = shape
    ab, hit = table.lookup(keys, threads=threads)
    exact = hit == core.STATUS_HIT
    found = exact.view(np.uint8)
    status = np.where(exact, np.uint8(Status.EXACT), np.uint8(Status.GRAY))
    distance = np.where(exact, np.float32(0), np.float32(np.inf))
    miss = np.flatnonzero(found == 0)
    ab[miss] = 0
    if miss.size and settings.one_step and settings.max_distance >= 1:
        ab1, hits = table.lookup_one_step(keys[miss], threads=threads)
        near = hits > 0
        ab[miss[near]] = ab1[near]
        status[miss[near]] = Status.NEAREST
        distance[miss[near]] = 1.0
        miss = miss[~near]
    if miss.size:
        bounds = seed = None
        if settings.seed_radius > 0:
            seed_all, seed_d = core.neighbor_seeds(keys, found, h, w, table.channels, table.levels,
                                                   settings.seed_radius, threads=threads)
            seed, bounds = seed_all[miss], seed_d[miss]
        idx, dist = table.index.search(keys[miss], max_distance=settings.max_distance, max_scan=settings.max_scan,
                                       exact=settings.exact, threads=threads, bounds=bounds)
        from_index = idx >= 0
        colors = table.index.colors(idx)
        dist = np.where(from_index, dist, np.inf).astype(np.float32)
        if seed is not None and bounds is not None:
            from_seed = ~from_index & (seed >= 0) & (bounds <= settings.max_distance)
            colors[from_seed] = ab[seed[from_seed]]
            dist[from_seed] = bounds[from_seed]
            from_index |= from_seed
        colors[~from_index] = 0
        ab[miss] = colors
        status[miss] = np.where(from_index, np.uint8(Status.NEAREST), np.uint8(Status.GRAY))
        distance[miss] = dist
    return Lookup(ab, status, distance)


def clustered_image(rng, h, w, channels, levels, centers=6, p=0.12):
    """Keys of an image: smooth regions (a few cluster centres, repeated keys) with random level flips."""
    c = rng.integers(0, levels, (centers, channels))
    region = (np.arange(h)[:, None] * centers // h + np.arange(w)[None, :] * 2 // w) % centers
    lv = c[region.ravel()].copy()
    flip = rng.random(lv.shape) < p
    lv[flip] = rng.integers(0, levels, int(flip.sum()))
    return lv.astype(np.uint8)


def make_table(rng, channels, levels, stored):
    ab = rng.uniform(-60, 60, (len(stored), 2)).astype(np.float32)
    weights = rng.normal(size=channels).astype(np.float32)
    t = ColorTable.empty(channels, levels, weights, FitSettings(levels=levels))
    t.insert(core.pack_keys(stored, levels), ab)
    t.finalize()
    return t


@pytest.mark.parametrize("channels,levels", [(7, 3), (56, 3), (12, 4), (9, 2), (20, 5)])
@pytest.mark.parametrize("one_step,seed_radius,max_scan,max_distance",
                         [(True, 1, 64, 5.0), (False, 1, 64, 5.0), (True, 0, 8, 5.0), (False, 2, 3, 2.3),
                          (True, 1, 16, 1.5), (False, 1, 64, 1.0), (False, 1, 64, 2 ** 0.5), (True, 3, 1, 100.0)])
def test_distinct_equals_per_pixel(rng, channels, levels, one_step, seed_radius, max_scan, max_distance):
    h, w = 23, 31
    img = clustered_image(rng, h, w, channels, levels)
    stored = np.unique(np.concatenate([img[rng.random(h * w) < 0.4],
                                       rng.integers(0, levels, (200, channels), dtype=np.uint8)]), axis=0)
    table = make_table(rng, channels, levels, stored)
    keys = core.pack_keys(img, levels)
    s = ColorizeSettings(one_step=one_step, seed_radius=seed_radius, max_scan=max_scan, max_distance=max_distance)
    want = per_pixel(table, keys, (h, w), s)
    for got in (lookup(table, keys, (h, w), s, threads=2), lookup(table, keys, (h, w), s),
                lookup_py(table, keys, (h, w), s, threads=2)):
        assert (got.status != Status.EXACT).any()
        for a, b in zip((got.ab, got.status, got.distance), (want.ab, want.status, want.distance)):
            np.testing.assert_array_equal(a, b)


def test_exact_search_and_no_misses(rng):
    h, w, channels, levels = 9, 11, 8, 3
    img = clustered_image(rng, h, w, channels, levels)
    keys = core.pack_keys(img, levels)
    table = make_table(rng, channels, levels, np.unique(img[::3], axis=0))
    for s in (ColorizeSettings(exact=True, one_step=False), ColorizeSettings(exact=True, seed_radius=0)):
        want = per_pixel(table, keys, (h, w), s)
        for got in (lookup(table, keys, (h, w), s), lookup_py(table, keys, (h, w), s)):
            np.testing.assert_array_equal(got.ab, want.ab)
            np.testing.assert_array_equal(got.status, want.status)
            np.testing.assert_array_equal(got.distance, want.distance)
    full = make_table(rng, channels, levels, np.unique(img, axis=0))
    got = lookup(full, keys, (h, w), ColorizeSettings())
    assert (got.status == Status.EXACT).all() and (got.distance == 0).all()


@pytest.mark.parametrize("n,words", [(0, 1), (1, 2), (7, 1), (500, 2), (3000, 4)])
def test_unique_keys_against_numpy(rng, n, words):
    keys = rng.integers(0, 6, (n, words)).astype(np.uint64)  # many repeats
    first, inverse = core.unique_keys(keys)
    assert first.dtype == inverse.dtype == np.int64 and inverse.shape == (n,)
    np.testing.assert_array_equal(keys[first][inverse], keys)
    assert np.all(np.diff(first) > 0)  # order of first appearance
    assert len(first) == len(np.unique(keys, axis=0))
    if n:
        assert first[0] == 0
    np.testing.assert_array_equal(core.unique_keys(keys[::-1])[0].size, first.size)  # non-contiguous


def test_unique_keys_bad_input():
    with pytest.raises(TypeError, match="uint64"):
        core.unique_keys(np.zeros((3, 2), np.int64))
    with pytest.raises(ValueError, match=r"\(N, words\)"):
        core.unique_keys(np.zeros(3, np.uint64))


def test_chain_status_codes_and_bad_input(rng):
    assert (core.LOOKUP_GRAY, core.LOOKUP_EXACT, core.LOOKUP_NEAREST) == (Status.GRAY, Status.EXACT, Status.NEAREST)
    table = make_table(rng, 8, 3, rng.integers(0, 3, (50, 8), dtype=np.uint8))
    keys = core.pack_keys(rng.integers(0, 3, (12, 8), dtype=np.uint8), 3)
    with pytest.raises(ValueError, match="got 12"):
        lookup(table, keys, (5, 5), ColorizeSettings())
    with pytest.raises(ValueError, match="keys"):
        core.lookup_chain(table.table, table.index, keys, 3, 5)
    with pytest.raises(ValueError, match="max_scan"):
        core.lookup_chain(table.table, table.index, keys, 3, 4, max_scan=0)
    with pytest.raises(ValueError, match="out of range"):
        core.lookup_chain(table.table, table.index, keys | np.uint64(3), 3, 4)
    other = make_table(rng, 9, 3, rng.integers(0, 3, (50, 9), dtype=np.uint8))
    with pytest.raises(ValueError, match="layout"):
        core.lookup_chain(table.table, other.index, keys, 3, 4)


def film_frames(rng, h, w, channels, levels, count, change=0.08):
    """Keys of consecutive frames: each the previous one with a few pixels' levels changed (a moving film)."""
    img = clustered_image(rng, h, w, channels, levels)
    frames = [img]
    for _ in range(count - 1):
        img = img.copy()
        moved = rng.random(len(img)) < change
        img[moved] = rng.integers(0, levels, (int(moved.sum()), channels))
        frames.append(img)
    return [core.pack_keys(f, levels) for f in frames]


@pytest.mark.parametrize("channels,levels", [(56, 3), (12, 4), (9, 2)])
@pytest.mark.parametrize("settings", [ColorizeSettings(), ColorizeSettings(one_step=False),
                                      ColorizeSettings(seed_radius=0, max_scan=8),
                                      ColorizeSettings(max_distance=1.5, seed_radius=2),
                                      ColorizeSettings(exact=True)])
def test_miss_memo_over_film_frames(rng, channels, levels, settings):
    """The chain recalls the previous call's answers for its distinct missing keys: over consecutive frames the
    output equals the per-pixel chain and the chain without the memo, frame after frame."""
    h, w = 19, 27
    frames = film_frames(rng, h, w, channels, levels, 6)
    stored = np.unique(np.concatenate([core.unpack_keys(frames[0], channels, levels)[rng.random(h * w) < 0.35],
                                       rng.integers(0, levels, (150, channels), dtype=np.uint8)]), axis=0)
    table = make_table(rng, channels, levels, stored)
    core.clear_lookup_memo()
    for keys in frames + frames[::-1]:
        want = per_pixel(table, keys, (h, w), settings)
        got = lookup(table, keys, (h, w), settings, threads=2)
        cold = core.lookup_chain(table.table, table.index, keys, h, w, one_step=settings.one_step,
                                 max_distance=settings.max_distance, max_scan=settings.max_scan, exact=settings.exact,
                                 seed_radius=settings.seed_radius, memo=False)
        assert (got.status != Status.EXACT).any()
        for a, b, c in zip((got.ab, got.status, got.distance), (want.ab, want.status, want.distance), cold):
            np.testing.assert_array_equal(a, b)
            np.testing.assert_array_equal(c, b)


def test_miss_memo_follows_table_index_and_options(rng):
    """Answers are recalled only for the same table contents, index and options: another table with the same
    keys, a table changed in place, and other settings each get their own answers."""
    h, w, channels, levels = 17, 21, 24, 3
    (keys,) = film_frames(rng, h, w, channels, levels, 1)
    stored = np.unique(core.unpack_keys(keys, channels, levels)[rng.random(h * w) < 0.3], axis=0)
    a = make_table(rng, channels, levels, stored)
    b = make_table(rng, channels, levels, stored)  # same keys and layout, other colors
    s = ColorizeSettings()
    for table in (a, b, a, b):
        got = lookup(table, keys, (h, w), s)
        want = per_pixel(table, keys, (h, w), s)
        np.testing.assert_array_equal(got.ab, want.ab)
        np.testing.assert_array_equal(got.status, want.status)
    for other in (ColorizeSettings(max_distance=2.0), ColorizeSettings(one_step=False), ColorizeSettings(max_scan=4)):
        lookup(a, keys, (h, w), s)
        got, want = lookup(a, keys, (h, w), other), per_pixel(a, keys, (h, w), other)
        np.testing.assert_array_equal(got.ab, want.ab)
        np.testing.assert_array_equal(got.status, want.status)
        np.testing.assert_array_equal(got.distance, want.distance)
    # the core table changed in place (the color table's index kept): its one-step answers change with it
    lookup(a, keys, (h, w), s)
    missing = core.unpack_keys(keys[a.lookup(keys)[1] != core.STATUS_HIT], channels, levels)
    near = missing[:40].copy()
    near[:, 0] = np.where(near[:, 0] > 0, near[:, 0] - 1, 1)  # one step from missing keys
    a.table.insert(core.pack_keys(near, levels), np.full((len(near), 2), 77.0, np.float32))
    got, want = lookup(a, keys, (h, w), s), per_pixel(a, keys, (h, w), s)
    np.testing.assert_array_equal(got.ab, want.ab)
    np.testing.assert_array_equal(got.status, want.status)


def test_miss_memo_is_per_thread(rng):
    """Two threads alternating frames of different tables never see each other's answers."""
    from concurrent.futures import ThreadPoolExecutor

    h, w, channels, levels = 15, 19, 30, 3
    jobs = []
    for _ in range(2):
        frames = film_frames(rng, h, w, channels, levels, 8)
        stored = np.unique(core.unpack_keys(frames[0], channels, levels)[rng.random(h * w) < 0.3], axis=0)
        jobs.append((make_table(rng, channels, levels, stored), frames))
    s = ColorizeSettings()

    def run(job):
        table, frames = job
        return [lookup(table, k, (h, w), s) for k in frames]

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(run, jobs * 3))
    for (table, frames), got in zip(jobs * 3, results):
        for k, g in zip(frames, got):
            want = per_pixel(table, k, (h, w), s)
            np.testing.assert_array_equal(g.ab, want.ab)
            np.testing.assert_array_equal(g.status, want.status)
            np.testing.assert_array_equal(g.distance, want.distance)


@pytest.mark.parametrize("channels", [8, 32, 33, 56, 70])
def test_chain_rejects_any_bad_key_row(rng, channels):
    """The chain's key check (a branch-free pass for the default 3-level layout, then the row-by-row one) names
    the first bad row, for a field set to level 3 or a bit beyond a word's last field, anywhere in the keys."""
    table = make_table(rng, channels, 3, rng.integers(0, 3, (40, channels), dtype=np.uint8))
    levels = rng.integers(0, 3, (6 * 7, channels), dtype=np.uint8)
    keys = core.pack_keys(levels, 3)
    core.lookup_chain(table.table, table.index, keys, 6, 7)  # valid keys pass
    words = keys.shape[1]
    fields = 32  # 2-bit fields in a word
    for _ in range(12):
        bad = keys.copy()
        row = int(rng.integers(len(bad)))
        if rng.random() < 0.5:  # a level 3
            c = int(rng.integers(channels))
            bad[row, c // fields] |= np.uint64(3) << np.uint64(2 * (c % fields))
            match = f"row {row} has a level out of range"
        else:  # a stray bit past the last channel of the last word (when it has room)
            used = 2 * (channels - (words - 1) * fields)
            if used >= 64:
                continue
            bad[row, words - 1] |= np.uint64(1) << np.uint64(int(rng.integers(used, 64)))
            match = f"row {row} has non-zero bits beyond"
        with pytest.raises(ValueError, match=match):
            core.lookup_chain(table.table, table.index, bad, 6, 7)


def test_chain_on_two_threads_equals_one_every_time(rng):
    """An image large enough for the chain's parallel passes (the miss list and the one-step split compacted in
    blocks, the last writes per pixel), hits and misses interleaved at random: every one of many runs on two
    threads gives the one-thread answer (a write of one block landing in the next one's would show)."""
    channels, levels, h, w = 20, 3, 96, 128
    stored = rng.integers(0, levels, (3000, channels), dtype=np.uint8)
    table = make_table(rng, channels, levels, stored)
    # each pixel: a stored key (hit), a stored key one step away (one-step) or a random one
    pick = stored[rng.integers(0, len(stored), h * w)].copy()
    kind = rng.integers(0, 3, h * w)
    c = rng.integers(0, channels, h * w)
    step = kind == 1
    pick[step, c[step]] = np.where(pick[step, c[step]] > 0, pick[step, c[step]] - 1, 1)
    pick[kind == 2] = rng.integers(0, levels, (int((kind == 2).sum()), channels))
    keys = core.pack_keys(pick, levels)
    args = (table.table, table.index, keys, h, w)
    ref = core.lookup_chain(*args, threads=1, memo=False)
    want = lookup_py(table, keys, (h, w), ColorizeSettings(), threads=1)
    np.testing.assert_array_equal(ref[1], want.status)
    np.testing.assert_allclose(ref[0], want.ab, atol=1e-5)
    for memo in (False, True):
        for _ in range(40):
            core.clear_lookup_memo()
            got = core.lookup_chain(*args, threads=2, memo=memo)
            for g, r in zip(got, ref):
                np.testing.assert_array_equal(g, r)
