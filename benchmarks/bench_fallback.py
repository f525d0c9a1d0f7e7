"""The lookup chain's fallback (one-step probes, seeds, sorted index: everything after the exact hits) per frame
of a real film, as issue 12 measures it: vtest.avi resized to 720x528, the model fit on 8 of its frames
evenly spread over the whole film (colored keyframes, as a film user fits), the frames that are not keyframes among
120 consecutive ones from the film's middle timed (118 on vtest), each frame's keys computed once up front, then per frame:

- ``cold``: the chain with the miss memo forgotten before each frame (every frame as if unrelated);
- ``film``: the chain over the frames in display order, the memo on (as ``colorize`` and the video path run it);
- ``exact``: the exact hash-table lookup alone; a frame's fallback is its chain time less its exact time.

The same script runs on an older checkout (``PYTHONPATH=/path/to/old/python``) so that the two can be alternated
in one session; ``keys_digest`` and ``output_digest`` hash every frame's keys and chain output (ab, status, distance) so
that equal output can be checked across checkouts. Needs PyAV and ../shared/data (``HYPERCHROMA_DATA``)::

    HYPERCHROMA_DATA=../shared/data PYTHONPATH=python python benchmarks/bench_fallback.py --threads 1
"""
from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import os
import time

import numpy as np
from PIL import Image


def frames(path: str, count: int, size: tuple) -> tuple:
    """The film's 8 keyframes evenly spread over all its frames, and the other frames among ``count``
    consecutive ones from its middle, resized to ``size`` (only those are kept in memory)."""
    import av

    with av.open(path) as c:
        n = c.streams.video[0].frames
    step = n // 8
    keyset = set(range(step // 2, n, step)[:8])
    start = max(0, (n - count) // 2)
    keys, run = [], []
    with av.open(path) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i in keyset or start <= i < start + count:
                rgb = np.asarray(Image.fromarray(f.to_ndarray(format="rgb24")).resize(size, Image.Resampling.BILINEAR))
                (keys if i in keyset else run).append(rgb)
    return keys, run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=120)
    ap.add_argument("--size", default="720x528")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--model", help="a model file to load; fit on the keyframes and saved there when it does not "
                    "exist (so that two checkouts can run one table)")
    ap.add_argument("--keys", help="an .npz of the frames' keys to load; computed and saved there when it does "
                    "not exist (two checkouts whose classifier paths differ then time the chain on equal keys)")
    a = ap.parse_args()
    import hyperchroma
    from hyperchroma import core, pipeline
    from hyperchroma.images import luma
    from hyperchroma.lookup import lookup
    from hyperchroma.model import fit, load

    data = os.environ.get("HYPERCHROMA_DATA", os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))
    size = tuple(int(v) for v in a.size.split("x"))
    key_rgbs, rgbs = frames(os.path.join(data, "video", "vtest.avi"), a.frames, size)
    if a.model and os.path.exists(a.model):
        model = load(a.model, threads=a.threads)
    else:
        model = fit(key_rgbs, threads=a.threads)
        if a.model:
            model.save(a.model)
    t, s = a.threads, model.colorize_settings
    takes_frame = "tap_frame" in inspect.signature(model.quantizer.keys).parameters
    keys, shapes = [], []
    if a.keys and os.path.exists(a.keys):
        with np.load(a.keys) as z:
            keys = [z[f"k{i}"] for i in range(len(z.files) - 1)]
            shapes = [tuple(v) for v in z["shapes"]]
    else:
        for rgb in rgbs:
            prepared = pipeline.prepare(luma(rgb), model.fit_settings.size)
            maps = model.classifier.run_reusing(prepared.gray, threads=t)
            extra = (model.classifier.frame(*prepared.shape),) if takes_frame else ()
            keys.append(np.ascontiguousarray(model.quantizer.keys(maps, prepared.shape, t, *extra)))
            shapes.append(prepared.shape)
        if a.keys:
            np.savez(a.keys, shapes=np.array(shapes), **{f"k{i}": k for i, k in enumerate(keys)})
    clear = getattr(core, "clear_lookup_memo", lambda: None)  # older checkouts have no memo

    def chain(i: int):
        return lookup(model.color_table, keys[i], shapes[i], s, t)

    for i in range(3):
        chain(i)  # warm up: the neighbour index, the scratch buffers
    times: dict = {"cold": [], "film": [], "exact": []}
    digest = {"keys": hashlib.sha256(), "output": hashlib.sha256()}
    for r in range(a.rounds):
        for kind in ("cold", "film", "exact"):
            clear()
            row = []
            for i in range(len(keys)):
                if kind == "cold":
                    clear()
                t0 = time.perf_counter()
                out = model.color_table.lookup(keys[i], t) if kind == "exact" else chain(i)
                row.append(time.perf_counter() - t0)
                if r == 0 and kind == "film":
                    digest["keys"].update(keys[i].tobytes())
                    for v in (out.ab, out.status, out.distance):
                        digest["output"].update(np.ascontiguousarray(v).tobytes())
            times[kind].append(row)
    per = {k: np.median(np.array(v), axis=0) * 1e3 for k, v in times.items()}  # per frame, median over rounds
    missing = float(np.mean([np.mean(np.asarray(model.color_table.lookup(k, t)[1]) != 1) for k in keys]))
    res = {
        "hyperchroma": getattr(hyperchroma, "__version__", "?"), "frames": len(keys), "size": a.size,
        "threads": t, "entries": len(model.color_table), "missing": round(missing, 3),
        "fallback_cold_ms": round(float(np.median(per["cold"] - per["exact"])), 3),
        "fallback_film_ms": round(float(np.median(per["film"] - per["exact"])), 3),
        "exact_ms": round(float(np.median(per["exact"])), 3), **{f"{k}_digest": d.hexdigest()[:16] for k, d in digest.items()},
    }
    print(json.dumps(res) if a.json else "  ".join(f"{k} {v}" for k, v in res.items()))


if __name__ == "__main__":
    main()
