"""Bring your own CNN: real ONNX backbones fitted with default settings on a film protocol, against the
shipped classifier, in one process (ratios are what to read on a loaded machine).

Run: python benchmarks/bench_byo.py [--models resnet18,vgg11,...] [--onnx NAME=PATH ...] [--protocol film-vtest]

- torchvision backbones (random init: pretrained weights are not downloaded) are exported once with torch's
  default exporter (dynamo: weights in ``model.onnx.data`` beside it) into ``--cache``; torchvision must be
  installed (benchmark only; a CPU torch with the PyPI torchvision wheel needs the ``register_fake`` shim
  below, as the wheel's C++ ops are built for another torch);
- ``--onnx NAME=PATH``: any other ONNX file, e.g. the pretrained CNNs inside pip wheels
  (``pip download --no-deps rapidocr_onnxruntime ddddocr`` and unzip: ``ch_PP-OCRv4_det_infer.onnx``,
  ``common_old.onnx``, ``common_det.onnx``).

Per model: PSNR / AuC of ``Model.evaluate`` on the protocol's test frames (gray baseline beside), the
share of pixels colored, ms per frame of ``model.colorize`` on a full-size test frame (768x576 on the films)
and of the classifier's own forward pass at model size, the table's size, and the ratios to the shipped
classifier (quality difference in dB, time and table ratios: the issue's bars are >= -1 dB, <= 3x time with
the backbone's forward excluded when larger than the whole shipped pipeline, <= 2x table).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import hyperchroma as hc
from hyperchroma import core
from common import cpu_name, median_time, print_table
from hyperchroma.images import load_image
from hyperchroma.pipeline import prepare
from protocols import PROTOCOLS

TORCHVISION = ("resnet18", "vgg11", "mobilenet_v3_small", "efficientnet_b0", "convnext_tiny", "squeezenet1_1")


def _torchvision():
    from torch import library

    register_fake = library.register_fake
    library.register_fake = lambda *a, **k: (lambda f: f)  # the wheel's fake ops need its C++ ops: skip them
    try:
        import torchvision
    finally:
        library.register_fake = register_fake
    return torchvision


def export(name: str, cache: str) -> str:
    """The torchvision model ``name`` (random init, seed 0) as ONNX in ``cache`` (exported once)."""
    path = os.path.join(cache, name, f"{name}.onnx")
    if os.path.isfile(path):
        return path
    import torch

    tv = _torchvision()
    torch.manual_seed(0)
    net = getattr(tv.models, name)(weights=None).eval()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    x = torch.rand(1, 3, 224, 224)
    h, w = torch.export.Dim("h", min=32, max=2048), torch.export.Dim("w", min=32, max=2048)
    try:
        torch.onnx.export(net, (x,), path, dynamic_shapes={"x": {2: h, 3: w}}, external_data=True)
    except Exception as e:  # noqa: BLE001 - some models do not export with symbolic sizes: export them static
        print(f"{name}: dynamic export failed ({type(e).__name__}); exporting at 224x224", flush=True)
        torch.onnx.export(net, (x,), path, external_data=True)
    return path


def measure(name: str, clf: hc.Classifier, train, test, frame: np.ndarray, repeats: int) -> dict:
    t = time.perf_counter()
    model = hc.fit(train, classifier=clf)
    fit_s = time.perf_counter() - t
    r = model.evaluate(test)
    m = r["mean"]
    prepared = prepare(frame, model.settings.size)
    # each call as an unrelated image: the miss memo forgotten first (an atomic increment)
    colorize_s = median_time(lambda: (core.clear_lookup_memo(), model.colorize(frame)), repeats=repeats)
    forward_s = median_time(lambda: clf.run_reusing(prepared.gray), repeats=repeats)
    row = {"name": name, "channels": clf.channels, "taps": len(clf.taps),
           "candidates": len(clf.tap_choice) or len(clf.taps), "psnr": m["psnr"], "psnr_gray": m["psnr_gray"],
           "auc": m["auc"], "auc_gray": m["auc_gray"], "colored": m["colored"],
           "passed": f"{r['passed']}/{len(r['images'])}", "ms": colorize_s * 1e3, "forward_ms": forward_s * 1e3,
           "table_mb": model.table.memory_bytes() / 2**20, "keys": len(model.table), "fit_s": fit_s,
           "key_channels": model.quantizer.channels,
           "geometry": clf.geometry.describe()}
    print(row, flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default=",".join(TORCHVISION), help="torchvision models to export and fit")
    ap.add_argument("--onnx", action="append", default=[], metavar="NAME=PATH", help="another ONNX model")
    ap.add_argument("--protocol", default="film-vtest")
    ap.add_argument("--cache", default=os.path.join(os.path.expanduser("~"), ".cache", "hyperchroma-byo"))
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    train, test = PROTOCOLS[args.protocol]()
    frame = load_image(test[0])
    models = [(n, export(n, args.cache)) for n in args.models.split(",") if n]
    models += [tuple(s.split("=", 1)) for s in args.onnx]
    rows = [measure("shipped classifier", hc.Classifier(), train, test, frame, args.repeats)]
    base = rows[0]
    for name, path in models:
        try:
            clf = hc.Classifier(path)
        except (ValueError, TypeError) as e:
            print(f"{name}: refused: {e}", flush=True)
            rows.append({"name": name, "error": str(e)})
            continue
        rows.append(measure(name, clf, train, test, frame, args.repeats))
    table = []
    for r in rows:
        if "error" in r:
            table.append([r["name"], "refused: " + r["error"][:60]] + [""] * 9)
            continue
        # the bar's time ratio excludes the backbone's own forward when it is larger than the whole shipped run
        rest = r["ms"] - r["forward_ms"] if r["forward_ms"] > base["ms"] else r["ms"]
        table.append([r["name"], f"{r['channels']} of {r['taps']}/{r['candidates']} taps -> {r['key_channels']}",
                      f"{r['psnr']:.2f} ({r['psnr_gray']:.2f})", f"{r['psnr'] - base['psnr']:+.2f}",
                      f"{r['auc']:.4f} ({r['auc_gray']:.4f})", f"{100 * r['colored']:.0f}%", r["passed"],
                      f"{r['ms']:.0f} ({r['forward_ms']:.0f})", f"{rest / base['ms']:.1f}x",
                      f"{r['table_mb']:.1f} ({r['table_mb'] / base['table_mb']:.1f}x)", f"{r['fit_s']:.0f}"])
    h, w = frame.shape[:2]
    print(f"\n{args.protocol}: {len(train)} keyframes fit, {len(test)} test frames; default settings; "
          f"{w}x{h} frames; {cpu_name()}, {os.cpu_count()} cores (shared: times are noisy, read the ratios)")
    print_table(["model", "channels tapped -> key channels", "PSNR dB (gray)", "vs shipped dB", "AuC (gray)", "colored",
                 "pass", "ms/frame (forward)", "time ratio (bar)", "table MiB (ratio)", "fit s"], table)


if __name__ == "__main__":
    main()
