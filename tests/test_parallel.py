"""The core's thread pool (cpp/parallel.hpp): the same results with any thread count, from many calling threads
at once, after fork(), and errors raised in a helper's chunk reach the caller."""

import multiprocessing as mp
import sys
import threading

import numpy as np
import pytest

from hyperchroma import core


def work(seed):
    rng = np.random.default_rng(seed)
    ab = rng.normal(0, 20, (97, 61, 2)).astype(np.float32)
    gray = rng.integers(0, 256, (300, 200), dtype=np.uint8)
    return [core.median_filter(ab, 5, threads=t) for t in (1, 2, 3, 8)] + \
           [core.upsample_compose(gray, np.ascontiguousarray(np.moveaxis(ab, -1, 0)), threads=t) for t in (1, 2, 5)]


def test_results_do_not_depend_on_threads_or_concurrent_callers():
    want = work(1)
    for a in want[1:4]:
        np.testing.assert_array_equal(a, want[0])
    for a in want[5:]:
        np.testing.assert_array_equal(a, want[4])
    results, errors = [None] * 6, []

    def run(i):
        try:
            results[i] = work(1)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    ts = [threading.Thread(target=run, args=(i,)) for i in range(6)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors
    for r in results:
        for a, b in zip(r, want):
            np.testing.assert_array_equal(a, b)


def _child(q):
    q.put([a.tobytes() for a in work(2)])


@pytest.mark.skipif(sys.platform != "linux", reason="fork start method")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded")
def test_after_fork():
    work(2)  # the parent's pool has helpers now
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(q,))
    p.start()
    got = q.get(timeout=120)
    p.join(timeout=120)
    assert p.exitcode == 0
    assert got == [a.tobytes() for a in work(2)]


def test_error_in_a_helper_chunk_reaches_the_caller():
    rng = np.random.default_rng(3)
    lv = rng.integers(0, 3, (5000, 8), dtype=np.uint8)
    index = core.SortedIndex(core.pack_keys(lv, 3), np.zeros((5000, 2), np.float32), np.ones(8, np.float32), 8, 3)
    q = core.pack_keys(lv[:4000], 3)
    q[-1] |= np.uint64(3)  # level 3 in the last query: in the last chunk
    for t in (2, 4):
        with pytest.raises(ValueError, match="out of range"):
            index.search(q, threads=t)
    index.search(q[:-1], threads=4)  # the pool still works
