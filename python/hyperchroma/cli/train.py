"""``hyperchroma train-classifier``: train the paper's CNN (or any formula-(1) net) and export it to ONNX."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import shlex


def add_parser(sub: Any) -> None:
    from ..training import DEFAULT_SPEC

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
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        import torch  # noqa: F401
    except ImportError:
        raise ImportError("training needs PyTorch: pip install 'hyperchroma[train]'") from None
    from .. import training as train

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
