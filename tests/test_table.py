"""core.Table against a slow, obvious pure-Python dict model of the same policies."""

from __future__ import annotations

import math
import pickle
import threading

import numpy as np
import pytest

from hyperchroma import core

SCALE = float(core.Table.AB_SCALE)  # fixed-point units per ab unit
QMIN, QMAX = -(2**20), 2**20 - 1  # stored range: [-128, 128)
CMAX = core.Table.COUNT_MAX
POLICIES = ["mark", "mean", "vote"]
LAYOUTS = [(8, 2), (56, 3), (70, 3), (100, 4)]  # 1, 2, 3 and 4 words


# ----------------------------------------------------------------------------------------- reference
def quant(x: float) -> int:
    v = min(max(float(x) * SCALE, QMIN), QMAX)
    return math.floor(v + 0.5)


def round_div(n: int, d: int) -> int:
    """round(n / d), half up, exact."""
    return (2 * n + d) // (2 * d)


class RefTable:
    """dict key-tuple -> [a, b, count, conflicting, bins, acc]; a, b in fixed point; bins only for 'vote'
    ({(bin a, bin b): [count, sum a, sum b]}), acc for 'mean' / 'mark' ([sum a, sum b, n, min a, max a,
    min b, max b]); None when dropped by finalize() (then reseeded from the stored color)."""

    def __init__(self, policy: str, tolerance: float = 12.0, vote_bin: float = 10.0):
        self.policy, self.tolerance, self.vote_bin = policy, tolerance, vote_bin
        self.d: dict[tuple, list] = {}
        t = tolerance * SCALE
        self.tol2 = t * t

    def bin(self, q: int) -> int:
        return math.floor((q / SCALE) / self.vote_bin)

    def insert(self, keys: np.ndarray, ab: np.ndarray) -> None:
        ab = np.asarray(ab, dtype=np.float32)
        for k, (x, y) in zip(map(tuple, keys.tolist()), ab.tolist()):
            xa, xb = quant(x), quant(y)
            e = self.d.get(k)
            if e is None:
                if self.policy == "vote":
                    self.d[k] = [xa, xb, 1, False, {(self.bin(xa), self.bin(xb)): [1, xa, xb]}, None]
                else:
                    self.d[k] = [xa, xb, 1, False, None, [xa, xb, 1, xa, xa, xb, xb]]
                continue
            self.combine(k, RefTable.seeded_bins(self, [xa, xb, 1, False, None, None]),
                         [xa, xb, 1, xa, xa, xb, xb], False)

    def seeded_bins(self, e):
        """The vote bins of entry e, reseeded from its stored color when dropped."""
        return e[4] if e[4] is not None else {(self.bin(e[0]), self.bin(e[1])): [e[2], e[0] * e[2], e[1] * e[2]]}

    @staticmethod
    def seeded_acc(e):
        return e[5] if e[5] is not None else [e[0] * e[2], e[1] * e[2], e[2], e[0], e[0], e[1], e[1]]

    def combine(self, k, bins2, acc2, conf2) -> None:
        """Add colors (vote bins or mean / mark sums) to the existing entry k and settle its color."""
        a, b, c, conf, bins, acc = self.d[k]
        conf = conf or conf2
        if self.policy == "vote":
            bins = {key: list(v) for key, v in self.seeded_bins(self.d[k]).items()}
            for key, (n, sa, sb) in bins2.items():
                r = bins.setdefault(key, [0, 0, 0])
                r[0], r[1], r[2] = r[0] + n, r[1] + sa, r[2] + sb
            top = min(bins, key=lambda key: (-bins[key][0], key))  # most votes, then the smaller bin
            n, sa, sb = bins[top]
            a, b, c = round_div(sa, n), round_div(sb, n), min(sum(v[0] for v in bins.values()), CMAX)
        else:
            s = list(self.seeded_acc(self.d[k]))
            s[0], s[1], s[2] = s[0] + acc2[0], s[1] + acc2[1], s[2] + acc2[2]
            s[3], s[4], s[5], s[6] = min(s[3], acc2[3]), max(s[4], acc2[4]), min(s[5], acc2[5]), max(s[6], acc2[6])
            if self.policy == "mark":
                conf = conf or float((s[4] - s[3]) ** 2 + (s[6] - s[5]) ** 2) > self.tol2
            a, b, c, acc = round_div(s[0], s[2]), round_div(s[1], s[2]), min(s[2], CMAX), s
        self.d[k] = [a, b, c, conf, bins if self.policy == "vote" else None, acc if self.policy != "vote" else None]

    def merge(self, other: "RefTable") -> None:
        """The dict model of Table.merge: other's entries added key by key (new keys appended in its order)."""
        for k, e in other.d.items():
            bins2 = other.seeded_bins(e) if self.policy == "vote" else None
            acc2 = self.seeded_acc(e) if self.policy != "vote" else None
            if k not in self.d:
                self.d[k] = [e[0], e[1], e[2], e[3], None, None]
                if self.policy == "vote":
                    self.d[k][4] = {key: list(v) for key, v in bins2.items()}
                else:
                    self.d[k][5] = list(acc2)
                continue
            self.combine(k, bins2, acc2, e[3])

    def drop_bins(self) -> None:
        """What finalize() drops: the vote bins and the mean / mark sums."""
        for e in self.d.values():
            e[4] = e[5] = None

    def lookup(self, keys: np.ndarray):
        ab = np.zeros((len(keys), 2), np.float32)
        st = np.zeros(len(keys), np.uint8)
        for i, k in enumerate(map(tuple, keys.tolist())):
            e = self.d.get(k)
            if e is None:
                st[i] = core.STATUS_MISS
            elif e[3]:
                st[i] = core.STATUS_CONFLICT
            else:
                st[i] = core.STATUS_HIT
                ab[i] = (e[0] / SCALE, e[1] / SCALE)
        return ab, st

    def entries(self):
        keys = np.array(list(self.d.keys()), np.uint64)
        vals = list(self.d.values())
        return dict(
            keys=keys,
            ab=np.array([(v[0] / SCALE, v[1] / SCALE) for v in vals], np.float32).reshape(-1, 2),
            counts=np.array([v[2] for v in vals], np.uint32),
            conflicting=np.array([v[3] for v in vals], bool),
        )


