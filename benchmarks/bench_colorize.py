"""End-to-end speed: one 768x576 frame (decode excluded), p50/p99 latency, batch throughput, fit rate. Every
timed call is of an unrelated image: the lookup chain's miss memo is forgotten before each (outside the timing),
so repeating one frame does not time it as a film.

Run: python benchmarks/bench_colorize.py
"""

import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from common import print_table  # noqa: E402
from protocols import keyframes  # noqa: E402

import hyperchroma as hc  # noqa: E402
from hyperchroma import core  # noqa: E402
from hyperchroma.images import load_image  # noqa: E402


def percentiles(fn, n):
    ts = []
    for _ in range(n):
        core.clear_lookup_memo()
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return np.percentile(ts, 50), np.percentile(ts, 99)


def main():
    train, test = keyframes("film-vtest")
    train_imgs = [load_image(f) for f in train]
    t = time.perf_counter()
    model = hc.fit(train_imgs)
    t_fit = time.perf_counter() - t
    grays = []
    for f in test:
        L, ab = core.rgb_to_lab(load_image(f))
        grays.append(core.lab_to_rgb(L, np.zeros_like(ab))[..., 0].copy())  # black-and-white frames
    frame = grays[0]
    for g in grays[:3]:
        model.colorize(g)  # warm up
    p50, p99 = percentiles(lambda: model.colorize(frame), 60)
    batch = grays * 2
    core.clear_lookup_memo()
    t = time.perf_counter()
    model.colorize_batch(batch)
    t_batch = time.perf_counter() - t
    t = time.perf_counter()
    for g in batch:
        core.clear_lookup_memo()
        model.colorize(g)
    t_serial = time.perf_counter() - t

    # stage breakdown for one frame at model size
    shape = (168, 224)
    from hyperchroma import pipeline
    from hyperchroma.images import model_gray
    gs = model_gray(frame, shape)
    prepared = pipeline.prepare(frame, model.fit_settings.size)
    maps = model.classifier.run(gs)
    stages = {
        "model-size gray (resize)": lambda: model_gray(frame, shape),
        "classifier (ONNX Runtime)": lambda: model.classifier.run(gs),
        "fused keys": lambda: core.hypercolumn_keys(maps, 168, 224, model.thresholds, model.weights, threads=2),
        "model-size ab (gray..median, no compose)": lambda: pipeline.model_colors(
            model.classifier, model.quantizer, model.color_table, prepared, model.colorize_settings, model.threads),
    }
    rows = [["colorize 768x576 gray frame, p50", f"{p50 * 1e3:.1f} ms"],
            ["colorize 768x576 gray frame, p99", f"{p99 * 1e3:.1f} ms"],
            [f"colorize_batch ({len(batch)} frames)", f"{len(batch) / t_batch:.1f} frames/s"],
            [f"serial colorize ({len(batch)} frames)", f"{len(batch) / t_serial:.1f} frames/s"],
            [f"fit ({len(train)} 768x576 frames, decoded)", f"{len(train) / t_fit:.1f} frames/s"]]
    for name, fn in stages.items():
        p, _ = percentiles(fn, 30)
        rows.append([f"  stage: {name}", f"{p * 1e3:.2f} ms"])
    print(f"{model}; provider {model.classifier.provider}; {os.cpu_count()} CPUs")
    print_table(["what", "measured"], rows)


if __name__ == "__main__":
    main()
