"""`hyperchroma demo`: fit on frames shipped in the package, colorize held-back ones, report, write a sheet."""

from __future__ import annotations

import os
import time
from importlib import resources
from typing import Any, Dict

from .images import image_paths
from .model import fit
from .report import format_report, write_before_after


def demo_frames():
    root = resources.files("hyperchroma") / "demo_data"
    return image_paths([str(root / "train")]), image_paths([str(root / "test")])


def run_demo(out_dir: str = "hyperchroma-demo", progress: bool = True, echo=print) -> Dict[str, Any]:
    """Fit, colorize, evaluate and write ``out_dir``/comparison.png and ``out_dir``/model.hyc. Returns the report."""
    train, test = demo_frames()
    os.makedirs(out_dir, exist_ok=True)
    echo(f"fitting on {len(train)} keyframes shipped with hyperchroma (OpenCV's vtest.avi street scene)")
    t = time.perf_counter()
    model = fit(train, progress=progress)
    echo(f"fitted in {time.perf_counter() - t:.2f} s: {model}")
    model.save(os.path.join(out_dir, "model.hyc"))
    echo(f"colorizing the gray version of {len(test)} held-back frames and comparing with their true colors")
    report = model.evaluate(test, progress=progress)
    echo(format_report(report))
    sheet = os.path.join(out_dir, "comparison.png")
    write_before_after(model, test, sheet)
    echo(f"wrote {sheet} (before/after sheet) and {os.path.join(out_dir, 'model.hyc')}")
    return report
