"""Nearest-key search: core.SortedIndex (exact and bounded scan) vs faiss IndexFlatL2 (exact brute force).

    PYTHONPATH=python python benchmarks/bench_index.py [--n 1000000] [--queries 50000] [--faiss-queries 2000]

Data imitates quantized hypercolumns: 56 channels from a low-rank mixture (correlated channels, clustered
points), each channel quantized at its own tertiles (3 levels, as the pipeline does). Queries: 70% stored keys
with a few channels moved by one level, 20% fresh draws from the same distribution, 10% uniform random keys.
Projection weights = first principal component of the stored levels. One thread everywhere (faiss too), same
process; times are medians of --repeats runs. faiss brute force over all keys is slow, so it runs on a
subset of the queries and is reported as per-query throughput (the subset is the first --faiss-queries
queries, a random mix of the three kinds). Recall = share of queries whose returned distance equals the
true nearest distance (from the exact variant, itself checked against faiss on the subset).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from hyperchroma import core

try:
    import faiss
except ImportError:  # pragma: no cover
    faiss = None

CHANNELS, LEVELS = 56, 3


def draw(rng, n, centers, mix, chunk=200_000):
    """Float hypercolumn-like vectors: a mixture of Gaussians in a low-rank latent space plus channel noise."""
    out = np.empty((n, CHANNELS), np.float32)
    for b in range(0, n, chunk):
        m = min(chunk, n - b)
        z = centers[rng.integers(0, len(centers), m)] + rng.normal(scale=0.6, size=(m, centers.shape[1]))
        out[b:b + m] = z @ mix + rng.normal(scale=0.5, size=(m, CHANNELS))
    return out


def quantize(x, thresholds):
    lv = np.zeros(x.shape, np.uint8)
    for t in thresholds:
        lv += (x >= t).astype(np.uint8)
    return lv


def make_data(n, m, seed):
    rng = np.random.default_rng(seed)
    latent = 8
    centers = rng.normal(scale=2.0, size=(64, latent))
    mix = rng.normal(size=(latent, CHANNELS)) / np.sqrt(latent)
    x = draw(rng, n, centers, mix)
    thresholds = np.quantile(x[:200_000], [1 / 3, 2 / 3], axis=0).astype(np.float32)  # per channel tertiles
    lv = quantize(x, thresholds)
    del x
    n_pert, n_fresh = int(0.7 * m), int(0.2 * m)
    n_rand = m - n_pert - n_fresh
    pert = lv[rng.integers(0, n, n_pert)].astype(np.int16)
    moved = rng.random(pert.shape) < 3 / CHANNELS  # about 3 channels move by one level
    pert = np.clip(pert + moved * rng.choice([-1, 1], size=pert.shape), 0, LEVELS - 1).astype(np.uint8)
    fresh = quantize(draw(rng, n_fresh, centers, mix), thresholds)
    rand = rng.integers(0, LEVELS, size=(n_rand, CHANNELS)).astype(np.uint8)
    qlv = np.concatenate([pert, fresh, rand])[rng.permutation(m)]
    return lv, qlv


def first_pc(lv, sample=200_000, seed=0):
    rng = np.random.default_rng(seed)
    x = lv[rng.choice(len(lv), min(sample, len(lv)), replace=False)].astype(np.float64)
    x -= x.mean(axis=0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    return vt[0].astype(np.float32)


def median_time(fn, repeats):
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), result


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000, help="stored keys")
    ap.add_argument("--queries", type=int, default=50_000)
    ap.add_argument("--faiss-queries", type=int, default=2_000)
    ap.add_argument("--exact-queries", type=int, default=10_000,
                    help="run the exact variant on the first this many queries only (0 = all); recall is "
                         "measured on them")
    ap.add_argument("--max-distance", type=float, default=2.0,
                    help="distance limit for the extra exact run with a limit (pixels beyond it stay gray)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    t0 = time.perf_counter()
    lv, qlv = make_data(args.n, args.queries, args.seed)
    keys = core.pack_keys(lv, LEVELS)
    queries = core.pack_keys(qlv, LEVELS)
    ab = np.random.default_rng(1).uniform(-100, 100, size=(args.n, 2)).astype(np.float32)
    weights = first_pc(lv)
    print(f"data: {args.n} keys x {CHANNELS} ch at {LEVELS} levels ({keys.shape[1]} words), "
          f"{args.queries} queries, generated in {time.perf_counter() - t0:.1f} s")

    build_s, index = median_time(lambda: core.SortedIndex(keys, ab, weights, CHANNELS, LEVELS), 1)
    print(f"{index!r}: built in {build_s:.2f} s; distinct keys: "
          f"{len(np.unique(keys.view(np.dtype((np.void, 8 * keys.shape[1])))))}")

    rows = []  # (method, queries timed, seconds, recall or None, note)
    mq = args.exact_queries or args.queries
    ex_s, (ex_idx, ex_dist) = median_time(lambda: index.search(queries[:mq], exact=True), args.repeats)
    true_dist = ex_dist
    rows.append(("SortedIndex exact", mq, ex_s, 1.0,
                 f"nearest distance median {np.median(true_dist):.2f}, mean {np.mean(true_dist):.2f}"))
    lim = args.max_distance
    lim_s, (lim_idx, _) = median_time(lambda: index.search(queries[:mq], exact=True, max_distance=lim),
                                      args.repeats)
    ok = np.array_equal(lim_idx == -1, true_dist > lim)
    rows.append((f"SortedIndex exact max_distance={lim:g}", mq, lim_s, 1.0,
                 f"{np.mean(lim_idx == -1):.1%} left gray (-1); same accept set as exact: {ok}"))
    for scan in (16, 64, 256):
        s, (_, d) = median_time(lambda: index.search(queries, max_scan=scan), args.repeats)
        recall = float(np.mean(d[:mq] == true_dist))
        rows.append((f"SortedIndex bounded max_scan={scan}", args.queries, s, recall,
                     f"mean dist excess {float(np.mean(d[:mq] - true_dist)):.3f}"))

    faiss_qps = None
    if faiss is not None:
        faiss.omp_set_num_threads(1)
        xb = lv.astype(np.float32)
        flat = faiss.IndexFlatL2(CHANNELS)
        t_add = time.perf_counter()
        flat.add(xb)
        t_add = time.perf_counter() - t_add
        fq = min(args.faiss_queries, args.queries)
        xq = qlv[:fq].astype(np.float32)
        fs, (fd2, _) = median_time(lambda: flat.search(xq, 1), args.repeats)
        fdist = np.sqrt(np.maximum(fd2[:, 0], 0)).astype(np.float32)
        k = min(fq, mq)
        agree = float(np.mean(np.abs(fdist[:k] - true_dist[:k]) < 1e-3))
        rows.append(("faiss IndexFlatL2 (exact)", fq, fs, 1.0,
                     f"add {t_add:.2f} s; agrees with exact variant on {agree:.1%} of {k}"))
        faiss_qps = fq / fs
        del xb, flat

    print()
    print(f"{'method':40s} {'queries':>8s} {'time s':>8s} {'queries/s':>11s} {'vs faiss':>9s} {'recall':>7s}  note")
    for name, q, s, recall, note in rows:
        qps = q / s
        ratio = f"{qps / faiss_qps:8.1f}x" if faiss_qps else "      n/a"
        print(f"{name:40s} {q:8d} {s:8.3f} {qps:11.0f} {ratio:>9s} {recall:7.3f}  {note}")
    print(f"\nsingle thread for every method; time = median of {args.repeats} repeats; exact variant timed on the "
          f"first {mq} queries, faiss on the first {min(args.faiss_queries, args.queries)} (per-query throughput); "
          f"recall measured on the first {mq}")


if __name__ == "__main__":
    main()
