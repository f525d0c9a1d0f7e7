"""``hyperchroma info``: versions, execution providers and a classifier's taps."""

from __future__ import annotations

import argparse
from typing import Any

import json

from ..settings import DEFAULT_TAP_CHANNELS
from .common import csv_floats, csv_list


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "info", help="show versions, execution providers and a classifier's taps",
        description="Show the package and onnxruntime versions, whether CUDA is usable, the provider a classifier "
                    "runs on, and its taps (name, channels, stride), identity and provenance.")
    p.add_argument("--classifier", metavar="X.onnx", help="an ONNX CNN (default: the shipped classifier)")
    p.add_argument("--providers", type=csv_list, metavar="P1,P2",
                   help="execution providers, best first (names or cpu/cuda; default: CUDA when usable, else CPU)")
    p.add_argument("--taps", type=csv_list, metavar="T1,T2",
                   help="tensor or node names to tap (default: every conv with per-pixel maps, see the choice shown)")
    p.add_argument("--mean", type=csv_floats, metavar="M[,M,M]",
                   help="the classifier's input normalization mean, on gray values in [0, 1]")
    p.add_argument("--std", type=csv_floats, metavar="S[,S,S]", help="the classifier's normalization std")
    p.add_argument("--max-tap-channels", type=int, default=None, metavar="N",
                   help=f"default taps total at most N channels (0: no cap; default {DEFAULT_TAP_CHANNELS})")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import onnxruntime as ort

    from .._version import __version__
    from ..classifier import Classifier, available_providers, cuda_status, default_model_path

    clf = Classifier(args.classifier, providers=args.providers, taps=args.taps, mean=args.mean, std=args.std,
                     max_channels=args.max_tap_channels)
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
            "geometry": {"multiple": clf.geometry.multiple,
                         "fixed": list(clf.geometry.fixed) if clf.geometry.fixed else None},
            "layout": meta.get("source_layout", "NCHW"),
            "input_type": meta.get("source_type", "float32"),
            "tap_choice": [c._asdict() for c in clf.tap_choice],
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
    print(f"  sizes:     {clf.geometry.describe()}; {clf.geometry.describe_batch()}")
    print(f"  layout:    {c['layout']}, {c['input_type']} input")
    print(f"  taps:      {len(clf.taps)}, {c['channels']} hypercolumn channels")
    width = max(len(t.name) for t in clf.taps)
    for t in clf.taps:
        print(f"    {t.name:<{width}}  {t.channels:>5} channels  stride {t.stride}")
    if clf.tap_choice:
        chosen = sum(ch.chosen for ch in clf.tap_choice)
        print(f"  choice:    {chosen} of {len(clf.tap_choice)} candidate taps chosen")
        width = max(len(ch.name) for ch in clf.tap_choice)
        for ch in clf.tap_choice:
            mark = "chosen " if ch.chosen else "skipped"
            print(f"    {mark} {ch.name:<{width}}  {ch.channels:>5} ch  stride {ch.stride:>3}  {ch.reason}")
    if prov:
        print("  provenance: " + ", ".join(f"{k}={v}" for k, v in sorted(prov.items())))
    return 0
