"""The paper's test stage: colorize color test images from their gray version, compare with the truth.

The input is what a user has: the truth converted to gray the usual way (Pillow ``convert("L")``, ITU-R 601
luma), never the truth's own CIE lightness (which carries information a black-and-white image does not).

Per image: PSNR, AuC and colorfulness (ours and the truth's) beside the all-gray baseline; an image passes
when its AuC beats the gray baseline's by more than :data:`AUC_MARGIN` and at least :data:`MIN_COLORED` of
its pixels are actually colored (output that is nearly all gray does not pass on a rounding margin), and the
verdict says the model is fit for these images when at least ``pass_share`` of them pass.
"""

from __future__ import annotations

import numbers
import os
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from . import core, metrics
from .images import ImageError, ImageLike, expand_inputs, load_image, luma

MEAN_KEYS = ("psnr", "psnr_gray", "auc", "auc_gray", "colorfulness", "colorfulness_true", "colored")
#: An image passes when its AuC beats the gray baseline's by more than this...
AUC_MARGIN = 0.001
#: ...and at least this share of its pixels is actually colored (chroma above COLORED_CHROMA).
MIN_COLORED = 0.01
COLORED_CHROMA = 2.0


def check_share(pass_share: float) -> None:
    if isinstance(pass_share, bool) or not isinstance(pass_share, numbers.Real) or not 0 <= pass_share <= 1:
        raise ValueError(f"pass_share must be a number in [0, 1], got {pass_share!r}")


def evaluate(model: Any, images: Sequence[ImageLike], pass_share: float = 0.5, progress: bool = False,
             names: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Score ``model`` on color test images (see the module docstring); returns :func:`summarize`'s report."""
    from tqdm import tqdm

    images = expand_inputs(images)
    if not images:
        raise ValueError("evaluate needs at least one color image")
    if names is not None and len(names) != len(images):
        raise ValueError(f"names: {len(names)} names for {len(images)} images")
    check_share(pass_share)
    rows = []
    for i, im in enumerate(tqdm(images, desc="evaluate", unit="img", disable=not progress)):
        truth = load_image(im)
        name = names[i] if names else (os.fspath(im) if isinstance(im, (str, os.PathLike)) else f"image {i}")
        if truth.ndim != 3:
            raise ImageError(f"evaluate needs color images (the truth): {name} is grayscale")
        rows.append(score(model, truth, name))
    return summarize(rows, pass_share)


def score(model: Any, truth: np.ndarray, name: str) -> Dict[str, Any]:
    """One image's row: the model colorizes what a user has, the truth's gray version (``convert("L")``);
    metrics against the truth, beside the gray version itself as the baseline."""
    t = model.threads
    ab_true = core.rgb_to_lab(truth, threads=t)[1]
    y = luma(truth)
    result = model._colorize_loaded(y, model.colorize_settings, t)
    pred = result.rgb
    gray = np.repeat(y[..., None], 3, axis=2)
    ab_pred = core.rgb_to_lab(pred, threads=t)[1]
    ab_gray = core.rgb_to_lab(gray, threads=t)[1]
    r: Dict[str, Any] = {
        "name": name,
        "psnr": metrics.psnr(pred, truth),
        "psnr_gray": metrics.psnr(gray, truth),
        "auc": metrics.auc(ab_pred, ab_true),
        "auc_gray": metrics.auc(ab_gray, ab_true),
        "colorfulness": metrics.colorfulness(pred),
        "colorfulness_true": metrics.colorfulness(truth),
        "confidence": result.image_confidence,
        "colored": float(np.mean(np.hypot(ab_pred[..., 0], ab_pred[..., 1]) > COLORED_CHROMA)),
    }
    r["passed"] = bool(r["auc"] > r["auc_gray"] + AUC_MARGIN and r["colored"] >= MIN_COLORED)
    return r


def summarize(rows: List[Dict[str, Any]], pass_share: float = 0.5) -> Dict[str, Any]:
    """The report of per-image rows: means, pass counts and the verdict."""
    check_share(pass_share)
    mean: Dict[str, Any] = {k: float(np.mean([r[k] for r in rows])) for k in MEAN_KEYS}
    confs = [r["confidence"] for r in rows if r.get("confidence") is not None]
    mean["confidence"] = float(np.mean(confs)) if confs else None
    passed = sum(r["passed"] for r in rows)
    rate = passed / len(rows)
    fit_ok = rate >= pass_share
    return {
        "images": rows,
        "mean": mean,
        "passed": passed,
        "failed": len(rows) - passed,
        "pass_rate": rate,
        "verdict": "fit" if fit_ok else "not fit",
        "verdict_text": (f"the model is fit for these images: {passed} of {len(rows)} beat the gray baseline"
                         if fit_ok else
                         f"the model is not fit for these images: only {passed} of {len(rows)} beat the gray baseline"),
    }
