"""Human-facing output of an evaluation: a readable table and a before/after comparison sheet (PNG)."""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw

from ._fs import atomic_write


def format_report(report: Dict[str, Any]) -> str:
    """The evaluation as a plain-text table: each image, the means, and the verdict."""
    head = (f"{'image':<32} {'PSNR':>7} {'gray':>7} {'AuC':>7} {'gray':>7} {'color.':>7} {'truth':>7} "
            f"{'conf.':>5}  result")
    lines = [head, "-" * len(head)]

    def row(name, r, result):
        conf = r.get("confidence")
        return (f"{name[-32:]:<32} {r['psnr']:7.2f} {r['psnr_gray']:7.2f} {r['auc']:7.4f} {r['auc_gray']:7.4f} "
                f"{r['colorfulness']:7.1f} {r['colorfulness_true']:7.1f} {'' if conf is None else f'{conf:5.2f}':>5}"
                f"  {result}")

    for r in report["images"]:
        lines.append(row(os.path.basename(r["name"]), r, "pass" if r["passed"] else "FAIL"))
    lines.append("-" * len(head))
    lines.append(row("mean", report["mean"], ""))
    n = report["passed"] + report["failed"]
    lines.append(f"passed {report['passed']} of {n} ({100 * report['pass_rate']:.0f}%), failed {report['failed']} "
                 f"({100 * (1 - report['pass_rate']):.0f}%)")
    lines.append(f"verdict: {report['verdict_text']}")
    return "\n".join(lines)


def comparison_sheet(rows: Sequence[Sequence[np.ndarray]], labels: Sequence[str], path: str,
                     names: Optional[List[str]] = None, width: int = 320) -> None:
    """Write a PNG grid: one row per image, one column per label (e.g. input, colorized, truth)."""
    tiles: List[List[Image.Image]] = []
    for row in rows:
        h, w = row[0].shape[:2]
        th = max(1, round(h * width / w))
        tiles.append([Image.fromarray(a if a.ndim == 3 else np.repeat(a[..., None], 3, 2)).resize((width, th))
                      for a in row])
    pad, label_h = 6, 18
    total_h = label_h + sum(r[0].height + pad + (label_h if names else 0) for r in tiles)
    sheet = Image.new("RGB", (pad + len(labels) * (width + pad), total_h + pad), "white")
    draw = ImageDraw.Draw(sheet)
    for j, lab in enumerate(labels):
        draw.text((pad + j * (width + pad) + 4, 3), lab, fill="black")
    y = label_h
    for i, tile_row in enumerate(tiles):
        if names:
            draw.text((pad + 4, y + 2), names[i], fill="black")
            y += label_h
        for j, im in enumerate(tile_row):
            sheet.paste(im, (pad + j * (width + pad), y))
        y += tile_row[0].height + pad
    save_png_atomic(sheet, path)


def write_before_after(model: Any, paths: Sequence[Any], path: str) -> None:
    """The before/after sheet of color test images: their gray version, the model's colorization of it,
    and the truth, one row per image."""
    from .images import load_image, luma

    rows = []
    for p in paths:
        truth = load_image(p)
        gray = luma(truth)
        rows.append([gray, model.colorize(gray), truth])
    comparison_sheet(rows, ["input (gray)", "hyperchroma", "truth"], path,
                     names=[os.path.basename(os.fspath(p)) for p in paths])


def save_png_atomic(img: Image.Image, path: str) -> None:
    """Save a PNG through a temporary file and a rename: never a partial file under `path`."""
    with atomic_write(path) as f:
        img.save(f, format="PNG")
