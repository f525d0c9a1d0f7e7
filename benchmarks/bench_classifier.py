"""Classifier latency: ONNX Runtime (hyperchroma.Classifier) against the same net in PyTorch, same process.

Both compute the taps of the gray image including the gray -> normalized L conversion, on the CPU, with the
same number of threads; PyTorch gets the ONNX model's own weights (so the comparison holds for whatever model
is shipped). The contenders run in alternating blocks (so that a slow phase of a shared machine hits both); the table
shows medians over all repeats. "ORT ms (out=)" reuses preallocated outputs. Asserts nothing.

    PYTHONPATH=python python benchmarks/bench_classifier.py [--threads N] [--repeats N] [--classifier X.onnx]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from typing import Any, Callable

import numpy as np


def _interleaved_medians(fns: dict[str, Callable[[], Any]], repeats: int, rounds: int = 2) -> dict[str, float]:
    """Median wall time (ms) of each function. The functions run in alternating blocks (``rounds`` blocks each,
    a warm-up run and a short pause before every block) so that slow phases of a shared machine hit all of them,
    without one's idle threads spinning into the next one's timing."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    per_block = max(1, -(-repeats // rounds))
    for _ in range(rounds):
        for k, fn in fns.items():
            time.sleep(0.05)
            fn()
            for _ in range(per_block):
                t = time.perf_counter()
                fn()
                times[k].append(time.perf_counter() - t)
    return {k: 1000.0 * statistics.median(v) for k, v in times.items()}


def _torch_net(clf: Any) -> tuple[Any, Callable[[Any], Any]]:
    """The classifier's net in PyTorch with the ONNX weights, and a gray -> taps function."""
    import onnx
    import torch
    from onnx import numpy_helper

    from hyperchroma import training as train

    model = onnx.load_model_from_string(clf.model_bytes)
    meta = clf.metadata
    if "spec" not in meta:
        raise SystemExit("the PyTorch comparison needs a hyperchroma classifier (with a spec)")
    weights = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    # the runtime model holds the conv weights only (the FC head is pruned; its random weights here cost ~nothing)
    net = train.build_net(meta["spec"], 2, size=int(meta.get("train_size", 224))).eval()
    state = net.state_dict()
    for k in state:
        group, idx, kind = k.split(".")
        if group == "convs":
            state[k] = torch.from_numpy(weights[f"conv{int(idx) + 1}.{kind}"].copy())
    net.load_state_dict(state)
    norm = clf.normalization
    mean, std = float(norm["mean"][0]), float(norm["std"][0])

    def taps(gray: Any) -> Any:
        with torch.inference_mode():
            g = gray.clamp(0, 1)
            y = torch.where(g <= 0.04045, g / 12.92, ((g + 0.055) / 1.055) ** 2.4)
            f = torch.where(y > 216 / 24389, y.pow(1 / 3), y * (24389 / 27 / 116) + 16 / 116)
            x = ((1.16 * f - 0.16) - mean) / std
            return net(x[:, None])[1]

    return net, taps


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--classifier", help="ONNX classifier (default: the shipped one)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads for both (default: all cores)")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--sizes", default="224x224,720x528", help="WxH list")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--json", help="also write the rows to this JSON file")
    args = ap.parse_args(argv)

    import onnxruntime as ort

    from hyperchroma.classifier import Classifier

    clf = Classifier(args.classifier, providers="cpu", threads=args.threads)
    torch_taps = None
    if not args.no_torch:
        try:
            import torch

            torch.set_num_threads(args.threads)
            _, torch_taps = _torch_net(clf)
        except ImportError:
            print("PyTorch not installed: ONNX Runtime only", file=sys.stderr)
    rows = []
    rng = np.random.default_rng(0)
    for size in args.sizes.split(","):
        w, h = (int(v) for v in size.lower().split("x"))
        for n in (int(b) for b in args.batches.split(",")):
            gray = rng.random((n, h, w), dtype=np.float32)
            reps = max(3, args.repeats if n * h * w <= 224 * 224 * 8 else args.repeats // 2)
            out = [np.empty((n, *sh), np.float32) for sh in clf.output_shapes(h, w)]
            fns: dict[str, Callable[[], Any]] = {"ort_ms": lambda: clf.run(gray),
                                                 "ort_out_ms": lambda: clf.run(gray, out=out)}
            row: dict[str, Any] = {"size": f"{w}x{h}", "batch": n}
            if torch_taps is not None:
                import torch

                tg = torch.from_numpy(gray)
                ref = torch_taps(tg)
                row["max_abs_diff"] = max(float(np.abs(a - b.numpy()).max()) for a, b in zip(clf.run(gray), ref))
                fns["torch_ms"] = lambda: torch_taps(tg)
            row.update(_interleaved_medians(fns, reps))
            rows.append(row)
            print(".", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)

    print(f"classifier {clf.identity[:12]} ({clf.metadata.get('spec', 'foreign')}), {clf.channels} tap channels")
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores visible, {args.threads} threads; "
          f"onnxruntime {ort.__version__} {clf.provider}"
          + (f", torch {__import__('torch').__version__}" if torch_taps is not None else ""))
    head = "| size (WxH) | batch | ORT ms | ORT ms (out=) | ORT img/s |"
    if torch_taps is not None:
        head += " PyTorch ms | PyTorch / ORT | max abs diff |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for r in rows:
        line = (f"| {r['size']} | {r['batch']} | {r['ort_ms']:.1f} | {r['ort_out_ms']:.1f} | "
                f"{1000 * r['batch'] / r['ort_ms']:.1f} |")
        if "torch_ms" in r:
            line += f" {r['torch_ms']:.1f} | {r['torch_ms'] / r['ort_ms']:.2f}x | {r['max_abs_diff']:.1e} |"
        print(line)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
