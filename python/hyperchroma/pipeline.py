"""The colorizing stages, each a function of arrays, in the order data flows through them:

``prepare`` (decoded image -> its gray version (601 luma, what ``convert("L")`` gives), model-size classifier
input) -> ``tap_keys`` (classifier taps -> fused packed keys) -> :func:`hyperchroma.lookup.lookup` (keys ->
ab, status, distance) -> ``smooth`` (median filter, then a guided filter of ab at model size, edges from the
gray image) -> ``compose`` (ab upsampled to the input's resolution and joined with its gray so that the
result converts back to exactly that gray -> RGB; ab on a 1-unit grid, see :func:`compose`).

:func:`colorize` runs them all for one image and returns a :class:`Colorization`.

Every stage takes ``ws``: a :class:`hyperchroma.workspace.Workspace` whose arrays it writes into instead of
allocating (``model.colorize``'s latency path, where only the RGB output is new), or None to allocate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

from . import core
from .classifier import Classifier
from .images import luma, model_gray, model_shape
from .calibration import Calibration, descriptor
from .lookup import Lookup, Status, lookup
from .quantizer import Quantizer
from .settings import ColorizeSettings
from .table import ColorTable
from .workspace import Workspace, take


@dataclass(frozen=True)
class Colorization:
    """The result of ``model.colorize(image, details=True)``.

    - ``rgb``: uint8 (H, W, 3) at the input's resolution; converted back to gray (``convert("L")``) it gives
      the input's gray version exactly;
    - ``status``: (h, w) uint8 at model size, a :class:`hyperchroma.Status` per pixel;
    - ``distance``: (h, w) float32, the L2 distance in levels to the key(s) whose color was used (0 exact,
      inf gray);
    - ``ab``: (h, w, 2) float32, the smoothed model-size Lab ab that was composed into ``rgb``;
    - ``confidence`` (h, w) and ``image_confidence`` in [0, 1]: how far the colors can be trusted
      (:mod:`hyperchroma.calibration`; ``None`` for a model fit without calibration). The chroma of ``rgb``
      and ``ab`` is already scaled by ``image_confidence`` (unless ``use_confidence=False``).
    """

    rgb: np.ndarray
    status: np.ndarray
    distance: np.ndarray
    ab: np.ndarray
    confidence: Optional[np.ndarray] = None
    image_confidence: Optional[float] = None


@dataclass(frozen=True)
class Prepared:
    """One decoded image ready for the stages: the image, its full-resolution gray version ``luma`` (H, W)
    uint8, the model-size ``shape`` (h, w) and the classifier's input ``gray`` (h, w) float32 in [0, 1]."""

    image: np.ndarray
    luma: np.ndarray
    shape: Tuple[int, int]
    gray: np.ndarray


def prepare(image: np.ndarray, size: int, ws: Optional[Workspace] = None) -> Prepared:
    """Stage 1: the gray version at full resolution and the model-size classifier input."""
    y = luma(image)
    shape = model_shape(image.shape[0], image.shape[1], size)
    return Prepared(image, y, shape, model_gray(image, shape, y, out=take(ws, "gray", shape, np.float32)))


def tap_keys(classifier: Classifier, quantizer: Quantizer, prepared: Prepared, threads: int = 1,
             ws: Optional[Workspace] = None) -> np.ndarray:
    """Stage 2: the classifier's taps (into this thread's reused buffers) -> packed keys (h*w, words)."""
    maps = classifier.run_reusing(prepared.gray, threads=threads)
    return quantizer.keys(maps, prepared.shape, threads, classifier.frame(*prepared.shape), ws=ws)


def smooth(ab: np.ndarray, gray: np.ndarray, settings: ColorizeSettings, threads: int = 1,
           ws: Optional[Workspace] = None) -> np.ndarray:
    """Stage 4: the median filter of the model-size ab (h, w, 2), then the guided filter with the model-size
    ``gray`` as guide (colors follow the image's edges instead of bleeding across them)."""
    if settings.median_size > 1:
        ab = core.median_filter(ab, settings.median_size, threads=threads, out=take(ws, "median", ab.shape, ab.dtype))
    if settings.guided_radius > 0:
        ab = core.guided_filter(gray, ab, settings.guided_radius, settings.guided_eps, threads=threads,
                                out=take(ws, "guided", ab.shape, np.float32))
    return ab


