"""The lookup chain (exact -> one step -> seeds + sorted index -> gray) against brute force over the table."""

import numpy as np
import pytest

from hyperchroma import ColorizeSettings, FitSettings, Status, core
from hyperchroma.lookup import lookup
from hyperchroma.table import ColorTable


def make_table(rng, channels, levels, n, policy="mean"):
    stored = rng.integers(0, levels, (n, channels), dtype=np.uint8)
    stored = np.unique(stored, axis=0)
    ab = rng.uniform(-60, 60, (len(stored), 2)).astype(np.float32)
    weights = rng.normal(size=channels).astype(np.float32)
    t = ColorTable.empty(channels, levels, weights, FitSettings(levels=levels, policy=policy))
    t.insert(core.pack_keys(stored, levels), ab)
    conflicting = np.zeros(len(stored), bool)
    if policy == "mark":  # the first few keys are seen again with a far color
        conflicting[:5] = True
        t.insert(core.pack_keys(stored[:5], levels), ab[:5] + 100)
    t.finalize()
    return t, stored, ab, conflicting


def reference(stored, ab, conflicting, queries, s):
    """Slow, obvious: the chain written as a loop over every query and every stored key."""
    usable = ~conflicting
    keys, colors = stored[usable].astype(np.int64), ab[usable]
    out_ab, out_status, out_dist, unique = [], [], [], []
    for q in queries.astype(np.int64):
        d = np.sqrt(((keys - q) ** 2).sum(1))
        best = d.min() if len(d) else np.inf
        if best == 0:
            out_ab.append(colors[d == 0][0]); out_status.append(Status.EXACT); out_dist.append(0.0); unique.append(True)
        elif s.one_step and best == 1 and s.max_distance >= 1:
            out_ab.append(colors[d == 1].mean(0)); out_status.append(Status.NEAREST); out_dist.append(1.0)
            unique.append(True)
        elif best <= s.max_distance:
            out_ab.append(colors[np.argmin(d)]); out_status.append(Status.NEAREST); out_dist.append(best)
            unique.append(int((d == best).sum()) == 1)
        else:
            out_ab.append(np.zeros(2)); out_status.append(Status.GRAY); out_dist.append(np.inf); unique.append(True)
    return np.array(out_ab), np.array(out_status), np.array(out_dist), np.array(unique)


@pytest.mark.parametrize("policy", ["mean", "mark"])
@pytest.mark.parametrize("one_step", [True, False])
@pytest.mark.parametrize("seed_radius", [0, 1, 2])
def test_chain_equals_brute_force(rng, policy, one_step, seed_radius):
    channels, levels, h, w = 7, 3, 6, 9
    table, stored, ab, conflicting = make_table(rng, channels, levels, 300, policy)
    # queries: stored keys, one-step neighbours of stored keys, and random keys
    q = rng.integers(0, levels, (h * w, channels), dtype=np.uint8)
    pick = rng.integers(0, len(stored), h * w)
    kind = rng.integers(0, 3, h * w)
    q[kind == 0] = stored[pick[kind == 0]]
    near = stored[pick[kind == 1]].astype(int)
    ch = rng.integers(0, channels, len(near))
    near[np.arange(len(near)), ch] = np.where(near[np.arange(len(near)), ch] > 0,
                                              near[np.arange(len(near)), ch] - 1, 1)
    q[kind == 1] = near
    for max_distance in (1.5, 2.5, 1000.0):
        s = ColorizeSettings(one_step=one_step, seed_radius=seed_radius, exact=True, max_distance=max_distance)
        got = lookup(table, core.pack_keys(q, levels), (h, w), s)
        ref_ab, ref_status, ref_dist, unique = reference(stored, ab, conflicting, q, s)
        np.testing.assert_array_equal(got.status, ref_status)
        np.testing.assert_allclose(got.distance, ref_dist, atol=1e-5)
        np.testing.assert_allclose(got.ab[unique], ref_ab[unique], atol=0.02)  # the table stores ab in fixed point


def test_bounded_scan_never_beats_exact(rng):
    table, stored, ab, conflicting = make_table(rng, 12, 3, 2000)
    q = rng.integers(0, 3, (10 * 12, 12), dtype=np.uint8)
    keys = core.pack_keys(q, 3)
    exact = lookup(table, keys, (10, 12), ColorizeSettings(exact=True, max_distance=1000.0))
    fast = lookup(table, keys, (10, 12), ColorizeSettings(max_scan=8, max_distance=1000.0))
    assert np.all(fast.distance >= exact.distance - 1e-6)
    assert set(np.unique(fast.status)) <= {Status.EXACT, Status.NEAREST, Status.GRAY}


def test_status_values_cannot_clash_with_core_codes():
    core_codes = {core.STATUS_MISS, core.STATUS_HIT, core.STATUS_CONFLICT}
    assert not core_codes & {int(s) for s in Status}


def test_empty_table_leaves_everything_gray(rng):
    t = ColorTable.empty(4, 3, np.ones(4, np.float32), FitSettings())
    t.finalize()
    keys = core.pack_keys(rng.integers(0, 3, (6, 4), dtype=np.uint8), 3)
    got = lookup(t, keys, (2, 3), ColorizeSettings())
    assert np.all(got.status == Status.GRAY) and np.all(got.ab == 0)
    with pytest.raises(ValueError, match="keys"):
        lookup(t, keys, (2, 2), ColorizeSettings())
