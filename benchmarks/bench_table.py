"""core.Table vs a Python dict on the same data, same process.

Run: PYTHONPATH=python python benchmarks/bench_table.py [--n 1000000] [--repeats 5]

A 1M-entry table of random 56-channel / 3-level keys (2 uint64 words), policy "mean". Reports the
median over repeats of: inserting N new keys into an empty table (capacity 0, so growth is included),
re-inserting the same N keys (updates), looking up N present and N absent keys (threads=1 and 2), and
bytes per entry; plus Table-only insert rates for the "mark" and "vote" policies (vote's bytes/entry
include its per-bin data, which finalize() drops).

The dict peer gets its keys as prebuilt `bytes` objects (its best case; converting the numpy rows is
timed separately) and does the same running-mean update in a Python loop.

Rates are wall-clock. Single-threaded calls run on the calling thread, so the "CPU" column also gives the
rate from that thread's CPU time, which is steadier on a shared, busy machine.

Section "lookup_one_step" (only this section runs with --one-step):

  PYTHONPATH=python python benchmarks/bench_table.py --one-step [--baseline DIR] [--entries 100000]

A table of ~--entries clustered 56-channel / 3-level keys (base keys with a few channels mutated, like a
film's hypercolumns) and 10k missing queries near them. Reports ns per query of Table.lookup_one_step as the
minimum over repeats of process CPU time (all threads' work; threads=1 and 2) and of wall time
(threads=2: noisy on a shared machine), and the mean hits.
With --baseline DIR (a folder holding another build's `hyperchroma` package, e.g. a copy of python/ from an
older commit) the same measurement runs on identical inputs in a subprocess importing that build, its
output is checked to be bit-for-bit equal, and the old/new ratio is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

from hyperchroma import core


def timed(fn, repeats, setup=None):
    """Median wall-clock and calling-thread CPU seconds of fn(setup())."""
    wall, cpu = [], []
    for _ in range(repeats):
        arg = setup() if setup else None
        w0, c0 = time.perf_counter(), time.thread_time()
        fn(arg)
        cpu.append(time.thread_time() - c0)
        wall.append(time.perf_counter() - w0)
    return statistics.median(wall), statistics.median(cpu)


def dict_insert(d, kb, abl):
    for k, (a, b) in zip(kb, abl):
        e = d.get(k)
        if e is None:
            d[k] = [a, b, 1]
        else:
            c = e[2] + 1
            e[0] += (a - e[0]) / c
            e[1] += (b - e[1]) / c
            e[2] = c


def dict_lookup(d, kb):
    get = d.get
    return [get(k) for k in kb]


def one_step_inputs(entries, queries=10_000, channels=56, levels=3, seed=5):
    """Clustered stored keys and missing queries one or two steps from them (packed), plus ab."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, levels, size=(max(entries // 20, 1), channels), dtype=np.uint8)

    def near(n, changes):
        k = base[rng.integers(0, len(base), n)].copy()
        rows = np.arange(n)
        for _ in range(changes):
            ch = rng.integers(0, channels, n)
            k[rows, ch] = np.clip(k[rows, ch].astype(np.int16) + rng.choice([-1, 1], n), 0, levels - 1)
        return k

    stored = np.unique(near(entries + entries // 4, 3), axis=0)
    rng.shuffle(stored)
    stored = stored[:entries]
    keys = core.pack_keys(stored, levels)
    ab = rng.uniform(-100, 100, size=(len(keys), 2)).astype(np.float32)
    q = core.pack_keys(near(3 * queries, 2), levels)
    return keys, ab, q


def one_step_measure(entries, repeats):
    """{'ns1', 'ns2', 'hits', 'ab' (hex of the bytes), ...} for this process's `core`."""
    keys, ab, q = one_step_inputs(entries)
    t = core.Table(56, 3, "mean")
    t.insert(keys, ab)
    t.shrink_to_fit()
    q = q[t.lookup(q)[1] == core.STATUS_MISS][:10_000]
    res = {"entries": len(t), "queries": len(q), "module": core.__file__}
    try:  # builds with the neighbour index take indexed=; the probes (indexed=False) are timed beside it
        t.lookup_one_step(q[:1], indexed=False)
        methods = [("", {}), ("probes_", {"indexed": False})]
    except TypeError:
        methods = [("", {})]
    digests = []
    for prefix, kw in methods:
        for th in (1, 2):
            cpu = wall = float("inf")
            t.lookup_one_step(q, threads=th, **kw)  # builds the index once (not timed)
            for _ in range(repeats):
                c0, w0 = time.process_time(), time.perf_counter()
                out_ab, hits = t.lookup_one_step(q, threads=th, **kw)
                cpu, wall = min(cpu, time.process_time() - c0), min(wall, time.perf_counter() - w0)
            res[f"{prefix}ns{th}"] = cpu / len(q) * 1e9  # process CPU time: all threads' work
            res[f"{prefix}wall{th}"] = wall / len(q) * 1e9
        digests.append(__import__("hashlib").sha256(out_ab.tobytes() + hits.tobytes()).hexdigest())
    res["hits"] = float(hits.mean())
    res["digest"] = digests[0]
    res["same_as_probes"] = len(set(digests)) == 1
    res["memory_bytes"] = t.memory_bytes()
    return res


def one_step_main(args):
    new = one_step_measure(args.entries, args.repeats)
    print(f"lookup_one_step: {new['entries']:,} clustered entries (56 ch x 3 levels, 'mean'), "
          f"{new['queries']:,} missing queries, mean {new['hits']:.2f} hits; min of {args.repeats} runs")
    print(f"{'build':10s} {'thr=1 CPU':>10s} {'thr=2 CPU':>10s} {'thr=2 wall':>11s}   (ns per query)")
    rows = [("this", new)]
    if args.baseline:
        env = dict(os.environ, PYTHONPATH=os.path.abspath(args.baseline))
        out = subprocess.run([sys.executable, os.path.abspath(__file__), "--one-step-json",
                              "--entries", str(args.entries), "--repeats", str(args.repeats)],
                             env=env, capture_output=True, text=True, check=True, cwd="/")
        old = json.loads(out.stdout.strip().splitlines()[-1])
        rows.insert(0, ("baseline", old))
    for name, r in rows:
        print(f"{name:10s} {r['ns1']:10.0f} {r['ns2']:10.0f} {r['wall2']:11.0f}   {r['module']}")
    if "probes_ns1" in new:
        print(f"{'probes':10s} {new['probes_ns1']:10.0f} {new['probes_ns2']:10.0f} {new['probes_wall2']:11.0f}   "
              f"the same build, indexed=False; output {'equal' if new['same_as_probes'] else 'DIFFERENT'}; "
              f"table with its index {new['memory_bytes'] / new['entries']:.0f} bytes/entry")
    if args.baseline:
        same = old["digest"] == new["digest"]
        print(f"speedup (CPU): {old['ns1'] / new['ns1']:.2f}x threads=1, {old['ns2'] / new['ns2']:.2f}x threads=2; "
              f"output {'bit-for-bit equal' if same else 'DIFFERENT'}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--dict-repeats", type=int, default=3)
    ap.add_argument("--one-step", action="store_true", help="run only the lookup_one_step section")
    ap.add_argument("--one-step-json", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--entries", type=int, default=100_000, help="table size for --one-step")
    ap.add_argument("--baseline", help="folder with another build's hyperchroma package (--one-step)")
    args = ap.parse_args()
    if args.one_step_json:
        print(json.dumps(one_step_measure(args.entries, args.repeats)))
        return
    if args.one_step:
        one_step_main(args)
        return
    n, rep, drep = args.n, args.repeats, args.dict_repeats

    rng = np.random.default_rng(0)
    words = core.key_words(56, 3)
    # valid packed keys: random levels 0..2 for each of the 56 channels (3^56 values: no collisions to speak of)
    keys = core.pack_keys(rng.integers(0, 3, size=(n, 56), dtype=np.uint8), 3)
    absent = core.pack_keys(rng.integers(0, 3, size=(n, 56), dtype=np.uint8), 3)
    ab = rng.uniform(-100, 100, size=(n, 2)).astype(np.float32)

    # ---- core.Table, policy "mean"
    rows = []  # (name, (wall, cpu) or None for a multi-threaded row's cpu, dict seconds or None)
    rows.append(["insert new keys (from empty)", timed(lambda t: t.insert(keys, ab), rep,
                                                        setup=lambda: core.Table(56, 3, "mean"))])
    table = core.Table(56, 3, "mean")
    table.insert(keys, ab)
    assert len(table) == n
    mem_grown = table.memory_bytes() / n
    rows.append(["insert existing keys (update)", timed(lambda _: table.insert(keys, ab), rep)])
    table.shrink_to_fit()
    mem_shrunk = table.memory_bytes() / n
    assert (table.lookup(keys)[1] == core.STATUS_HIT).all()
    assert (table.lookup(absent)[1] == core.STATUS_MISS).all()
    for name, probe in (("all-hit", keys), ("all-miss", absent)):
        for th in (1, 2):
            w, c = timed(lambda _: table.lookup(probe, threads=th), rep)
            rows.append([f"lookup {name}, threads={th}", (w, c if th == 1 else None)])
    other = []
    for policy in ("mark", "vote"):
        other.append([f"insert new keys, {policy}", timed(lambda t: t.insert(keys, ab), rep,
                                                          setup=lambda: core.Table(56, 3, policy))])
        tp = core.Table(56, 3, policy)
        tp.insert(keys, ab)
        other.append([f"insert existing keys, {policy}", timed(lambda _: tp.insert(keys, -ab), rep),
                      tp.memory_bytes() / n])
        del tp

    # ---- dict peer
    t0 = time.perf_counter()
    kb = [r.tobytes() for r in keys]
    t_conv = time.perf_counter() - t0
    kb_absent = [r.tobytes() for r in absent]
    abl = ab.tolist()
    d_new = timed(lambda d: dict_insert(d, kb, abl), drep, setup=dict)[0]
    d = {}
    dict_insert(d, kb, abl)
    d_upd = timed(lambda _: dict_insert(d, kb, abl), drep)[0]
    d_hit = timed(lambda _: dict_lookup(d, kb), drep)[0]
    d_miss = timed(lambda _: dict_lookup(d, kb_absent), drep)[0]
    peer = {0: d_new, 1: d_upd, 2: d_hit, 4: d_miss}
    # The loop a user writes over the same numpy keys: convert each row, then look it up.
    d_hit_rows = timed(lambda _: [d.get(r.tobytes()) for r in keys], drep)[0]

    mps = lambda s: n / s / 1e6  # noqa: E731
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"core.Table vs dict: {n:,} random keys, 56 ch x 3 levels ({words} words), policy 'mean'; "
          f"median of {rep} (Table) / {drep} (dict) runs")
    print(f"{os.cpu_count()} CPUs visible, 1-min load average {load:.2f} at the end")
    print(f"{'operation':32s} {'Table M/s':>10s} {'(CPU)':>7s} {'dict M/s':>9s} {'ratio':>6s}")
    for i, (name, (w, c)) in enumerate(rows):
        cpu = f"{mps(c):7.1f}" if c else f"{'':7s}"
        if i in peer:
            print(f"{name:32s} {mps(w):10.1f} {cpu} {mps(peer[i]):9.2f} {peer[i] / w:5.0f}x")
        else:
            print(f"{name:32s} {mps(w):10.1f} {cpu}")
    for row in other:
        name, (w, c) = row[0], row[1]
        extra = f"  {row[2]:.1f} bytes/entry while fitting" if len(row) > 2 else ""
        print(f"{name:32s} {mps(w):10.1f} {mps(c):7.1f}{extra}")
    print(f"{'dict: numpy rows -> bytes keys':32s} {'':10s} {'':7s} {mps(t_conv):9.2f}  (not included above)")
    w_hit = rows[2][1][0]
    print(f"{'lookup all-hit, dict loop over':32s} {mps(w_hit):10.1f} {'':7s} {mps(d_hit_rows):9.2f} "
          f"{d_hit_rows / w_hit:5.0f}x  (d.get(row.tobytes()) for each numpy row)")
    print(f"Table ('mean') bytes/entry: {mem_grown:.1f} after growth, {mem_shrunk:.1f} after shrink_to_fit()")


if __name__ == "__main__":
    main()
