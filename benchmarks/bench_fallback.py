"""The lookup chain's fallback (one-step probes, seeds, sorted index: everything after the exact hits) per frame
of a real film, on issue 12's latency protocol (``protocols.film_720``: vtest at 720x528, the model fit on
``--fit-keys`` keyframes, 1 by default, which leaves about 40% of keys missing as on the film we keep aside), timed
on ``--frames`` consecutive frames of vtest.avi (``protocols.film_720_sequence``), each frame's keys computed
once up front, then per frame:

- ``cold``: the chain with the miss memo forgotten before each frame (every frame as if unrelated);
- ``film``: the chain over the frames in display order, the memo on (as ``colorize`` and the video path run it);
- ``exact``: the exact hash-table lookup alone; a frame's fallback is its chain time less its exact time.

The same script runs on an older checkout (``PYTHONPATH=/path/to/old/python``) so that the two can be
alternated in one session; ``keys_digest`` and ``output_digest`` hash every frame's keys and chain output (ab,
status, distance) so that equal output can be checked across checkouts. Needs PyAV and ../shared/data::

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

from protocols import film_720, film_720_sequence


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=120)
    ap.add_argument("--start", type=int, default=300, help="the first timed frame of vtest.avi")
    ap.add_argument("--fit-keys", type=int, default=1, help="keyframes the model is fit on (film_720's keys)")
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
    from hyperchroma.lookup import lookup
    from hyperchroma.model import fit, load

    grays = film_720_sequence(a.start, a.frames)
    if a.model and os.path.exists(a.model):
        model = load(a.model, threads=a.threads)
    else:
        model = fit(film_720(a.fit_keys)[0], threads=a.threads)
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
        for gray in grays:
            prepared = pipeline.prepare(gray, model.fit_settings.size)
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
    missing = []
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
                if r == 0 and kind == "exact":
                    missing.append(float(np.mean(np.asarray(out[1]) != core.STATUS_HIT)))
                if r == 0 and kind == "film":
                    digest["keys"].update(keys[i].tobytes())
                    for v in (out.ab, out.status, out.distance):
                        digest["output"].update(np.ascontiguousarray(v).tobytes())
            times[kind].append(row)
    per = {k: np.median(np.array(v), axis=0) * 1e3 for k, v in times.items()}  # per frame, median over rounds
    res = {
        "hyperchroma": getattr(hyperchroma, "__version__", "?"), "frames": len(keys), "threads": t,
        "entries": len(model.color_table), "missing": round(float(np.mean(missing)), 3),
        "fallback_cold_ms": round(float(np.median(per["cold"] - per["exact"])), 3),
        "fallback_film_ms": round(float(np.median(per["film"] - per["exact"])), 3),
        "exact_ms": round(float(np.median(per["exact"])), 3),
        **{f"{k}_digest": d.hexdigest()[:16] for k, d in digest.items()},
    }
    print(json.dumps(res) if a.json else "  ".join(f"{k} {v}" for k, v in res.items()))


if __name__ == "__main__":
    main()
