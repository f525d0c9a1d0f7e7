"""Fit and colorize throughput on a local Dask cluster (1 and 2 worker processes) against one process.

Command (from the repository root, extension built with ./dev-build.sh; needs the [dask] extra):

    PYTHONPATH=python python benchmarks/bench_distributed.py [--copies 3] [--workers 1 2]
    PYTHONPATH=python python benchmarks/bench_distributed.py --film ../shared/data/video/vtest.avi --skip-images

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
    ap.add_argument("--film", help="also a video: colorize_video against the split-at-cuts cluster path (the "
                                   "model fit on 8 of its frames, evenly spread)")
    ap.add_argument("--skip-images", action="store_true", help="only the --film rows")
    ap.add_argument("--cuts-every", type=int, default=0,
                    help="with --film: re-encode it with every other run of this many frames inverted (255 - "
                         "x), a cut every this many frames, so the split has shots to spread")
    args = ap.parse_args()
    if args.film:
        film_rows(args.film, args.workers, args.cuts_every)
        if args.skip_images:
            return

    import distributed
    import hyperchroma as hc
    from hyperchroma import distributed as hd
    from hyperchroma.demo import demo_frames
    from hyperchroma.distributed.fit import _fill_part, _sample_part
    from hyperchroma.model import cpu_budget
    from hyperchroma.report import save_png_atomic
    from hyperchroma.settings import FitSettings
    from PIL import Image

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

    print("\n| run | fit images/s | colorize images/s | cluster start s |\n|---|---|---|---|")
    for name, f, c, s in rows:
        print(f"| {name} | {len(images) / f:.2f} | {len(images) / c:.2f} | {s:.1f} |")

    # What travels, per task and per image (one part of 4 images, in this process).
    settings = FitSettings().checked()
    clf = one.classifier
    sample, _ = _sample_part(images[:4], 0, clf, settings, "bench", 0, {}, 1)
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


def with_cuts(film: str, every: int, dst: str) -> str:
    """film re-encoded (MPEG-4, high quality) with every other run of ``every`` frames inverted."""
    import av

    with av.open(film) as c, av.open(dst, "w") as out:
        vs_in = c.streams.video[0]
        vs = out.add_stream("mpeg4", rate=vs_in.average_rate or 25, options={"qscale": "2"})
        vs.width, vs.height, vs.pix_fmt = vs_in.codec_context.width, vs_in.codec_context.height, "yuv420p"
        for i, f in enumerate(c.decode(video=0)):
            rgb = f.to_ndarray(format="rgb24")
            if (i // every) % 2:
                rgb = 255 - rgb
            for pk in vs.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                out.mux(pk)
        for pk in vs.encode():
            out.mux(pk)
    return dst


def film_rows(film: str, workers: list, cuts_every: int = 0) -> None:
    import av
    import distributed
    import hyperchroma as hc
    from hyperchroma import distributed as hd
    from hyperchroma.model import cpu_budget

    tmp = tempfile.mkdtemp(prefix="hc-bench-dask-film-")
    if cuts_every:
        film = with_cuts(film, cuts_every, os.path.join(tmp, "cuts.avi"))
    with av.open(film) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    n = len(frames)
    step = n // 8
    keys = [frames[i] for i in range(step // 2, n, step)[:8]]
    del frames
    model = hc.fit(keys, threads=cpu_budget())
    path = os.path.join(tmp, "m.hyc")
    model.save(path)
    t = time.perf_counter()
    stats = model.colorize_video(film, os.path.join(tmp, "one.mp4"), progress=False)
    rows = [("colorize_video, one process", time.perf_counter() - t, 0.0)]
    for w in workers:
        t = time.perf_counter()
        cluster = distributed.LocalCluster(n_workers=w, threads_per_worker=1, processes=True, dashboard_address=":0")
        client = distributed.Client(cluster)
        start = time.perf_counter() - t
        t = time.perf_counter()
        res = hd.colorize([film], path, os.path.join(tmp, f"dask{w}"), client)
        rows.append((f"Dask, {w} worker{'s' if w > 1 else ''}, split at cuts", time.perf_counter() - t, start))
        assert not res["failed"], res
        client.close()
        cluster.close()
    print(f"\n{os.path.basename(film)}: {n} frames, {stats['shots']} shots, load average {os.getloadavg()[0]:.1f}")
    print("| run | frames/s | cluster start s |\n|---|---|---|")
    for name, sec, start in rows:
        print(f"| {name} | {n / sec:.1f} | {start:.1f} |")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
