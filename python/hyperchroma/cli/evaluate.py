"""``hyperchroma evaluate``: the paper's test stage, metrics against the gray baseline."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser("evaluate", help="the paper's test stage: metrics against the gray baseline",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog="examples:\n  hyperchroma evaluate test_frames/ -m film.hyc\n  hyperchroma evaluate test_frames/ -m film.hyc --json --sheet sheet.png",
                       description="Colorize the luminance of color test images and compare with their colors: "
                                   "PSNR, AuC and colorfulness beside the all-gray baseline, the share of images "
                                   "that beat gray, and a verdict.")
    p.add_argument("images", nargs="+", help="color test images or folders of them")
    p.add_argument("-m", "--model", required=True, help="model file from `hyperchroma fit`")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--sheet", help="also write a before/after comparison sheet (PNG) here")
    p.add_argument("--pass-share", type=float, default=0.5,
                   help="share of images that must beat gray for the verdict 'fit' (default 0.5)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or summaries")
    p.set_defaults(func=run)



def run(args) -> int:
    import json
    import os

    from ..images import image_paths
    from ..model import load
    from ..report import format_report, write_before_after

    if args.sheet:
        folder = os.path.dirname(os.path.abspath(args.sheet))
        if not os.path.isdir(folder):
            raise ValueError(f"--sheet: folder '{folder}' does not exist")
        if os.path.isdir(args.sheet):
            raise ValueError(f"--sheet: '{args.sheet}' is a directory")
    model = load(args.model)
    paths = image_paths(args.images)
    report = model.evaluate(paths, pass_share=args.pass_share, progress=not (args.quiet or args.json))
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    if args.sheet:
        write_before_after(model, paths, args.sheet)
    return 0
