"""``hyperchroma evaluate``: the paper's test stage, metrics against the gray baseline."""

from __future__ import annotations

import argparse
from typing import Any

from .common import positive_int


def add_parser(sub: Any) -> None:
    p = sub.add_parser("evaluate", help="the paper's test stage: metrics against the gray baseline",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog="examples:\n  hyperchroma evaluate test_frames/ -m film.hyc\n  hyperchroma evaluate test_frames/ -m film.hyc --json --sheet sheet.png\n  hyperchroma evaluate film.mp4 --keyframes 8      # a color film: fit on 8 of its frames, test the rest",
                       description="Colorize the gray version of color test images and compare with their colors: "
                                   "PSNR, AuC and colorfulness beside the all-gray baseline, the share of images "
                                   "that beat gray, and a verdict. A color video instead: N of its frames are "
                                   "the keyframes, its gray version is colorized as a film, and the other frames "
                                   "are scored, with the warp error (steadiness) beside the truth's own.")
    p.add_argument("images", nargs="+", help="color test images or folders of them, or one color video")
    p.add_argument("-m", "--model", help="model file from `hyperchroma fit` (for a video: optional, its classifier "
                                         "and fit settings are used)")
    p.add_argument("--keyframes", type=positive_int, default=8,
                   help="videos: how many evenly spread frames are keyframes (default 8)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--sheet", help="also write a before/after comparison sheet (PNG) here")
    p.add_argument("--pass-share", type=float, default=0.5,
                   help="share of images that must beat gray for the verdict 'fit' (default 0.5)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or summaries")
    p.set_defaults(func=run)



def _json(report: Any) -> str:
    """The report as strict JSON: a number that is not finite (the PSNR of a perfect match, a warp error with no
    followed frame) becomes null, which every JSON reader takes (``Infinity``/``NaN`` are not JSON)."""
    import json
    import math

    def clean(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v

    return json.dumps(clean(report), indent=2, allow_nan=False)


def run(args) -> int:
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
    from .colorize import VIDEO_SUFFIXES

    paths = image_paths(args.images)
    videos = [p for p in paths if p.suffix.lower() in VIDEO_SUFFIXES]
    if videos:
        if len(paths) != 1 or args.sheet:
            raise ValueError("evaluate takes one color video alone (no images, no --sheet)")
        from ..video.evaluate import evaluate_video, format_video_report

        report = evaluate_video(videos[0], load(args.model) if args.model else None, keyframes=args.keyframes,
                                progress=not (args.quiet or args.json))
        print(_json(report) if args.json else format_video_report(report))
        return 0
    if not args.model:
        raise ValueError("evaluating images needs a model: -m MODEL")
    model = load(args.model)
    report = model.evaluate(paths, pass_share=args.pass_share, progress=not (args.quiet or args.json))
    print(_json(report) if args.json else format_report(report))
    if args.sheet:
        write_before_after(model, paths, args.sheet)
    return 0
