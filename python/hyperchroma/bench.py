"""Throughput benchmarking as a feature (``hyperchroma bench``): per-stage times, latency percentiles and
images/s on data that ships with the package, in a stable JSON shape pipelines can track.

Stages, in the order a frame goes through them: ``decode`` (read the JPEG), ``prepare`` (gray version,
model-size input), ``classifier`` (ONNX Runtime), ``keys`` (fused upsample + quantize + pack), ``lookup``
(exact hits), ``fallback`` (the rest of the lookup chain: one-step probes, seeds, sorted index),
``smoothing`` (median + guided filter) and ``compose`` (full-resolution luma-exact composition).

Every timed call is of an unrelated image: the lookup chain's miss memo (``core.lookup_chain``, which recalls the
previous call's answers for its missing keys) is forgotten before each, outside the timing, so the same frame
repeated is not timed as a film. Films are timed apart (``film``: a sequence of consecutive frames in display
order, the memo on, as a user's film goes through ``colorize``).

Throughput (``images_per_s``, medians of ``rounds`` = max(3, repeats // 10) rounds that alternate the kinds):
``single`` and ``single_1_thread``, the ``batch`` images one call at a time as unrelated images on the model's
threads and on one; ``batch``, one ``colorize_batch`` of them, and ``serial_1_thread``, the same images one after
the other on one thread, both from a forgotten memo and with it on, as a user runs them. ``batch_speedup`` is
the median over the rounds of batch / serial_1_thread.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import __version__, core, pipeline
from .images import load_image
from .lookup import Status, lookup

#: Version of the JSON shape :func:`run` returns (bumped only when a field changes meaning or goes away).
SCHEMA = 1


def _times(fn: Callable[[], Any], repeats: int, cold: bool = True) -> np.ndarray:
    """ms of each of ``repeats`` calls of ``fn``; ``cold``: the miss memo forgotten before each (not timed)."""
    out = np.empty(repeats)
    for i in range(repeats):
        if cold:
            core.clear_lookup_memo()
        t = time.perf_counter()
        fn()
        out[i] = time.perf_counter() - t
    return out * 1e3


def _resize(img: np.ndarray, size: Optional[Tuple[int, int]]) -> np.ndarray:
    if size is None or (img.shape[1], img.shape[0]) == size:
        return img
    from PIL import Image

    return np.asarray(Image.fromarray(img).resize(size, Image.Resampling.BILINEAR))


def run(model: Any, paths: Sequence[Any], size: Optional[Tuple[int, int]] = None, batch: int = 8,
        repeats: int = 30, film: Optional[Sequence[np.ndarray]] = None) -> Dict[str, Any]:
    """Benchmark ``model`` on the color images ``paths`` (their gray versions are colorized, as a user's
    black-and-white input), optionally resized to ``size`` (W, H). ``film``: consecutive gray frames of a film
    (display order, at least 3), timed one after the other with the miss memo on (the result's ``film``)."""
    if repeats < 1 or batch < 1:
        raise ValueError(f"repeats and batch must be >= 1, got {repeats} and {batch}")
    if film is not None and len(film) < 3:
        raise ValueError(f"film: expected at least 3 consecutive frames, got {len(film)}")
    from .images import luma

    grays = [luma(_resize(load_image(p), size)) for p in paths]
    frame = grays[0]
    t = model.threads
    s = model.colorize_settings
    for g in grays[:3]:
        model.colorize(g)  # warm up: sessions, buffers, page faults
    prepared = pipeline.prepare(frame, model.fit_settings.size)
    maps = model.classifier.run_reusing(prepared.gray, threads=t)
    tap_frame = model.classifier.frame(*prepared.shape)
    keys = model.quantizer.keys(maps, prepared.shape, t, tap_frame)
    found = lookup(model.color_table, keys, prepared.shape, s, t)
    h, w = prepared.shape
    ab = pipeline.smooth(found.ab.reshape(h, w, 2), prepared.gray, s, t)
    lookup_all = _times(lambda: lookup(model.color_table, keys, prepared.shape, s, t), repeats)
    exact = _times(lambda: model.color_table.lookup(keys, t), repeats)
    stage_times = {
        "decode": _times(lambda: load_image(paths[0]), repeats),
        "prepare": _times(lambda: pipeline.prepare(frame, model.fit_settings.size), repeats),
        "classifier": _times(lambda: model.classifier.run_reusing(prepared.gray, threads=t), repeats),
        "keys": _times(lambda: model.quantizer.keys(maps, prepared.shape, t, tap_frame), repeats),
        "lookup": exact,
        "fallback": np.maximum(lookup_all - np.median(exact), 0),
        "smoothing": _times(lambda: pipeline.smooth(found.ab.reshape(h, w, 2), prepared.gray, s, t), repeats),
        "compose": _times(lambda: pipeline.compose(frame, ab, t), repeats),
    }
    latency = _times(lambda: model.colorize(frame), repeats)
    work = (grays * (batch // len(grays) + 1))[:batch]
    one_thread = model.with_settings(threads=1)
    one_thread.colorize(work[0])  # its 1-thread session
    model.colorize_batch(work[:2])  # warm up its workers' sessions (one per thread share), as for single calls
    rates: Dict[str, List[float]] = {"single": [], "single_1_thread": [], "batch": [], "serial_1_thread": []}
    for _ in range(max(3, repeats // 10)):  # rounds alternating the kinds: a slow minute slows all alike
        for name, fn in (("single", model.colorize), ("single_1_thread", one_thread.colorize)):
            t0 = time.perf_counter()
            for g in work:
                core.clear_lookup_memo()  # (an atomic increment: nothing to time)
                fn(g)
            rates[name].append(len(work) / (time.perf_counter() - t0))
        # the batch against the same job run serially on one thread, both as a user runs them (the memo on)
        for name, job in (("batch", lambda: model.colorize_batch(work)),
                          ("serial_1_thread", lambda: [one_thread.colorize(g) for g in work])):
            core.clear_lookup_memo()
            t0 = time.perf_counter()
            job()
            rates[name].append(len(work) / (time.perf_counter() - t0))
    ratios = [b / s for b, s in zip(rates["batch"], rates["serial_1_thread"])]
    film_result = None
    if film is not None:
        frames = [luma(np.asarray(f)) for f in film]
        model.colorize(frames[0])
        core.clear_lookup_memo()
        ft = _times_each(model.colorize, frames[1:])
        film_result = {"frames": len(frames) - 1, "p50": round(float(np.percentile(ft, 50)), 3),
                       "p99": round(float(np.percentile(ft, 99)), 3),
                       "images_per_s": round(float(1e3 * len(ft) / ft.sum()), 2)}
    keys_rate = _keys_rates(model, work, t)
    return {
        "schema": SCHEMA,
        "hyperchroma": __version__,
        "image": {"width": int(frame.shape[1]), "height": int(frame.shape[0]), "model_size": [h, w]},
        "provider": model.classifier.provider,
        "threads": t,
        "cpus": os.cpu_count(),
        "repeats": repeats,
        "batch": batch,
        "misses": float(np.mean(found.status != Status.EXACT)),
        "stages_ms": {k: round(float(np.median(v)), 3) for k, v in stage_times.items()},
        "latency_ms": {"p50": round(float(np.percentile(latency, 50)), 3),
                       "p99": round(float(np.percentile(latency, 99)), 3)},
        "images_per_s": {k: round(float(np.median(v)), 2) for k, v in rates.items()},
        "batch_speedup": round(float(np.median(ratios)), 3),
        "rounds": len(ratios),
        "film": film_result,
        "keys_images_per_s": keys_rate,
        # PyTorch's OpenMP threads busy-wait after each op and take the cores (benchmarks/bench_torch_mix.py):
        # a pipeline that runs torch next to colorize wants OMP_WAIT_POLICY=PASSIVE set before importing it
        "environment": {"torch_loaded": "torch" in sys.modules,
                        "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY")},
    }


def _times_each(fn: Callable[[np.ndarray], Any], frames: Sequence[np.ndarray]) -> np.ndarray:
    """ms of ``fn`` on each frame in order (nothing forgotten between them)."""
    out = np.empty(len(frames))
    for i, f in enumerate(frames):
        t = time.perf_counter()
        fn(f)
        out[i] = time.perf_counter() - t
    return out * 1e3


def _keys_rates(model: Any, work: Sequence[np.ndarray], threads: int) -> Optional[Dict[str, float]]:
    """Images/s of the first half of the pipeline (model-size gray -> packed keys) for the batch: ``serial``,
    the classifier then the C++ keys kernel per image; ``graph_batch``, the GPU-ready path (keys computed in the
    ONNX graph, bucketed batches, I/O binding: :class:`hyperchroma.gpu.BatchKeys`). None where that path does
    not apply (a PCA-projected quantizer, or no ``onnx`` package)."""
    if model.quantizer.projection is not None:
        return None
    try:
        from .gpu import BatchKeys
    except ImportError:  # pragma: no cover - onnx missing
        return None
    size = model.fit_settings.size
    grays = [pipeline.prepare(g, size).gray for g in work]
    if len({g.shape for g in grays}) != 1:
        return None
    bk = BatchKeys(model.classifier, model.quantizer, threads=threads)
    batch = np.stack(grays)
    bk.keys(batch)  # warm up: the session, its buffers

    def serial() -> None:
        for g in grays:
            model.quantizer.keys(model.classifier.run_reusing(g, threads=threads), g.shape, threads)

    serial()
    ts = float(np.median(_times(serial, 3))) / 1e3
    tg = float(np.median(_times(lambda: bk.keys(batch), 3))) / 1e3
    return {"serial": round(len(grays) / ts, 2), "graph_batch": round(len(grays) / tg, 2)}


def format_result(r: Dict[str, Any]) -> str:
    """The benchmark as readable lines."""
    img = r["image"]
    lines = [f"hyperchroma {r['hyperchroma']}: {img['width']}x{img['height']} gray frames (model size "
             f"{img['model_size'][1]}x{img['model_size'][0]}), provider {r['provider']}, {r['threads']} threads, "
             f"{r['cpus']} CPUs, {100 * r['misses']:.0f}% of keys missing",
             f"latency p50 {r['latency_ms']['p50']:.1f} ms, p99 {r['latency_ms']['p99']:.1f} ms; "
             f"{r['images_per_s']['single']:.1f} images/s single, {r['images_per_s']['batch']:.1f} images/s "
             f"colorize_batch of {r['batch']}, {r['images_per_s'].get('single_1_thread', 0):.1f} single on 1 "
             "thread (every single image as if unrelated: the miss memo forgotten before each)",
             f"colorize_batch {r['batch_speedup']:.2f}x the same {r['batch']} images colorized one after the other "
             f"on 1 thread (median of {r['rounds']} alternating rounds)",
             "stages (median ms): " + ", ".join(f"{k} {v:.2f}" for k, v in r["stages_ms"].items())]
    f = r.get("film")
    if f:
        lines.append(f"film ({f['frames']} consecutive frames in order, miss memo on): p50 {f['p50']:.1f} ms, "
                     f"p99 {f['p99']:.1f} ms, {f['images_per_s']:.1f} images/s")
    env = r.get("environment") or {}
    if env.get("torch_loaded") and env.get("OMP_WAIT_POLICY") is None:
        lines.append("note: PyTorch is loaded without OMP_WAIT_POLICY=PASSIVE: its spinning OpenMP threads slow "
                     "colorize calls that follow its ops")
    k = r.get("keys_images_per_s")
    if k:
        lines.append(f"gray -> keys: {k['serial']:.1f} images/s classifier + C++ keys per image, "
                     f"{k['graph_batch']:.1f} images/s keys in the ONNX graph, bucketed batch of {r['batch']}")
    return "\n".join(lines)


def shipped_frames() -> List[Any]:
    """The demo's held-back frames (they ship inside the package)."""
    from .demo import demo_frames

    return list(demo_frames()[1])
