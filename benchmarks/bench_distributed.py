"""Fit and colorize throughput on a local Dask cluster (1 and 2 worker processes) against one process.

Command (from the repository root, extension built with ./dev-build.sh; needs the [dask] extra):

    PYTHONPATH=python python benchmarks/bench_distributed.py [--copies 3] [--workers 1 2]

Data: the package's shipped frames (8 train + 4 test, 384x288), copied ``--copies`` times under other
names, so nothing outside the package is needed. Fit: ``hc.fit`` with the whole machine (``threads`` =
cores) against ``hyperchroma.distributed.fit`` on N workers (1 thread each, each task with cores / N
threads); colorize: the one-machine loop of ``hyperchroma colorize`` (``model.colorize`` + an atomic PNG)
against ``hyperchroma.distributed.colorize``. Cluster start-up is timed apart, not in the throughput. Also
printed: what a task sends and gets back (bytes), to size a cluster (see README, "Scale-out").
"""

from __future__ import annotations

import argparse
import os
import pickle
import shutil
import tempfile
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--copies", type=int, default=3, help="copies of the 12 shipped frames (default 3: 36 images)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args()

    import distributed
    from PIL import Image

    import hyperchroma as hc
    from hyperchroma import distributed as hd
    from hyperchroma.demo import demo_frames
    from hyperchroma.distributed.fit import _fill_part, _sample_part
    from hyperchroma.model import cpu_budget
    from hyperchroma.report import save_png_atomic
    from hyperchroma.settings import FitSettings

    train, test = demo_frames()
    tmp = tempfile.mkdtemp(prefix="hc-bench-dask-")
    images = []
    for k in range(args.copies):
        for p in list(train) + list(test):
            images.append(os.path.join(tmp, f"{p.stem}-{k}{p.suffix}"))
            shutil.copy(p, images[-1])
    cores = cpu_budget()
    print(f"{len(images)} images of 384x288, {cores} cores, load average {os.getloadavg()[0]:.1f}")

    t = time.perf_counter()
    one = hc.fit(images, threads=cores)
    fit_one = time.perf_counter() - t
    model_path = os.path.join(tmp, "m.hyc")
    one.save(model_path)
    t = time.perf_counter()
    out = os.path.join(tmp, "one")
    os.makedirs(out)
    for p in images:
        save_png_atomic(Image.fromarray(one.colorize(p)), os.path.join(out, os.path.basename(p) + ".png"))
    col_one = time.perf_counter() - t
    rows = [("one process", fit_one, col_one, 0.0)]

    for n in args.workers:
        t = time.perf_counter()
        cluster = distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0")
        client = distributed.Client(cluster)
        start = time.perf_counter() - t
        t = time.perf_counter()
        got = hd.fit(images, client, threads=cores)
        fit_n = time.perf_counter() - t
        assert len(got.table) == len(one.table)
        t = time.perf_counter()
        res = hd.colorize(images, model_path, os.path.join(tmp, f"dask{n}"), client)
        col_n = time.perf_counter() - t
        assert not res["failed"]
        client.close()
        cluster.close()
        rows.append((f"Dask, {n} worker{'s' if n > 1 else ''}", fit_n, col_n, start))

    print(f"\n| run | fit images/s | colorize images/s | cluster start s |\n|---|---|---|---|")
    for name, f, c, s in rows:
        print(f"| {name} | {len(images) / f:.2f} | {len(images) / c:.2f} | {s:.1f} |")

    # What travels, per task and per image (one part of 4 images, in this process).
    settings = FitSettings().checked()
    clf = one.classifier
    sample, sizes = _sample_part(images[:4], 0, clf, settings, "bench", 0, {}, 1)
    part = _fill_part(images[:4], 0, clf, one.quantizer, settings, "bench", {}, 1)
    whole_state = len(pickle.dumps(hc.fit(images[:12], threads=cores).color_table))
    print(f"\nsent once per worker: classifier {len(clf.model_bytes) / 1024:.0f} KiB, quantizer "
          f"{len(pickle.dumps(one.quantizer)) / 1024:.0f} KiB, model file {os.path.getsize(model_path) / 2**20:.1f} MiB")
    print(f"phase 1, back per image: {sample.nbytes / 4 / 1024:.0f} KiB of samples ({sample.shape[1]} channels)")
    print(f"phase 3, back per part of 4 images: open table {len(pickle.dumps(part)) / 2**20:.2f} MiB, "
          f"{len(part)} entries, {len(pickle.dumps(part)) / len(part):.0f} bytes per entry")
    print(f"finalized table of 12 distinct frames: {len(one.table)} entries in the model of all; "
          f"pickled {whole_state / 2**20:.2f} MiB")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
