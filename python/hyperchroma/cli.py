"""Command line: ``hyperchroma COMMAND ...`` (also ``python -m hyperchroma``).

Each command is one ``_parser_X(subparsers)`` that adds its parser (with ``set_defaults(func=_cmd_X)``) and one
``_cmd_X(args) -> int``; :data:`_PARSERS` lists the parser builders in the order ``--help`` shows them. Errors a
user can cause (``ValueError``, ``TypeError``, ``OSError``, a missing optional dependency) end the command with
one line on stderr and a non-zero exit status.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from typing import Any, Callable, Sequence

__all__ = ["main"]


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


# ------------------------------------------------------------------------------------------------ info
def _parser_info(sub: Any) -> None:
    p = sub.add_parser(
        "info", help="show versions, execution providers and a classifier's taps",
        description="Show the package and onnxruntime versions, whether CUDA is usable, the provider a classifier "
                    "runs on, and its taps (name, channels, stride), identity and provenance.")
    p.add_argument("--classifier", metavar="X.onnx", help="an ONNX CNN (default: the shipped classifier)")
    p.add_argument("--providers", type=_csv, metavar="P1,P2",
                   help="execution providers, best first (names or cpu/cuda; default: CUDA when usable, else CPU)")
    p.add_argument("--taps", type=_csv, metavar="T1,T2", help="tensor or node names to tap (default: every conv)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.set_defaults(func=_cmd_info)


def _cmd_info(args: argparse.Namespace) -> int:
    import onnxruntime as ort

    from . import __version__
    from .classifier import Classifier, available_providers, cuda_status, default_model_path

    clf = Classifier(args.classifier, providers=args.providers, taps=args.taps)
    usable, reason = cuda_status()
    meta = clf.metadata
    prov = json.loads(meta["provenance"]) if "provenance" in meta else None
    info = {
        "hyperchroma": __version__,
        "onnxruntime": ort.__version__,
        "onnxruntime_providers": ort.get_available_providers(),
        "usable_providers": available_providers(),
        "cuda": {"usable": usable, "reason": reason},
        "classifier": {
            "path": str(args.classifier or default_model_path()),
            "provider": clf.provider,
            "identity": clf.identity,
            "spec": meta.get("spec"),
            "input": clf.normalization,
            "min_size": clf.min_size,
            "channels": clf.channels,
            "taps": [t._asdict() for t in clf.taps],
            "provenance": prov,
        },
    }
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    c = info["classifier"]
    print(f"hyperchroma {__version__}, onnxruntime {ort.__version__}")
    print(f"providers: {', '.join(info['usable_providers'])} usable "
          f"(onnxruntime offers {', '.join(info['onnxruntime_providers'])})")
    print(f"CUDA: {'usable' if usable else 'not usable'} ({reason})")
    print(f"classifier: {c['path']}")
    print(f"  provider:  {c['provider']}")
    print(f"  identity:  {c['identity']}")
    if c["spec"]:
        print(f"  spec:      {c['spec']}")
    norm = c["input"]
    what = "Lab L/100" if norm["space"] == "L" else "gray [0,1]"
    print(f"  input:     ({what} - {norm['mean']}) / {norm['std']}, at least {c['min_size']}x{c['min_size']}")
    print(f"  taps:      {len(clf.taps)}, {c['channels']} hypercolumn channels")
    width = max(len(t.name) for t in clf.taps)
    for t in clf.taps:
        print(f"    {t.name:<{width}}  {t.channels:>5} channels  stride {t.stride}")
    if prov:
        print("  provenance: " + ", ".join(f"{k}={v}" for k, v in sorted(prov.items())))
    return 0


# ------------------------------------------------------------------------------------ train-classifier
def _parser_train_classifier(sub: Any) -> None:
    from .train import DEFAULT_SPEC

    p = sub.add_parser(
        "train-classifier", help="train the paper's CNN (or any formula-(1) net) and export it to ONNX",
        description="Train a CNN classifier of the paper's formula (1) with PyTorch (pip install "
                    "'hyperchroma[train]') and export it to ONNX with its conv layers' outputs as extra outputs. "
                    "Labels: a folder per class, or the images' own colors. Stops at --epochs, at --target-loss, or "
                    "when the training loss stops decreasing for --patience epochs; prints the test accuracy.")
    p.add_argument("images", nargs="*", metavar="IMAGES_OR_DIRS",
                   help="training images or directories (searched recursively); for --labels folder, root "
                        "directories with one subdirectory per class")
    p.add_argument("-o", "--output", required=True, metavar="OUT.onnx", help="the ONNX file to write")
    p.add_argument("--labels", choices=("pixel", "dominant", "folder"), default="pixel",
                   help="pixel: each pixel's Lab ab bin, predicted from the hypercolumn (default); dominant: each "
                        "image's dominant ab bin; folder: the class subdirectories")
    p.add_argument("--skimage", action="store_true",
                   help="also train on scikit-image's bundled color photos (needs scikit-image)")
    split = p.add_mutually_exclusive_group()
    split.add_argument("--test", nargs="+", metavar="IMAGES_OR_DIRS", help="held-out test images")
    split.add_argument("--test-every", type=int, default=0, metavar="N",
                       help="hold out every N-th input file sorted by name (index %% N == 0)")
    split.add_argument("--test-fraction", type=float, default=0.0, metavar="F",
                       help="hold out this share of the input images at random (seeded)")
    p.add_argument("--spec", default=DEFAULT_SPEC, help=f"the net, formula (1) (default: {DEFAULT_SPEC})")
    p.add_argument("--size", type=int, default=224, help="square training crop size (default: 224)")
    p.add_argument("--epochs", type=int, default=30, help="maximum number of epochs (default: 30)")
    p.add_argument("--target-loss", type=float, default=0.0, help="stop when the epoch's training loss is this low")
    p.add_argument("--patience", type=int, default=5,
                   help="stop after this many epochs without a --min-delta gain in training loss (0: never)")
    p.add_argument("--min-delta", type=float, default=1e-3, help="smallest loss decrease that counts (default 1e-3)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=2e-3, help="Adam learning rate (default: 2e-3)")
    p.add_argument("--ab-step", type=float, default=20.0, help="color labels: ab bin side (default: 20)")
    p.add_argument("--rebalance", type=float, default=0.5,
                   help="pixel labels: reweight rare colors, 0 (none) .. 1 (uniform) (default: 0.5)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--init-only", action="store_true",
                   help="export the randomly initialized net (seeded) without data or training")
    p.add_argument("--classes", type=int, default=10, help="--init-only: size of the FC head (default: 10)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar and no summary")
    p.set_defaults(func=_cmd_train_classifier)


def _cmd_train_classifier(args: argparse.Namespace) -> int:
    try:
        import torch  # noqa: F401
    except ImportError:
        raise ImportError("training needs PyTorch: pip install 'hyperchroma[train]'") from None
    from . import train

    command = "hyperchroma train-classifier " + shlex.join(args.argv)
    if args.init_only:
        if args.images or args.skimage or args.test:
            raise ValueError("--init-only takes no images")
        train.random_classifier(args.output, spec=args.spec, classes=args.classes, size=args.size, seed=args.seed,
                                provenance={"command": command})
        if not args.quiet:
            print(f"wrote the randomly initialized net (seed {args.seed}) to {args.output}", file=sys.stderr)
        return 0
    images: list[Any] = list(args.images)
    if args.skimage:
        if args.labels == "folder":
            raise ValueError("--skimage photos carry no class folders; use --labels pixel or dominant")
        images += [img for _, img in train.skimage_photos()]
    if not images:
        raise ValueError("no training images: give IMAGES_OR_DIRS or --skimage")
    result = train.train_classifier(
        images, args.output, labels=args.labels, test_images=args.test, test_every=args.test_every,
        test_fraction=args.test_fraction, spec=args.spec, size=args.size, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, target_loss=args.target_loss, patience=args.patience,
        min_delta=args.min_delta, ab_step=args.ab_step, rebalance=args.rebalance, seed=args.seed,
        threads=args.threads, progress=not args.quiet, log=(lambda s: None) if args.quiet else None,
        provenance={"command": command},
    )
    if not args.quiet:
        print(f"wrote {args.output} ({result.epochs_run} epochs, {result.seconds:.0f} s)", file=sys.stderr)
    return 0



# ---------------------------------------------------------------- colorizer commands
def _say(args: argparse.Namespace, text: str) -> None:
    if not getattr(args, "quiet", False):
        print(text)


def _cmd_fit(args) -> int:
    from .images import image_paths
    from .model import fit

    paths = image_paths(args.images)
    model = fit(paths, classifier=args.classifier, size=args.size, levels=args.levels, policy=args.policy,
                tolerance=args.tolerance, median_size=args.median, max_distance=args.max_distance,
                progress=not args.quiet)
    model.save(args.output)
    _say(args, f"fitted {len(paths)} images -> {args.output}: {len(model.table)} keys, "
               f"{model.table.memory_bytes() / 2**20:.1f} MiB table")
    return 0


def _cmd_colorize(args) -> int:
    import os
    from PIL import Image
    from tqdm import tqdm

    from .images import ImageError, image_paths
    from .model import load
    from .report import save_png_atomic

    if args.strength is not None and not args.recolor:
        raise ValueError("--strength only applies with --recolor")
    model = load(args.model)
    paths = image_paths(args.inputs)
    for p in paths:
        target = os.path.join(args.output, p.stem + ".png")
        if os.path.exists(target) and os.path.samefile(target, p):
            raise ImageError(f"writing {target} would overwrite the input '{p}'; choose another output folder")
    stems = {}
    for p in paths:
        if p.stem in stems:
            raise ImageError(f"inputs '{stems[p.stem]}' and '{p}' would both write {p.stem}.png; rename one")
        stems[p.stem] = p
    os.makedirs(args.output, exist_ok=True)
    failed = 0
    for p in tqdm(paths, desc="colorize", unit="img", disable=args.quiet or len(paths) < 2):
        try:
            rgb = model.recolor(p, 1.0 if args.strength is None else args.strength) if args.recolor else model.colorize(p)
        except ImageError as e:
            failed += 1
            print(f"hyperchroma colorize: error: {e}", file=sys.stderr)
            continue
        save_png_atomic(Image.fromarray(rgb), os.path.join(args.output, p.stem + ".png"))
    _say(args, f"wrote {len(paths) - failed} of {len(paths)} images to {args.output}")
    return 1 if failed else 0


def _cmd_evaluate(args) -> int:
    import json
    import os

    from .images import image_paths
    from .model import load
    from .report import format_report, write_before_after

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


def _cmd_demo(args) -> int:
    from .demo import run_demo

    run_demo(args.output, progress=not args.quiet, echo=lambda s: _say(args, s))
    return 0


def _parser_fit(sub: Any) -> None:
    p = sub.add_parser("fit", help="fit a colorization model on color images",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog="examples:\n  hyperchroma fit keyframes/ -o film.hyc\n  hyperchroma fit a.jpg b.jpg -o m.hyc --levels 4 --policy mark\n\nthe model file holds the classifier too: colorize needs nothing else.",
                       description="Fit a colorization model: run the classifier on each color training image, "
                                   "learn the quantization and store hypercolumn -> color pairs in the table.")
    p.add_argument("images", nargs="+", help="color training images or folders of them")
    p.add_argument("-o", "--output", required=True, help="model file to write (e.g. film.hyc)")
    p.add_argument("--classifier", help="ONNX classifier to use instead of the shipped one")
    p.add_argument("--size", type=int, default=224, help="long side the classifier works at (default 224)")
    p.add_argument("--levels", type=int, default=3, help="quantization levels per channel (default 3)")
    p.add_argument("--policy", choices=("mark", "mean", "vote"), default="mean",
                   help="keys seen with different colors: mark them unusable (the paper), keep the mean "
                        "(default) or the most frequent color")
    p.add_argument("--tolerance", type=float, default=12.0, help="ab distance that counts as a conflict (mark) "
                                                                  "or the color bin width (vote)")
    p.add_argument("--median", type=int, default=3, help="median filter size on the colors (odd, 1 = off; default 3)")
    p.add_argument("--max-distance", type=float, default=5.0,
                   help="leave a pixel gray when the nearest stored key is farther than this (default 5.0)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or summaries")
    p.set_defaults(func=_cmd_fit)


def _parser_colorize(sub: Any) -> None:
    p = sub.add_parser("colorize", help="colorize images with a fitted model",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog="examples:\n  hyperchroma colorize scans/ -m film.hyc -o colored/\n  hyperchroma colorize photo.jpg -m film.hyc -o out/ --recolor --strength 0.5\n\neach PNG is written whole or not at all; a bad input is reported and skipped (exit status 1).",
                       description="Colorize gray images (color ones from their luminance): one PNG per input, "
                                   "same file stem, in the output folder.")
    p.add_argument("inputs", nargs="+", help="images or folders of images")
    p.add_argument("-m", "--model", required=True, help="model file from `hyperchroma fit`")
    p.add_argument("-o", "--output", required=True, help="output folder (created if missing)")
    p.add_argument("--recolor", action="store_true",
                   help="color correction: recolor color images from the model, keeping their luminance")
    p.add_argument("--strength", type=float, default=None, help="with --recolor: 0 keeps the image's colors, "
                                                                "1 takes the model's (default 1)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or summaries")
    p.set_defaults(func=_cmd_colorize)


def _parser_evaluate(sub: Any) -> None:
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
    p.set_defaults(func=_cmd_evaluate)


def _parser_demo(sub: Any) -> None:
    p = sub.add_parser("demo", help="fit on frames shipped with hyperchroma, colorize held-back ones, report",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog="example:\n  hyperchroma demo -o demo/   # then look at demo/comparison.png",
                       description="Runs offline: fits on 8 keyframes shipped inside the package, colorizes 4 "
                                   "held-back frames from their luminance, prints metrics against the gray "
                                   "baseline and writes a before/after sheet.")
    p.add_argument("-o", "--output", default="hyperchroma-demo", help="folder for the sheet and model "
                                                                       "(default ./hyperchroma-demo)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or summaries")
    p.set_defaults(func=_cmd_demo)


# ------------------------------------------------------------------------------------------------ main
# Parser builders in --help order. A new command adds `_parser_X` (ending in set_defaults(func=_cmd_X)) and
# `_cmd_X(args) -> int` above, and its builder here.
_PARSERS: list[Callable[[Any], None]] = [
    _parser_demo,
    _parser_fit,
    _parser_colorize,
    _parser_evaluate,
    _parser_info,
    _parser_train_classifier,
]


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="hyperchroma",
        description="Colorize grayscale images with a CNN classifier's hypercolumns and a hash table.")
    parser.add_argument("--version", action="version", version=f"hyperchroma {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in _PARSERS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (0 on success, 1 on an error, 2 on a usage error)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    args.argv = argv[argv.index(args.command) + 1:] if args.command in argv else []
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"hyperchroma {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `hyperchroma info | head`: the reader left, nothing to report
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 141
    except (ValueError, TypeError, OSError, ImportError) as e:
        print(f"hyperchroma {args.command}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