# ----------------------------------------------------------------------------------------- helpers
def start_lookups(query, workers=4, rounds=5):
    """Start ``workers`` threads each calling ``query(i)`` ``rounds`` times; (threads, results, errors) to join."""
    results, errors = [None] * workers, []

    def worker(i):
        try:
            results[i] = [query(i) for _ in range(rounds)]
        except Exception as e:  # pragma: no cover - reported by the caller's assertion
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(workers)]
    for th in threads:
        th.start()
    return threads, results, errors


def random_keys(rng, n, channels, levels):
    return core.pack_keys(rng.integers(0, levels, size=(n, channels), dtype=np.uint8), levels)


def clustered_stream(rng, pool, n):
    """n (key, ab) pairs drawn from a small key pool: each key has a home color, sometimes a far one."""
    idx = rng.integers(0, len(pool), n)
    home = rng.uniform(-90, 90, size=(len(pool), 2))
    ab = home[idx] + rng.normal(0, 1.5, size=(n, 2))
    far = rng.random(n) < 0.08
    ab[far] = rng.uniform(-127, 127, size=(far.sum(), 2))
    return pool[idx], ab.astype(np.float32)


def assert_entries_equal(got, want):
    np.testing.assert_array_equal(got["keys"], want["keys"])
    np.testing.assert_allclose(got["ab"], want["ab"], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(got["counts"], want["counts"])
    np.testing.assert_array_equal(got["conflicting"], want["conflicting"])


def assert_matches(t, ref, probe):
    assert len(t) == len(ref.d)
    assert_entries_equal(t.entries(), ref.entries())
    np.testing.assert_array_equal(t.counts(), ref.entries()["counts"])
    ab, st = t.lookup(probe)
    rab, rst = ref.lookup(probe)
    np.testing.assert_array_equal(st, rst)
    np.testing.assert_allclose(ab, rab, rtol=0, atol=1e-6)


def fill(policy, channels, levels, seed, capacity=0, pool_size=300, n=6000):
    rng = np.random.default_rng(seed)
    pool = np.unique(random_keys(rng, pool_size, channels, levels), axis=0)
    keys, ab = clustered_stream(rng, pool, n)
    t = core.Table(channels, levels, policy, 12.0, capacity)
    ref = RefTable(policy)
    for chunk in np.array_split(np.arange(n), [0, 1, 7, 500, 2000]):  # includes empty and 1-row batches
        t.insert(keys[chunk], ab[chunk])
        ref.insert(keys[chunk], ab[chunk])
    absent = random_keys(rng, 200, channels, levels)
    probe = np.concatenate([pool, absent, pool[::-1]])
    return t, ref, probe, rng


# ----------------------------------------------------------------------------------------- behaviour
@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("channels,levels", LAYOUTS)
@pytest.mark.parametrize("capacity", [0, 1, 5000])
def test_matches_reference(policy, channels, levels, capacity):
    t, ref, probe, _ = fill(policy, channels, levels, seed=channels * 7 + levels + capacity, capacity=capacity)
    assert t.words == core.key_words(channels, levels)
    assert_matches(t, ref, probe)
    st = t.lookup(probe)[1]
    assert (st == core.STATUS_MISS).any() and (st == core.STATUS_HIT).any()
    if policy == "mark":
        assert (st == core.STATUS_CONFLICT).any()
    else:
        assert not (st == core.STATUS_CONFLICT).any()


@pytest.mark.parametrize("policy", POLICIES)
def test_many_rehashes_many_keys(policy):
    # ~20k distinct keys from capacity 0: dozens of rehashes, colors must survive every one of them.
    rng = np.random.default_rng(11)
    pool = np.unique(random_keys(rng, 20000, 56, 3), axis=0)
    keys, ab = clustered_stream(rng, pool, 40000)
    t, ref = core.Table(56, 3, policy, capacity=0), RefTable(policy)
    for chunk in np.array_split(np.arange(len(keys)), 13):
        t.insert(keys[chunk], ab[chunk])
    ref.insert(keys, ab)
    assert_matches(t, ref, np.concatenate([pool, random_keys(rng, 500, 56, 3)]))


@pytest.mark.parametrize("policy", POLICIES)
def test_from_entries_round_trip(policy):
    t, ref, probe, rng = fill(policy, 56, 3, seed=5)
    e = t.entries()
    t2 = core.Table.from_entries(56, 3, policy, 12.0, e["keys"], e["ab"], e["counts"], e["conflicting"])
    assert len(t2) == len(t) and t2.policy == policy and t2.words == 2
    assert_entries_equal(t2.entries(), e)
    for a, b in zip(t.lookup(probe), t2.lookup(probe)):
        np.testing.assert_array_equal(a, b)
    # Keep fitting both: the rebuilt table has no vote bins, like the original after finalize().
    t.finalize()
    assert t.vote_records() == 0
    ref.drop_bins()
    keys, ab = clustered_stream(rng, probe[:100], 3000)
    for tab in (t, t2):
        tab.insert(keys, ab)
    ref.insert(keys, ab)
    assert_matches(t, ref, probe)
    assert_matches(t2, ref, probe)


def test_from_entries_rejects_bad_input():
    rng = np.random.default_rng(3)
    keys = random_keys(rng, 10, 56, 3)
    ab = np.zeros((10, 2), np.float32)
    counts = np.ones(10, np.uint32)
    flags = np.zeros(10, bool)
    dup = keys.copy()
    dup[7] = dup[2]
    with pytest.raises(ValueError, match="duplicate"):
        core.Table.from_entries(56, 3, "mean", 12.0, dup, ab, counts, flags)
    with pytest.raises(ValueError, match="counts"):
        core.Table.from_entries(56, 3, "mean", 12.0, keys, ab, np.zeros(10, np.uint32), flags)
    with pytest.raises(ValueError):
        core.Table.from_entries(56, 3, "mean", 12.0, keys, ab[:9], counts, flags)
    with pytest.raises(ValueError):
        core.Table.from_entries(56, 3, "mean", 12.0, keys, ab, counts[:9], flags)
    with pytest.raises(ValueError):
        core.Table.from_entries(56, 3, "nope", 12.0, keys, ab, counts, flags)
    with pytest.raises(TypeError):
        core.Table.from_entries(56, 3, "mean", 12.0, keys.astype(np.int64), ab, counts, flags)
    big = np.full(10, 2**32 - 1, np.uint32)  # saturates instead of overflowing
    t = core.Table.from_entries(56, 3, "mean", 12.0, keys, ab, big, flags)
    assert (t.counts() == CMAX).all()
    empty = core.Table.from_entries(56, 3, "vote", 12.0, keys[:0], ab[:0], counts[:0], flags[:0])
    assert len(empty) == 0


def test_policies_by_hand():
    k = core.pack_keys(np.zeros((1, 56), np.uint8), 3)

    def run(policy, colors):
        t = core.Table(56, 3, policy)
        for c in colors:
            t.insert(k, np.array([c], np.float32))
        ab, st = t.lookup(k)
        return ab[0].tolist(), int(st[0]), int(t.counts()[0])

    assert run("mean", [(0, 0), (5, -1)]) == ([2.5, -0.5], core.STATUS_HIT, 2)
    assert run("mark", [(0, 0), (5, 0)]) == ([2.5, 0.0], core.STATUS_HIT, 2)
    assert run("mark", [(0, 0), (5, 0), (20, 0)]) == ([0.0, 0.0], core.STATUS_CONFLICT, 3)  # 17.5 > 12
    assert run("mark", [(0, 0), (12, 0)]) == ([6.0, 0.0], core.STATUS_HIT, 2)  # exactly the tolerance: kept
    assert run("mark", [(0, 0), (9, 0), (0, 9)]) == ([0.0, 0.0], core.STATUS_CONFLICT, 3)  # box diagonal 12.7
    assert run("mark", [(0, 0), (8, 0), (0, 8)]) == ([21845 / SCALE] * 2, core.STATUS_HIT, 3)  # 11.3: kept
    assert run("vote", [(1, 0), (15, 0)]) == ([1.0, 0.0], core.STATUS_HIT, 2)  # tie: the smaller bin wins
    assert run("vote", [(15, 0), (1, 0)]) == ([1.0, 0.0], core.STATUS_HIT, 2)  # in any order
    assert run("vote", [(1, 0), (2, 0), (15, 0), (16, 0), (17, 0)]) == ([16.0, 0.0], core.STATUS_HIT, 5)
    assert run("vote", [(15, 0), (16, 0), (1, 0), (3, 0)]) == ([2.0, 0.0], core.STATUS_HIT, 4)
    assert run("mean", [(1, 0), (2, 0), (2, 0)]) == ([13653 / SCALE, 0.0], core.STATUS_HIT, 3)
    assert run("mean", [(500, -500)]) == ([128 - 1 / SCALE, -128.0], core.STATUS_HIT, 1)  # clamped


def test_counts_saturate():
    k = np.repeat(core.pack_keys(np.ones((1, 8), np.uint8), 2), CMAX + 10, axis=0)
    ab = np.tile(np.array([[3.25, -7.5]], np.float32), (len(k), 1))
    t = core.Table(8, 2, "mean")
    t.insert(k, ab)
    t.insert(k[:5], ab[:5])
    assert t.counts().tolist() == [CMAX]
    assert t.lookup(k[:1])[0].tolist() == [[3.25, -7.5]]


def test_memory_per_entry():
    rng = np.random.default_rng(1)
    n = 200_000
    keys = np.unique(random_keys(rng, n + n // 10, 56, 3), axis=0)[:n]
    rng.shuffle(keys)
    ab = rng.uniform(-100, 100, size=(n, 2)).astype(np.float32)
    for policy in POLICIES:
        t = core.Table(56, 3, policy)
        t.insert(keys, ab)
        assert len(t) == n
        t.finalize()
        assert t.memory_bytes() / n <= 32, policy
    t = core.Table(56, 3, "mean")
    t.insert(keys, ab)
    assert t.lookup(keys)[1].min() == core.STATUS_HIT
    v = core.Table(56, 3, "vote")
    v.insert(keys[:1000], ab[:1000])
    assert v.vote_records() == 1000
    with_bins = v.memory_bytes()
    v.finalize()
    assert v.vote_records() == 0 and v.memory_bytes() < with_bins


def test_non_contiguous_inputs():
    rng = np.random.default_rng(2)
    keys = random_keys(rng, 400, 70, 3)
    ab = rng.uniform(-50, 50, size=(400, 4)).astype(np.float64)
    t, ref = core.Table(70, 3, "mean"), RefTable("mean")
    t.insert(keys[::2], ab[::2, 1::2])  # strided rows and columns, float64 colors
    ref.insert(keys[::2], ab[::2, 1::2])
    fkeys = np.asfortranarray(keys[1::2])
    t.insert(fkeys, np.asfortranarray(ab[1::2, :2]))
    ref.insert(fkeys, ab[1::2, :2])
    assert_matches(t, ref, keys[::3])


def test_empty_batches():
    t = core.Table(56, 3, "vote")
    t.insert(np.zeros((0, 2), np.uint64), np.zeros((0, 2), np.float32))
    ab, st = t.lookup(np.zeros((0, 2), np.uint64))
    assert ab.shape == (0, 2) and ab.dtype == np.float32 and st.shape == (0,) and st.dtype == np.uint8
    ab, st = t.lookup(np.ones((3, 2), np.uint64))  # empty table: all misses
    assert st.tolist() == [0, 0, 0] and not ab.any()
    e = t.entries()
    assert e["keys"].shape == (0, 2) and e["ab"].shape == (0, 2) and len(t) == 0
    t.shrink_to_fit()
    t.insert(np.ones((1, 2), np.uint64), np.ones((1, 2), np.float32))
    assert len(t) == 1


def test_bad_input():
    t = core.Table(56, 3)
    keys = np.zeros((4, 2), np.uint64)
    ab = np.zeros((4, 2), np.float32)
    for bad in (keys.astype(np.float64), keys.astype(np.int64), [[1, 2]]):
        with pytest.raises(TypeError, match="uint64"):
            t.insert(bad, ab)
        with pytest.raises(TypeError, match="uint64"):
            t.lookup(bad)
    with pytest.raises(TypeError):
        t.insert(keys, np.array([["a", "b"]] * 4))
    for bad_keys in (keys[:, 0], np.zeros((4, 3), np.uint64), np.zeros((4, 1), np.uint64), keys[None]):
        with pytest.raises(ValueError, match="expected"):
            t.insert(bad_keys, ab)
        with pytest.raises(ValueError, match="expected"):
            t.lookup(bad_keys)
    for bad_ab in (ab[:3], np.zeros((4, 3), np.float32), ab[:, 0], np.zeros((4, 2, 1), np.float32)):
        with pytest.raises(ValueError, match="ab"):
            t.insert(keys, bad_ab)
    for v in (np.nan, np.inf, -np.inf):
        bad = ab.copy()
        bad[3, 1] = v
        with pytest.raises(ValueError, match="finite"):
            t.insert(np.array([[0, 0], [1, 0], [2, 0], [4, 0]], np.uint64), bad)
    assert len(t) == 0  # a rejected batch inserts nothing
    # keys that no 56-channel, 3-level packing produces: a level of 3, or bits past the last field
    for bad_key in ([[3, 0]], [[0, 1 << 50]]):
        with pytest.raises(ValueError, match="row 0"):
            t.insert(np.array(bad_key, np.uint64), ab[:1])
        with pytest.raises(ValueError, match="row 0"):
            core.Table.from_entries(56, 3, "mean", 12.0, np.array(bad_key, np.uint64), ab[:1],
                                    np.ones(1, np.uint32), np.zeros(1, bool))
    assert len(t) == 0
    with pytest.raises(ValueError, match="threads"):
        t.lookup(keys, threads=-1)
    with pytest.raises(ValueError, match="'mark', 'mean', 'vote'"):
        core.Table(56, 3, "median")
    with pytest.raises(ValueError, match="tolerance"):
        core.Table(56, 3, "mark", -1.0)
    with pytest.raises(ValueError, match="tolerance"):
        core.Table(56, 3, "mark", float("nan"))
    with pytest.raises(ValueError, match="capacity"):
        core.Table(56, 3, capacity=-1)
    with pytest.raises(ValueError, match="vote_bin"):
        core.Table(56, 3, "vote", vote_bin=0.0)
    with pytest.raises(ValueError, match="channels"):
        core.Table(0, 3)
    with pytest.raises(ValueError, match="levels"):
        core.Table(56, 1)


def test_properties_and_repr():
    t = core.Table(100, 4, "vote", 7.5, 10, vote_bin=4.0)
    assert (t.channels, t.levels, t.words, t.policy, t.tolerance, t.vote_bin) == (100, 4, 4, "vote", 7.5, 4.0)
    assert "policy='vote'" in repr(t) and "entries=0" in repr(t)
    assert core.STATUS_MISS == 0 and core.STATUS_HIT == 1 and core.STATUS_CONFLICT == 2
    assert core.Table.__doc__ and core.Table.insert.__doc__ and core.Table.lookup.__doc__


@pytest.mark.parametrize("policy", POLICIES)
def test_threads_and_concurrency(policy):
    rng = np.random.default_rng(9)
    keys = np.unique(random_keys(rng, 66_000, 56, 3), axis=0)[:60_000]
    rng.shuffle(keys)
    ab = rng.uniform(-100, 100, size=(60_000, 2)).astype(np.float32)
    t = core.Table(56, 3, policy)
    t.insert(keys[:40_000], ab[:40_000])
    t.insert(keys[:10_000], -ab[:10_000])  # updates, conflicts under 'mark'
    probe = np.concatenate([keys[55_000:], keys[:30_000]])[::-1]  # 30k hits (10k updated), 5k misses
    serial = t.lookup(probe)
    for th in (0, 3):  # split over worker threads inside one call
        for a, b in zip(serial, t.lookup(probe, threads=th)):
            np.testing.assert_array_equal(a, b)
    threads, results, errors = start_lookups(lambda i: t.lookup(probe, threads=1 + i % 2))
    # Meanwhile insert keys disjoint from the probe: lookups of the probe must not change.
    for chunk in np.array_split(np.arange(40_000, 50_000), 20):
        t.insert(keys[chunk], ab[chunk])
    for th in threads:
        th.join()
    assert not errors
    for rs in results:
        for r in rs:
            for a, b in zip(serial, r):
                np.testing.assert_array_equal(a, b)
    assert len(t) == 50_000


@pytest.mark.parametrize("channels,levels", [(56, 3), (8, 2), (12, 5), (40, 4)])
def test_lookup_one_step_matches_reference(channels, levels):
    rng = np.random.default_rng(11)
    q = rng.integers(0, levels, size=(3000, channels), dtype=np.uint8)
    # a clustered store: mutate a few channels of a few hundred base keys, so one-step neighbors exist
    base = q[:300]
    stored = base[rng.integers(0, 300, 2000)].copy()
    rows = np.arange(2000)
    for _ in range(2):
        ch = rng.integers(0, channels, 2000)
        stored[rows, ch] = rng.integers(0, levels, 2000)
    stored = np.unique(stored, axis=0)
    ab = rng.uniform(-100, 100, size=(len(stored), 2)).astype(np.float32)
    t = core.Table(channels, levels, "mark", 5.0)
    t.insert(core.pack_keys(stored, levels), ab)
    conflicted = stored[:50]  # make some entries conflicting: they must not count
    t.insert(core.pack_keys(conflicted, levels), ab[:50] + 100)
    usable = {tuple(r): a for r, a, c in zip(stored, ab, t.entries()["conflicting"]) if not c}
    queries = np.concatenate([base, q[300:600]])
    got_ab, got_hits = t.lookup_one_step(core.pack_keys(queries, levels), threads=2)
    for i, k in enumerate(queries):
        found = []
        for c in range(channels):
            for step in (-1, 1):
                to = int(k[c]) + step
                if 0 <= to < levels:
                    n = k.copy()
                    n[c] = to
                    if tuple(n) in usable:
                        found.append(usable[tuple(n)])
        assert got_hits[i] == len(found)
        if found:
            np.testing.assert_allclose(got_ab[i], np.mean(found, axis=0), atol=1e-3)
        else:
            assert np.all(got_ab[i] == 0)
    assert got_hits.max() > 1  # the clustered store gives several neighbors for some queries
    empty_ab, empty_hits = core.Table(channels, levels).lookup_one_step(core.pack_keys(queries[:5], levels))
    assert np.all(empty_hits == 0) and np.all(empty_ab == 0)
    with pytest.raises(ValueError, match="row 0"):
        t.lookup_one_step(np.full((1, t.words), np.iinfo(np.uint64).max, np.uint64))


# ------------------------------------------------------------------------ lookup_one_step, randomized
def one_step_ref(table, queries):
    """Slow reference from the table's own entries: (ab float32 (n, 2), hits uint8 (n,)), bit for bit."""
    e = table.entries()
    levels, channels = table.levels, table.channels
    usable = {}
    for k, a, c in zip(core.unpack_keys(e["keys"], channels, levels), e["ab"], e["conflicting"]):
        if not c:
            usable[k.tobytes()] = (round(float(a[0]) * SCALE), round(float(a[1]) * SCALE))  # exact
    ab = np.zeros((len(queries), 2), np.float32)
    hits = np.zeros(len(queries), np.uint8)
    for i, k in enumerate(core.unpack_keys(queries, channels, levels)):
        sa = sb = found = 0
        for c in range(channels):
            for to in (int(k[c]) - 1, int(k[c]) + 1):
                if 0 <= to < levels:
                    n = k.copy()
                    n[c] = to
                    v = usable.get(n.tobytes())
                    if v is not None:
                        sa, sb, found = sa + v[0], sb + v[1], found + 1
        hits[i] = min(found, 255)
        if found:  # the core's arithmetic: int sums, double division, then float32
            ab[i] = (sa / found / SCALE, sb / found / SCALE)
    return ab, hits


def clustered_keys(rng, n, channels, levels, nbase=40, changes=3):
    """Unpacked keys near a few base keys: a few channels of each moved by +-1 (one-step neighbors abound)."""
    base = rng.integers(0, levels, size=(nbase, channels), dtype=np.uint8)
    k = base[rng.integers(0, nbase, n)].astype(np.int16)
    rows = np.arange(n)
    for _ in range(changes):
        ch = rng.integers(0, channels, n)
        k[rows, ch] = np.clip(k[rows, ch] + rng.choice([-1, 1], n), 0, levels - 1)
    return k.astype(np.uint8)


def check_one_step(t, queries):
    """lookup_one_step == one_step_ref bit for bit, for threads 1, 2 and all, through the neighbour index and
    through the probes; returns the hits."""
    want_ab, want_hits = one_step_ref(t, queries)
    for indexed in (True, False):
        for th in (1, 2, 0):
            got_ab, got_hits = t.lookup_one_step(queries, threads=th, indexed=indexed)
            np.testing.assert_array_equal(got_hits, want_hits)
            np.testing.assert_array_equal(got_ab.view(np.uint32), want_ab.view(np.uint32))
    return want_hits


# levels 2, 3, 4 (and 5: 3-bit fields, a spare bit per word); channel counts at and across word borders
ONE_STEP_LAYOUTS = [(1, 2), (63, 2), (64, 2), (65, 2), (130, 2), (31, 3), (32, 3), (33, 3), (56, 3),
                    (70, 3), (33, 4), (100, 4), (22, 5), (7, 9), (10, 16), (9, 200)]


@pytest.mark.parametrize("channels,levels", ONE_STEP_LAYOUTS)
def test_lookup_one_step_randomized(channels, levels):
    rng = np.random.default_rng(channels * 10 + levels)
    stored = np.unique(clustered_keys(rng, 3000, channels, levels), axis=0)
    rng.shuffle(stored)
    keys = core.pack_keys(stored, levels)
    m = len(keys)
    ab = rng.uniform(-120, 120, size=(m, 2)).astype(np.float32)
    queries = core.pack_keys(np.concatenate([clustered_keys(rng, 150, channels, levels), stored[:20]]), levels)
    # 'mark' with conflicts, grown batch by batch from capacity 0 (rehash growth), checked while growing
    t = core.Table(channels, levels, "mark", 5.0)
    for part in np.array_split(np.arange(m), 4):
        t.insert(keys[part], ab[part])
        re = part[::4]
        t.insert(keys[re], ab[re] + rng.uniform(-30, 30, size=(len(re), 2)).astype(np.float32))
        check_one_step(t, queries)
    assert m < 8 or t.entries()["conflicting"].any()
    assert m < 8 or check_one_step(t, queries).max() > 1
    t.shrink_to_fit()
    check_one_step(t, queries)
    # 'mean' in a table reserved far larger than its content
    big = core.Table(channels, levels, "mean", capacity=20 * m)
    big.insert(keys[: m // 2], ab[: m // 2])
    check_one_step(big, queries)
    # 'vote', finalized, then reseeded by more inserts
    v = core.Table(channels, levels, "vote", vote_bin=4.0)
    v.insert(keys, ab)
    v.insert(keys[::3], -ab[::3])
    v.finalize()
    check_one_step(v, queries)
    v.insert(keys[1::3], -ab[1::3])
    v.shrink_to_fit()
    check_one_step(v, queries)
    # from_entries with random conflicting flags
    e = t.entries()
    flags = rng.random(m) < 0.3
    r = core.Table.from_entries(channels, levels, "mark", 5.0, e["keys"], e["ab"], e["counts"], flags)
    assert (r.entries()["conflicting"] == flags).all()
    check_one_step(r, queries)
    r.shrink_to_fit()
    check_one_step(r, queries)
    r.insert(keys[:5], ab[:5])  # inserts after from_entries
    check_one_step(r, queries)
    # empty tables
    empty = core.Table(channels, levels)
    empty.shrink_to_fit()
    assert not check_one_step(empty, queries).any()
    z = core.Table.from_entries(channels, levels, "mean", 12.0, e["keys"][:0], e["ab"][:0], e["counts"][:0],
                                flags[:0])
    assert not check_one_step(z, queries).any()


def test_lookup_one_step_many_hits_and_edges():
    # every one-step neighbor of a key stored: hits = 2 * channels clipped to 255, the mean over all of them
    channels, levels = 140, 3
    q = np.ones((1, channels), np.uint8)  # level 1 everywhere: both neighbors exist in every channel
    nb = np.repeat(q, 2 * channels, axis=0)
    nb[np.arange(channels), np.arange(channels)] = 0
    nb[channels + np.arange(channels), np.arange(channels)] = 2
    t = core.Table(channels, levels, "mean")
    ab = np.random.default_rng(3).uniform(-127, 127, size=(len(nb), 2)).astype(np.float32)
    t.insert(core.pack_keys(nb, levels), ab)
    hits = check_one_step(t, core.pack_keys(np.concatenate([q, nb[:3]]), levels))
    assert hits.tolist() == [255, 0, 0, 0]  # 280 found, clipped; the mean is over all 280


def test_lookup_one_step_index_follows_the_contents():
    """The neighbour index is built on the first one-step lookup and rebuilt after any change: a neighbour
    inserted, a color changed by a merge, a conflict marked later are all seen by the next lookup."""
    channels, levels = 56, 3
    rng = np.random.default_rng(31)
    stored = np.unique(clustered_keys(rng, 2000, channels, levels), axis=0)
    keys = core.pack_keys(stored, levels)
    ab = rng.uniform(-100, 100, size=(len(keys), 2)).astype(np.float32)
    t = core.Table(channels, levels, "mark", 5.0)
    t.insert(keys, ab)
    q = stored[:50].copy()
    q[:, 7] = (q[:, 7] + 1) % levels  # near stored keys; some stored themselves, most not
    qk = core.pack_keys(np.unique(q, axis=0), levels)
    before = t.memory_bytes()
    check_one_step(t, qk)
    assert t.memory_bytes() > before  # the index now exists
    # a neighbour of every query inserted: the index is stale, the answer must include it
    nb = core.unpack_keys(qk, channels, levels).copy()
    nb[:, 30] = np.where(nb[:, 30] > 0, nb[:, 30] - 1, 1)
    t.insert(core.pack_keys(nb, levels), np.full((len(nb), 2), 60, np.float32))
    assert check_one_step(t, qk).min() >= 1
    # the same keys again with far colors: conflicts for 'mark', so they stop counting
    t.insert(core.pack_keys(nb, levels), np.full((len(nb), 2), -60, np.float32))
    check_one_step(t, qk)
    other = core.Table(channels, levels, "mark", 5.0)
    other.insert(keys[::2], -ab[::2])
    t.merge(other)
    check_one_step(t, qk)
    t.finalize()
    check_one_step(t, qk)


def test_lookup_one_step_concurrent_with_inserts():
    channels, levels = 56, 3
    rng = np.random.default_rng(21)
    pool = clustered_keys(rng, 72_000, channels, levels, nbase=300)
    stored = pool[:30_000].copy()
    stored[:, 0] = rng.integers(0, 2, len(stored))  # channel 0 in {0, 1}
    stored = np.unique(stored, axis=0)
    queries = pool[30_000:32_000].copy()
    queries[:, 0] = 0  # its neighbors have channel 0 in {0, 1}: never one of the keys inserted meanwhile
    later = pool[32_000:].copy()
    later[:, 0] = 2
    t = core.Table(channels, levels, "mark", 5.0)
    t.insert(core.pack_keys(stored, levels), rng.uniform(-100, 100, size=(len(stored), 2)).astype(np.float32))
    qk = core.pack_keys(queries, levels)
    serial = t.lookup_one_step(qk)
    assert serial[1].max() > 1
    threads, results, errors = start_lookups(lambda i: t.lookup_one_step(qk, threads=1 + i % 2))
    lk = core.pack_keys(later, levels)  # these inserts grow the table (rehash) while the lookups run
    for chunk in np.array_split(np.arange(len(lk)), 40):
        t.insert(lk[chunk], rng.uniform(-100, 100, size=(len(chunk), 2)).astype(np.float32))
    for th in threads:
        th.join()
    assert not errors
    for rs in results:
        for r in rs:
            for a, b in zip(serial, r):
                np.testing.assert_array_equal(a, b)
    check_one_step(t, qk)
    for a, b in zip(serial, t.lookup_one_step(qk)):
        np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------------------------------------- merging
def entries_as_dict(e):
    return {tuple(k): (tuple(a), int(c), bool(f))
            for k, a, c, f in zip(e["keys"].tolist(), e["ab"].tolist(), e["counts"].tolist(),
                                  e["conflicting"].tolist())}


def split_fill(policy, channels, levels, seed, parts, n=5000):
    """A clustered stream cut at random places into ``parts`` pieces: (tables, refs, whole table, whole ref)."""
    rng = np.random.default_rng(seed)
    pool = np.unique(random_keys(rng, 400, channels, levels), axis=0)
    keys, ab = clustered_stream(rng, pool, n)
    cuts = np.sort(rng.choice(np.arange(1, n), parts - 1, replace=False))
    tables, refs = [], []
    for chunk in np.split(np.arange(n), cuts):
        t, r = core.Table(channels, levels, policy), RefTable(policy)
        t.insert(keys[chunk], ab[chunk])
        r.insert(keys[chunk], ab[chunk])
        tables.append(t)
        refs.append(r)
    whole, ref = core.Table(channels, levels, policy), RefTable(policy)
    whole.insert(keys, ab)
    ref.insert(keys, ab)
    return tables, refs, whole, ref, np.concatenate([pool, random_keys(rng, 100, channels, levels)])


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("channels,levels", LAYOUTS)
def test_merge_matches_reference_and_union(policy, channels, levels):
    tables, refs, whole, ref, probe = split_fill(policy, channels, levels, seed=channels + levels, parts=4)
    merged, mref = tables[0], refs[0]
    for t, r in zip(tables[1:], refs[1:]):
        merged.merge(t)
        mref.merge(r)
    assert merged.exact
    # the dict model of merge, the union fitted in one table and its dict model: all equal, order included
    assert_matches(merged, mref, probe)
    assert_matches(merged, ref, probe)
    assert_entries_equal(merged.entries(), whole.entries())
    merged.finalize()
    whole.finalize()
    assert not merged.exact
    assert_entries_equal(merged.entries(), whole.entries())


@pytest.mark.parametrize("policy", POLICIES)
def test_merge_is_associative_and_commutative(policy):
    tables, _, whole, _, probe = split_fill(policy, 56, 3, seed=7, parts=3)
    a, b, c = (pickle.loads(pickle.dumps(t)) for t in tables)

    def copy(t):
        return pickle.loads(pickle.dumps(t))

    left = copy(a)  # (a + b) + c
    left.merge(b)
    left.merge(c)
    bc = copy(b)  # a + (b + c)
    bc.merge(c)
    right = copy(a)
    right.merge(bc)
    assert_entries_equal(left.entries(), right.entries())
    assert_entries_equal(left.entries(), whole.entries())
    swapped = copy(c)  # c + b + a: the same entries, in another order
    swapped.merge(b)
    swapped.merge(a)
    assert entries_as_dict(swapped.entries()) == entries_as_dict(whole.entries())
    for x, y in zip(swapped.lookup(probe), whole.lookup(probe)):
        np.testing.assert_array_equal(x, y)
    assert [len(t) for t in (a, b, c)] == [len(t) for t in tables]  # merge leaves its argument alone


@pytest.mark.parametrize("policy", POLICIES)
def test_merge_randomized_against_dict(policy):
    rng = np.random.default_rng(42)
    for trial in range(6):
        channels, levels = LAYOUTS[trial % len(LAYOUTS)]
        pool = np.unique(random_keys(rng, int(rng.integers(1, 300)), channels, levels), axis=0)
        tables, refs = [], []
        for _ in range(int(rng.integers(2, 6))):
            m = int(rng.integers(0, 800))
            keys, ab = clustered_stream(rng, pool, m)
            t, r = core.Table(channels, levels, policy), RefTable(policy)
            t.insert(keys, ab)
            r.insert(keys, ab)
            if rng.random() < 0.3:  # a finalized part: reseeded from its stored colors
                t.finalize()
                r.drop_bins()
            tables.append(t)
            refs.append(r)
        order = rng.permutation(len(tables))
        acc, racc = tables[order[0]], refs[order[0]]
        for i in order[1:]:
            acc.merge(tables[i])
            racc.merge(refs[i])
        assert_matches(acc, racc, np.concatenate([pool, random_keys(rng, 50, channels, levels)]))


@pytest.mark.parametrize("policy", POLICIES)
def test_pickle_keeps_fitting_data(policy):
    tables, _, whole, _, probe = split_fill(policy, 70, 3, seed=3, parts=2)
    a = pickle.loads(pickle.dumps(tables[0]))
    assert a.exact and a.policy == policy and (a.channels, a.levels) == (70, 3)
    assert_entries_equal(a.entries(), tables[0].entries())
    a.merge(pickle.loads(pickle.dumps(tables[1])))
    assert_entries_equal(a.entries(), whole.entries())
    whole.finalize()
    f = pickle.loads(pickle.dumps(whole))
    assert not f.exact
    assert_entries_equal(f.entries(), whole.entries())
    for x, y in zip(f.lookup(probe), whole.lookup(probe)):
        np.testing.assert_array_equal(x, y)


def test_merge_rejects_bad_input():
    t = core.Table(56, 3, "mean")
    t.insert(random_keys(np.random.default_rng(0), 10, 56, 3), np.zeros((10, 2), np.float32))
    with pytest.raises(ValueError, match="itself"):
        t.merge(t)
    with pytest.raises(ValueError, match="policy"):
        t.merge(core.Table(56, 3, "vote"))
    with pytest.raises(ValueError, match="channels or levels"):
        t.merge(core.Table(57, 3, "mean"))
    with pytest.raises(ValueError, match="tolerance"):
        core.Table(56, 3, "mark", 12.0).merge(core.Table(56, 3, "mark", 5.0))
    with pytest.raises(ValueError, match="vote_bin"):
        core.Table(56, 3, "vote", vote_bin=10.0).merge(core.Table(56, 3, "vote", vote_bin=5.0))
    with pytest.raises(TypeError):
        t.merge("table")  # type: ignore[arg-type]
    state = t.state()
    state["meta"] = state["meta"][:5]
    with pytest.raises(ValueError, match="state"):
        core.Table.from_state(56, 3, "mean", 12.0, 10.0, state)
    assert len(t) == 10


def test_lookup_one_step_large_table():
    """A table whose presence filter is larger than a core's cache (the kernel then prefetches filter words):
    queries one step from stored keys, and random ones, against the reference."""
    rng = np.random.default_rng(77)
    channels, levels, n = 56, 3, 300_000
    stored = np.unique(rng.integers(0, levels, size=(n, channels), dtype=np.uint8), axis=0)
    keys = core.pack_keys(stored, levels)
    t = core.Table(channels, levels, "mean")
    t.insert(keys, rng.uniform(-100, 100, size=(len(keys), 2)).astype(np.float32))
    near = stored[:60].copy()
    near[np.arange(60), rng.integers(0, channels, 60)] ^= 1  # a level 0 <-> 1 or 2 <-> 3 (then invalid: fixed)
    near[near >= levels] = levels - 1
    queries = core.pack_keys(np.concatenate([near, rng.integers(0, levels, size=(40, channels), dtype=np.uint8)]),
                             levels)
    assert check_one_step(t, queries)[:60].max() >= 1

