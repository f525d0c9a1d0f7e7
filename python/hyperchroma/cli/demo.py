"""``hyperchroma demo``: fit on frames shipped with the package, colorize held-back ones, report."""

from __future__ import annotations

import argparse
from typing import Any

from .common import say


def add_parser(sub: Any) -> None:
    p = sub.add_parser("demo", help="fit on frames shipped with hyperchroma, colorize held-back ones, report",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog="example:\n  hyperchroma demo -o demo/   # then look at demo/comparison.png",
                       description="Runs offline: fits on 8 keyframes shipped inside the package, colorizes 4 "
                                   "held-back frames from their luminance, prints metrics against the gray "
                                   "baseline and writes a before/after sheet.")
    p.add_argument("-o", "--output", default="hyperchroma-demo", help="folder for the sheet and model "
                                                                       "(default ./hyperchroma-demo)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or summaries")
    p.set_defaults(func=run)



def run(args) -> int:
    from ..demo import run_demo

    run_demo(args.output, progress=not args.quiet, echo=lambda s: say(args, s))
    return 0
