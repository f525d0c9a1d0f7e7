"""``hyperchroma colorize``: colorize images (and videos) with a fitted model."""

from __future__ import annotations

import argparse
from typing import Any

from .common import add_cluster_arguments, error_line, say


def add_parser(sub: Any) -> None:
    p = sub.add_parser("colorize", help="colorize images and films with a fitted model",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog="examples:\n  hyperchroma colorize scans/ -m film.hyc -o colored/\n  hyperchroma colorize film.avi -m film.hyc -o out/     # writes out/film.mp4, audio kept\n  hyperchroma colorize photo.jpg -m film.hyc -o out/ --recolor --strength 0.5\n\neach output is written whole or not at all; a bad input is reported and skipped (exit status 1).",
                       description="Colorize gray images (color ones from their gray version): one PNG per input, "
                                   "same file stem, in the output folder. A video file gives one video (same stem; "
                                   "H.264 MP4 by default) colored from the model's keyframes along the motion, "
                                   "its audio, timestamps and size kept.")
    p.add_argument("inputs", nargs="+", help="images, folders of images, or video files")
    p.add_argument("-m", "--model", required=True, help="model file from `hyperchroma fit`")
    p.add_argument("-o", "--output", required=True, help="output folder (created if missing)")
    p.add_argument("--recolor", action="store_true",
                   help="color correction: recolor color images from the model, keeping their luminance")
    p.add_argument("--strength", type=float, default=None, help="with --recolor: 0 keeps the image's colors, "
                                                                "1 takes the model's (default 1)")
    p.add_argument("--details", action="store_true",
                   help="images: also write STEM.confidence.png, the model's per-pixel confidence (white = sure)")
    p.add_argument("--median", type=int, default=None, help="median filter size (odd, 1 = off; default: the model's)")
    p.add_argument("--max-distance", type=float, default=None,
                   help="leave a pixel gray when the nearest stored key is farther than this (default: the model's)")
    p.add_argument("--no-one-step", action="store_true", help="skip the one-step probes for missing keys")
    p.add_argument("--no-borders", action="store_true",
                   help="feed uniform edge bars (letterbox, pillarbox, thin black frames) to the model with the "
                        "picture instead of colorizing the picture alone and leaving the bars gray")
    p.add_argument("--min-confidence", type=float, default=None,
                   help="images the model is less confident about than this come back gray (0..1)")
    p.add_argument("--codec", default="libx264", help="videos: the video encoder (default libx264)")
    p.add_argument("--crf", type=int, default=18,
                   help="videos: the encoder's constant quality, lower is better (default 18; x264/x265 0..51, "
                        "VP8/VP9/AV1 0..63; other encoders have no crf and keep their defaults)")
    p.add_argument("--container", default="mp4", help="videos: the output container and extension (default mp4)")
    add_cluster_arguments(p)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or summaries")
    p.set_defaults(func=run)


VIDEO_SUFFIXES = (".avi", ".mp4", ".mkv", ".mov", ".m4v", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".ts", ".ogv",
                  ".m2ts", ".mts", ".m2v", ".3gp", ".3g2", ".vob", ".asf", ".y4m", ".mxf", ".dv", ".f4v", ".divx",
                  ".h264", ".264", ".hevc", ".h265", ".ivf", ".nut", ".mjpeg")


def input_paths(inputs: Any) -> list:
    """Files as given; a folder's images and videos (by suffix), searched recursively and sorted by path."""
    from pathlib import Path

    from ..images import IMAGE_SUFFIXES, ImageError, image_paths

    out: list = []
    for item in inputs:
        p = Path(item)
        if not p.is_dir():
            if not p.exists():  # said before any work: a typo must not surface after an hour of other inputs
                raise ImageError(f"cannot read input '{p}': no such file or directory")
            out.extend(image_paths([p]))
            continue
        found = sorted(f for f in p.rglob("*") if f.is_file()
                       and (f.suffix.lower() in IMAGE_SUFFIXES or f.suffix.lower() in VIDEO_SUFFIXES))
        if not found:
            raise ImageError(f"directory '{p}' holds no images or videos")
        out.extend(found)
    return out


