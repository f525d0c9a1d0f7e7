"""``hyperchroma fit``: fit a colorization model on color images."""

from __future__ import annotations

import argparse
from typing import Any

from ..settings import DEFAULT_TAP_CHANNELS
from .common import add_cluster_arguments, csv_floats, csv_list, say


def add_parser(sub: Any) -> None:
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
    p.add_argument("--taps", type=csv_list, metavar="T1,T2",
                   help="with --classifier: tensor or node names to tap (default: every conv with per-pixel maps)")
    p.add_argument("--mean", type=csv_floats, metavar="M[,M,M]",
                   help="with --classifier: its input normalization mean, on gray values in [0, 1]")
    p.add_argument("--std", type=csv_floats, metavar="S[,S,S]", help="with --classifier: its normalization std")
    p.add_argument("--max-tap-channels", type=int, default=None, metavar="N",
                   help="with --classifier: its default taps total at most N channels, before the key projection "
                        f"(0: no cap; default {DEFAULT_TAP_CHANNELS}); `hyperchroma info --classifier X` shows the choice")
    p.add_argument("--samples-per-image", type=int, default=4096,
                   help="hypercolumns sampled per image to learn the quantization (default 4096)")
    p.add_argument("--key-channels", type=int, default=56,
                   help="taps with more channels than this are projected to this many by PCA (0: never; default 56)")
    p.add_argument("--balance-taps", action=argparse.BooleanOptionalAction, default=True,
                   help="the key projection's PCA sees every tap scaled to the same variance (default: on; "
                        "--no-balance-taps for the plain PCA)")
    p.add_argument("--pca-channels", type=int, default=16,
                   help="the key projection's PCA keeps at most this many components (0: --key-channels; default 16)")
    p.add_argument("--gray-channels", type=int, default=8,
                   help="key channels of a --classifier's gray tap's gray value (0: that tap joins the PCA; default 8)")
    p.add_argument("--no-gray-tap", action="store_true",
                   help="with --classifier: do not add the gray tap (its gray input and 5x5 local features at stride 1)")
    p.add_argument("--calibration-folds", type=int, default=4,
                   help="k of the k-fold confidence calibration on the training images (0: off; default 4)")
    p.add_argument("--keyframes", action=argparse.BooleanOptionalAction, default=True,
                   help="keep the training images in the model as film keyframes, up to 64 MiB decoded "
                        "(default; --no-keyframes for a photo collection: a smaller file)")
    p.add_argument("--borders", action=argparse.BooleanOptionalAction, default=True,
                   help="leave training images' uniform edge bars (letterbox, thin black frames) out of the table, "
                        "and the model's colorizing leaves them gray (default; --no-borders for neither)")
    add_cluster_arguments(p)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or summaries")
    p.set_defaults(func=run)



def run(args) -> int:
    from ..images import image_paths
    from ..model import fit

    from ..classifier import Classifier

    if (args.taps or args.mean or args.std or args.max_tap_channels is not None or args.no_gray_tap) and \
            not args.classifier:
        raise ValueError("--taps, --mean, --std, --max-tap-channels and --no-gray-tap apply to a --classifier of "
                         "your own")
    clf = Classifier(args.classifier, taps=args.taps, mean=args.mean, std=args.std,
                     max_channels=args.max_tap_channels, gray_tap=not args.no_gray_tap) if args.classifier else None
    paths = image_paths(args.images)
    options = {"classifier": clf, "size": args.size, "levels": args.levels, "policy": args.policy,
               "tolerance": args.tolerance, "median_size": args.median, "max_distance": args.max_distance,
               "key_channels": args.key_channels, "calibration_folds": args.calibration_folds,
               "samples_per_image": args.samples_per_image, "balance_taps": args.balance_taps,
               "pca_channels": args.pca_channels, "gray_channels": args.gray_channels,
               "keep_keyframes": args.keyframes, "borders": args.borders, "progress": not args.quiet}
    if args.scheduler or args.workers:
        from ..distributed import client_for
        from ..distributed import fit as distributed_fit

        with client_for(args.scheduler, args.workers) as client:
            model = distributed_fit([str(p) for p in paths], client, **options)
    else:
        model = fit(paths, **options)
    model.save(args.output)
    say(args, f"fitted {len(paths)} images -> {args.output}: {len(model.table)} keys, "
               f"{model.table.memory_bytes() / 2**20:.1f} MiB table, {len(model.keyframes)} film keyframes")
    return 0
