"""Colorization quality on the development protocols, against the all-gray baseline.

Run: python benchmarks/bench_quality.py [--policies mean,mark,vote] [--levels 2,3,4] [--protocols ...]

Every test image is colorized from its gray version (``convert("L")``), what a user has (``Model.evaluate``).
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from common import print_table  # noqa: E402
from protocols import PROTOCOLS  # noqa: E402

import hyperchroma as hc  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--protocols", default="film-vtest,film-tree,photos",
                    help="names from protocols.py; 'cross' for the six cross-set runs (fit on one set, test another)")
    ap.add_argument("--policies", default="mean")
    ap.add_argument("--levels", default="3")
    ap.add_argument("--classifier", default=None)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--max-distance", type=float, default=None)
    ap.add_argument("--median", type=int, default=None)
    ap.add_argument("--max-scan", type=int, default=None)
    ap.add_argument("--seed-radius", type=int, default=None)
    ap.add_argument("--exact", action="store_true", help="exact nearest keys (slow)")
    ap.add_argument("--no-one-step", action="store_true", help="skip the one-step probes")
    ap.add_argument("--key-channels", type=int, default=None, help="PCA key channels for wide classifiers (0: none)")
    ap.add_argument("--guided", default=None, metavar="R[:EPS],...",
                    help="guided filter settings to compare on one fitted model, e.g. 0,1:1e-3,2:1e-3")
    args = ap.parse_args()
    clf = hc.Classifier(args.classifier) if args.classifier else hc.Classifier()
    extra = {}
    if args.max_distance is not None:
        extra["max_distance"] = args.max_distance
    if args.median is not None:
        extra["median_size"] = args.median
    if args.max_scan is not None:
        extra["max_scan"] = args.max_scan
    if args.seed_radius is not None:
        extra["seed_radius"] = args.seed_radius
    if args.exact:
        extra["exact"] = True
    if args.no_one_step:
        extra["one_step"] = False
    if args.key_channels is not None:
        extra["key_channels"] = args.key_channels
    rows = []
    from protocols import CROSS

    names = [n for p in args.protocols.split(",") for n in (CROSS if p == "cross" else [p])]
    worst = []
    for proto in names:
        train, test = PROTOCOLS[proto]()
        for policy in args.policies.split(","):
            for levels in map(int, args.levels.split(",")):
                t = time.perf_counter()
                model = hc.fit(train, classifier=clf, size=args.size, levels=levels, policy=policy, **extra)
                t_fit = time.perf_counter() - t
                variants = [("", model)]
                if args.guided:
                    variants = []
                    for g in args.guided.split(","):
                        r_, _, e_ = g.partition(":")
                        kw = {"guided_radius": int(r_)}
                        if e_:
                            kw["guided_eps"] = float(e_)
                        variants.append((g, model.with_settings(**kw)))
                for label, variant in variants:
                    r = variant.evaluate(test)
                    m = r["mean"]
                    worst.append((proto, min(i["psnr"] - i["psnr_gray"] for i in r["images"])))
                    conf = "-" if m.get("confidence") is None else f"{m['confidence']:.2f}"
                    rows.append([proto + (f" guided {label}" if label else ""), policy, levels,
                                 f"{m['psnr']:.2f} ({m['psnr_gray']:.2f})",
                                 f"{m['auc']:.4f} ({m['auc_gray']:.4f})",
                                 f"{m['colorfulness']:.1f} ({m['colorfulness_true']:.1f})",
                                 f"{r['passed']}/{len(r['images'])}", conf,
                                 f"{min(i['psnr'] - i['psnr_gray'] for i in r['images']):+.2f}",
                                 len(model.table), f"{t_fit:.1f}"])
                    print(rows[-1], flush=True)
    print(f"\nclassifier {clf.identity[:12]}, size {args.size}, {extra or 'default settings'}")
    print_table(["protocol", "policy", "levels", "PSNR dB (gray)", "AuC (gray)", "colorfulness (truth)",
                 "pass", "confidence", "worst image vs gray dB", "keys", "fit s"], rows)


if __name__ == "__main__":
    main()