def _make_output_folder(folder: str) -> None:
    """Create the output folder, or say in one line why not. A name that looks like an image or video file
    (``-o result.png``) is refused unless it already is a folder: -o names a folder, not the output file."""
    import os

    from ..images import IMAGE_SUFFIXES

    if os.path.isdir(folder):
        return
    if os.path.exists(folder):
        raise ValueError(f"output folder '{folder}' exists and is not a folder")
    suffix = os.path.splitext(folder.rstrip("/" + os.sep))[1].lower()
    if suffix in IMAGE_SUFFIXES or suffix in VIDEO_SUFFIXES:
        raise ValueError(f"-o takes an output folder, and '{folder}' looks like a file name; outputs keep "
                         f"their input's name inside the folder (e.g. -o out/), or create '{folder}' as a folder "
                         "first")
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        why = (e.strerror or str(e)).lower()
        raise ValueError(f"cannot create output folder '{folder}': {why}") from None



def _run_distributed(args: Any, found: Any, overrides: dict) -> int:
    """The same outputs, each input a task on a Dask cluster."""
    from ..distributed import client_for
    from ..distributed import colorize as distributed_colorize

    if args.recolor or args.details:
        raise ValueError("--recolor and --details do not run on a cluster yet; drop --scheduler / --workers")
    with client_for(args.scheduler, args.workers) as client:
        result = distributed_colorize([str(p) for p in found], args.model, args.output, client,
                                      progress=not args.quiet, codec=args.codec, crf=args.crf,
                                      container=args.container, **overrides)
    for src, why in result["failed"]:
        error_line(f"hyperchroma colorize: error: {why}")
    say(args, f"wrote {len(result['written'])} of {len(found)} files to {args.output}")
    return 1 if result["failed"] else 0


