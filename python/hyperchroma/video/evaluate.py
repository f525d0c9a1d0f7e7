"""The test stage on a color film: N of its frames are the keyframes, the gray version of the whole film is
colorized, and the other frames are scored against their true colors, beside the gray baseline and the
truth's own steadiness.

Steadiness is the warp error (Lai et al. 2018, DESIGN.md): the mean over consecutive frames of
``||ab_t(x) - ab_{t-1}(x + f(x))||`` at model size, ``f`` the DIS flow (t -> t-1) computed on the color
truth's gray, pixels failing a forward-backward check excluded. The truth's own value is reported beside
ours: lower than the truth means frozen colors, higher means flicker.

The film is decoded twice (once to take the keyframes, once to colorize), and only the frames the
colorizer still holds are kept: memory does not grow with the film's length.
"""

from __future__ import annotations

import collections
import os
from typing import Any, Dict, Iterator, List, Optional, Sequence

import cv2
import numpy as np

from .. import core, metrics
from ..images import luma, model_shape
from . import propagate as pp
from .io import VideoError, open_input


def rgb_frames(src: Any) -> Iterator[np.ndarray]:
    """The frames of a video file as uint8 (H, W, 3) RGB, in display order (VideoError if unreadable)."""
    import av

    container, stream = open_input(src)
    try:
        for frame in container.decode(stream):
            yield frame.to_ndarray(format="rgb24")
    except (av.FFmpegError, OSError) as e:
        raise VideoError(f"{os.fspath(src)}: cannot decode ({e})") from None
    finally:
        container.close()


def keyframe_indices(n: int, count: int) -> List[int]:
    """``count`` frame indices evenly spread over ``n`` frames: the development protocol's (``step = n // count``
    from ``step // 2``) where that reaches the film's end, else the middles of ``count`` equal parts (the
    protocol's integer step leaves up to ``count - 1`` frames at the end without a keyframe: 10 of 40 for 15)."""
    if count < 1:
        raise ValueError(f"keyframes: expected at least 1, got {count}")
    step = max(1, n // count)
    if n - count * step <= step // 2:
        return list(range(step // 2, n, step))[:count]
    return sorted({min(n - 1, int((i + 0.5) * n / count)) for i in range(count)})


def _small(rgb: np.ndarray, shape: Any) -> np.ndarray:
    h, w = shape
    return cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)


def evaluate_video(src: Any, model: Any = None, keyframes: int = 8, every: int = 2, progress: bool = False,
                   fit_options: Optional[Dict[str, Any]] = None, **film_options: Any) -> Dict[str, Any]:
    """Fit on ``keyframes`` evenly spread frames of the color film ``src`` (with ``model``'s classifier and
    fit settings when a model is given), colorize its gray version, and score every ``every``-th non-key
    frame. Returns a report: ``mean`` (psnr, psnr_gray, auc, auc_gray, colorfulness, colorfulness_true,
    warp, warp_true), ``frames``, ``keyframes`` (indices) and ``tested``."""
    from tqdm import tqdm

    from ..model import fit

    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ValueError(f"every: expected an integer >= 1, got {every!r}")
    n = 0
    for _ in rgb_frames(src):
        n += 1
    if n < 2:
        raise VideoError(f"{os.fspath(src)}: {n} frame(s); a film to evaluate needs at least 2")
    if keyframes >= n:
        raise ValueError(f"keyframes: {keyframes} keyframes leave nothing to test in {n} frames")
    key_idx = keyframe_indices(n, keyframes)
    wanted = set(key_idx)
    keys = [f for i, f in enumerate(rgb_frames(src)) if i in wanted]
    if max(metrics.colorfulness(k) for k in keys) < 1.0:
        raise VideoError(f"{os.fspath(src)}: its keyframes have no color (a gray film?); evaluating a film needs "
                         "its color version")
    options = dict(fit_options or {})
    if model is not None:
        fs = model.fit_settings
        options = dict({k: getattr(fs, k) for k in ("size", "levels", "policy", "tolerance", "vote_bin")}, **options)
        options.setdefault("classifier", model.classifier)
    m = fit(keys, **options)

    truths: collections.deque = collections.deque()

    def grays() -> Iterator[np.ndarray]:
        for rgb in rgb_frames(src):
            truths.append(rgb)
            yield luma(rgb)

    rows: List[Dict[str, float]] = []
    warp, warp_true = [], []
    dis = pp.Flow("medium")
    prev = None  # (truth gray small, our ab small, true ab small)
    outputs = m.colorize_frames(grays(), keyframes=keys, **film_options)
    for t, out in enumerate(tqdm(outputs, total=n, desc="evaluate", unit="frame", disable=not progress)):
        truth = truths.popleft()
        shape = model_shape(truth.shape[0], truth.shape[1], m.fit_settings.size)
        ab_true = core.rgb_to_lab(truth)[1]
        ab_out = core.rgb_to_lab(out)[1]
        if t not in wanted and t % every == 0:
            y = luma(truth)
            gray = np.repeat(y[..., None], 3, axis=2)
            rows.append({"psnr": metrics.psnr(out, truth), "psnr_gray": metrics.psnr(gray, truth),
                         "auc": metrics.auc(ab_out, ab_true), "auc_gray": metrics.auc(core.rgb_to_lab(gray)[1], ab_true),
                         "colorfulness": metrics.colorfulness(out), "colorfulness_true": metrics.colorfulness(truth)})
        g = _small(luma(truth), shape)
        cur = (g, _small(ab_out, shape), _small(ab_true, shape))
        if prev is not None:
            back, fwd = dis(g, prev[0]), dis(prev[0], g)
            ok = pp.consistency(back, fwd) > 0
            if ok.mean() > 0.2:  # a cut or a frame the flow cannot follow says nothing about steadiness
                for dst, i in ((warp, 1), (warp_true, 2)):
                    e = cur[i] - pp.warp(prev[i], back)
                    d = np.sqrt(e[..., 0] ** 2 + e[..., 1] ** 2)
                    dst.append(float(d[ok].mean()))
        prev = cur
    if not rows:
        raise ValueError(f"no frame to test: every {every} of {n} frames, keyframes at {key_idx}")
    mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    mean["warp"] = float(np.mean(warp)) if warp else float("nan")
    mean["warp_true"] = float(np.mean(warp_true)) if warp_true else float("nan")
    return {"name": os.fspath(src), "frames": n, "keyframes": key_idx, "tested": len(rows), "mean": mean}


def format_video_report(report: Dict[str, Any]) -> str:
    """The video report as a few readable lines."""
    m = report["mean"]
    return "\n".join([
        f"{report['name']}: {report['frames']} frames, keyframes at {report['keyframes']}, {report['tested']} tested",
        f"PSNR {m['psnr']:.2f} dB (gray {m['psnr_gray']:.2f}), AuC {m['auc']:.4f} (gray {m['auc_gray']:.4f}), "
        f"colorfulness {m['colorfulness']:.1f} (truth {m['colorfulness_true']:.1f})",
        f"warp error {m['warp']:.2f} (truth {m['warp_true']:.2f}; lower than the truth: frozen colors, "
        "higher: flicker)",
    ])


__all__: Sequence[str] = ["evaluate_video", "format_video_report", "rgb_frames", "keyframe_indices"]