def compose(gray: np.ndarray, ab_small: np.ndarray, threads: int = 1, exact: bool = False,
            ws: Optional[Workspace] = None) -> np.ndarray:
    """Stage 5: ab (h, w, 2) upsampled bilinearly to the (H, W) of ``gray`` (uint8) and joined with it ->
    uint8 RGB whose ``convert("L")`` is ``gray`` exactly (chroma reduced where the gamut forces it).

    By default the upsampled ab are rounded to the nearest multiple of ``core.COMPOSE_GRID_STEP`` (1 ab unit:
    a CIE delta E of at most 0.71) and the answers come from a table filled as grid cells are met, in one pass
    without a full-size ab (``core.upsample_compose``, about 5x faster); ``exact=True`` composes the upsampled
    ab as they are (``core.compose_luma``). Both keep the gray exactly."""
    if ws is None:
        planar = np.ascontiguousarray(np.moveaxis(ab_small, -1, 0), dtype=np.float32)
    else:
        planar = ws.get("planar", (2,) + ab_small.shape[:2], np.float32)
        np.copyto(planar, np.moveaxis(ab_small, -1, 0))
    if not exact:
        return core.upsample_compose(gray, planar, threads=threads)
    H, W = gray.shape
    ab_full = core.upsample_bilinear(planar, H, W, threads=threads)
    return core.compose_luma(gray, ab_full, planar=True, threads=threads)


def model_colors(classifier: Classifier, quantizer: Quantizer, table: ColorTable, prepared: Prepared,
                 settings: ColorizeSettings, threads: int = 1,
                 ws: Optional[Workspace] = None) -> Tuple[np.ndarray, Lookup]:
    """Stages 2-4: the smoothed model-size ab (h, w, 2) and the per-pixel lookup."""
    keys = tap_keys(classifier, quantizer, prepared, threads, ws)
    found = lookup(table, keys, prepared.shape, settings, threads, ws=ws)
    h, w = prepared.shape
    return smooth(found.ab.reshape(h, w, 2), prepared.gray, settings, threads, ws), found


def confidence(calibration: Optional[Calibration], found: Lookup, shape: Tuple[int, int],
               settings: ColorizeSettings, ws: Optional[Workspace] = None,
               pixels: bool = True) -> Tuple[Optional[float], Optional[np.ndarray]]:
    """The image's confidence (None for an uncalibrated model) and the per-pixel confidence map (h, w): the
    image's where a pixel got a color, 0 where it stayed gray (None with ``pixels=False``). Below
    ``min_confidence`` both are 0."""
    if calibration is None:
        return None, None
    n = found.status.shape
    c = calibration.confidence(descriptor(found.status, found.distance, take(ws, "clipped", n, np.float32),
                                          take(ws, "gray_mask", n, np.bool_)))
    if c < settings.min_confidence:
        c = 0.0
    if not pixels:
        return c, None
    colored = (found.status != Status.GRAY).reshape(shape)
    return c, np.where(colored, np.float32(c), np.float32(0))


def colorize(classifier: Classifier, quantizer: Quantizer, table: ColorTable, prepared: Prepared,
             settings: ColorizeSettings, threads: int = 1, calibration: Optional[Calibration] = None) -> Colorization:
    """All stages for one prepared image; a calibrated model scales the chroma by its confidence."""
    ab, found = model_colors(classifier, quantizer, table, prepared, settings, threads)
    h, w = prepared.shape
    image_conf, pixel_conf = confidence(calibration, found, prepared.shape, settings)
    if image_conf is not None and settings.use_confidence and image_conf < 1.0:
        ab = ab * np.float32(image_conf)
    return Colorization(compose(prepared.luma, ab, threads), found.status.reshape(h, w),
                        found.distance.reshape(h, w), ab, pixel_conf, image_conf)


def colorize_rgb(classifier: Classifier, quantizer: Quantizer, table: ColorTable, image: np.ndarray, size: int,
                 settings: ColorizeSettings, threads: int, calibration: Optional[Calibration],
                 ws: Workspace) -> np.ndarray:
    """:func:`colorize`'s ``rgb`` (the same bytes) with every intermediate array in ``ws``: the latency path of
    ``model.colorize``, which allocates its output only."""
    prepared = prepare(image, size, ws)
    ab, found = model_colors(classifier, quantizer, table, prepared, settings, threads, ws)
    image_conf, _ = confidence(calibration, found, prepared.shape, settings, ws, pixels=False)
    if image_conf is not None and settings.use_confidence and image_conf < 1.0:
        ab *= np.float32(image_conf)  # (ab is ws's, or found's: both this call's own)
    return compose(prepared.luma, ab, threads, ws=ws)