def run(args) -> int:
    import os
    from PIL import Image
    from tqdm import tqdm

    import numpy as np

    from ..images import ImageError, image_in_color, load_image
    from ..lookup import Status
    from ..model import load
    from ..report import save_png_atomic

    if args.strength is not None and not args.recolor:
        raise ValueError("--strength only applies with --recolor")
    model = load(args.model)
    overrides = {k: v for k, v in (("median_size", args.median), ("max_distance", args.max_distance),
                                   ("min_confidence", args.min_confidence)) if v is not None}
    if args.no_one_step:
        overrides["one_step"] = False
    if args.no_borders:
        overrides["borders"] = False
    if overrides:
        model = model.with_settings(**overrides)
    found = input_paths(args.inputs)
    videos = [p for p in found if p.suffix.lower() in VIDEO_SUFFIXES]
    paths = [p for p in found if p.suffix.lower() not in VIDEO_SUFFIXES]
    if videos and args.recolor:
        raise ValueError("--recolor applies to images, not to videos")
    from ..video.io import quality_options

    if not 0 <= args.crf <= 63:
        raise ValueError(f"--crf must be in 0..63, got {args.crf}")
    quality_options(args.codec, args.crf)  # the encoder's own range (x264: 0..51), said before any work
    ext = "." + args.container.lstrip(".")
    for p in videos:
        target = os.path.join(args.output, p.stem + ext)
        if os.path.exists(target) and os.path.samefile(target, p):
            raise ImageError(f"writing {target} would overwrite the input '{p}'; choose another output folder")
    for p in paths:
        target = os.path.join(args.output, p.stem + ".png")
        if os.path.exists(target) and os.path.samefile(target, p):
            raise ImageError(f"writing {target} would overwrite the input '{p}'; choose another output folder")
    written: dict[str, Any] = {}  # output name -> input: two inputs of one stem would overwrite each other
    for p, name in [(p, p.stem + ext) for p in videos] + [(p, p.stem + ".png") for p in paths]:
        if name in written:
            raise ImageError(f"inputs '{written[name]}' and '{p}' would both write {name}; rename one")
        written[name] = p
    _make_output_folder(args.output)
    if args.scheduler or args.workers:
        return _run_distributed(args, found, overrides)
    video_failed = image_failed = 0
    for p in videos:
        try:
            stats = model.colorize_video(p, os.path.join(args.output, p.stem + ext), codec=args.codec, crf=args.crf,
                                         container=None, progress=not args.quiet)
        except ValueError as e:  # VideoError: one line, the other inputs still go
            video_failed += 1
            error_line(f"hyperchroma colorize: error: {e}")
            continue
        unmatched = stats.get("keyframes_unmatched") or []
        if unmatched:  # used as table examples only: the film's colors there come from the table alone
            error_line(f"hyperchroma colorize: warning: '{p}': keyframe{'s' if len(unmatched) > 1 else ''} "
                       f"{', '.join(str(k + 1) for k in unmatched)} of {stats.get('keyframes', '?')} (in the order "
                       "fit took them) match no frame of the film (a crop, a mirror or another film's frame?); "
                       "their colors only taught the table")
        for k, j in sorted((stats.get("keyframes_duplicate") or {}).items()):
            error_line(f"hyperchroma colorize: note: '{p}': keyframe {k + 1} shows the same frame as keyframe "
                       f"{j + 1}; keyframe {j + 1}'s colors were used there")
        if stats.get("input_color") and not args.quiet:
            error_line(f"hyperchroma colorize: note: '{p}' is in color; its colors are replaced (only its "
                       "luminance is used)")
        say(args, f"wrote {os.path.join(args.output, p.stem + ext)}: {stats.get('frames', '?')} frames")
    in_color: list = []  # color images colorized (not --recolor): said once at the end
    for p in tqdm(paths, desc="colorize", unit="img", disable=args.quiet or len(paths) < 2):
        try:
            detail = None
            if args.recolor:
                rgb = model.recolor(p, 1.0 if args.strength is None else args.strength)
            else:
                img = load_image(p)  # read once: looked at for color, then colorized
                if image_in_color(img):
                    in_color.append(p)
                if args.details:
                    detail = model.colorize(img, details=True)
                    rgb = detail.rgb
                else:
                    rgb = model.colorize(img)
        except ImageError as e:
            image_failed += 1
            error_line(f"hyperchroma colorize: error: {e}")
            continue
        except MemoryError:
            image_failed += 1
            error_line(f"hyperchroma colorize: error: '{p}': out of memory (too large for this machine's memory "
                       "limit); skipped")
            continue
        save_png_atomic(Image.fromarray(rgb), os.path.join(args.output, p.stem + ".png"))
        if detail is not None:
            conf = detail.confidence if detail.confidence is not None else (detail.status != Status.GRAY)
            plane = np.clip(np.rint(np.asarray(conf, np.float32) * 255), 0, 255).astype(np.uint8)
            save_png_atomic(Image.fromarray(plane), os.path.join(args.output, p.stem + ".confidence.png"))
            say(args, f"{p.name}: confidence "
                      f"{'n/a (uncalibrated model)' if detail.image_confidence is None else f'{detail.image_confidence:.2f}'}")
    if in_color and not args.quiet:
        said = f"'{in_color[0]}' is in color; its colors are" if len(in_color) == 1 else \
            f"{len(in_color)} of {len(paths)} images are in color ('{in_color[0]}', ...); their colors are"
        error_line(f"hyperchroma colorize: note: {said} replaced (only the luminance is used; --recolor "
                   "corrects colors instead)")
    if paths:
        say(args, f"wrote {len(paths) - image_failed} of {len(paths)} images to {args.output}")
    return 1 if video_failed or image_failed else 0
