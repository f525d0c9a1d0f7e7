"""``hyperchroma bench``: per-stage times, latency and throughput on data that ships with the package."""

from __future__ import annotations

import argparse
from typing import Any

from .common import csv_list


def _size(text: str) -> tuple:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WxH, e.g. 720x528, got {text!r}") from None
    if not (16 <= w <= 16384 and 16 <= h <= 16384):
        raise argparse.ArgumentTypeError(f"sizes must be in 16..16384, got {text!r}")
    return w, h


def add_parser(sub: Any) -> None:
    p = sub.add_parser("bench", help="per-stage times, p50/p99 latency and images/s on shipped frames",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="examples:\n  hyperchroma bench\n  hyperchroma bench --size 720x528 --threads 2 --json",
                       description="Fit on the shipped keyframes (or load --model), colorize the gray versions of "
                                   "the shipped test frames and report each stage's median time, the latency "
                                   "percentiles of one call, and images/s for single calls and colorize_batch. "
                                   "--json prints one object of a stable shape (its 'schema' field says which).")
    p.add_argument("--model", help="model file (default: fit on the shipped keyframes)")
    p.add_argument("--size", type=_size, metavar="WxH", help="resize the frames to this size first")
    p.add_argument("--batch", type=int, default=8, help="images per colorize_batch call (default 8)")
    p.add_argument("--threads", type=int, default=None, help="the model's thread budget (default: the cores here)")
    p.add_argument("--providers", type=csv_list, metavar="P1,P2", help="execution providers (cpu, cuda)")
    p.add_argument("--repeats", type=int, default=30, help="timed repeats per stage (default 30)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from .. import bench
    from ..classifier import Classifier
    from ..demo import demo_frames
    from ..model import fit, load

    clf = Classifier(providers=args.providers) if args.providers else None
    if args.model:
        model = load(args.model, classifier=None, threads=args.threads)
        if args.providers:
            raise ValueError("--providers applies to a fitted-here model; a loaded model runs its own classifier")
    else:
        model = fit(demo_frames()[0], classifier=clf, threads=args.threads)
    result = bench.run(model, bench.shipped_frames(), size=args.size, batch=args.batch, repeats=args.repeats)
    print(json.dumps(result, indent=2) if args.json else bench.format_result(result))
    return 0
