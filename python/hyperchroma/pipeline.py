"""The colorizing stages, each a function of arrays, in the order data flows through them:

``prepare`` (decoded image -> its gray version (601 luma, what ``convert("L")`` gives), model-size classifier
input) -> ``tap_keys`` (classifier taps -> fused packed keys) -> :func:`hyperchroma.lookup.lookup` (keys ->
ab, status, distance) -> ``smooth`` (median filter, then a guided filter of ab at model size, edges from the
gray image) -> ``compose`` (ab upsampled to the input's resolution and joined with its gray so that the
result converts back to exactly that gray -> RGB; ab on a 1-unit grid, see :func:`compose`).

:func:`colorize` runs them all for one image and returns a :class:`Colorization`.

**Edge bars** (letterbox and pillarbox bars, thin black frames: :mod:`hyperchroma.borders`): ``prepare`` finds
them and prepares the picture inside as an image of its own (``Prepared.content``); with
``settings.borders`` (the default) ``model_colors`` runs the classifier and the lookup on that picture only,
at its own model size, and pastes the result into the full frame's model-size grid with the bars neutral (ab
0, status gray); ``confidence`` is the picture's own; ``colorize`` composes the picture from its own ab and
leaves the bars gray. The shapes are those of the full frame throughout, so callers that only know
``prepare`` / ``model_colors`` / ``confidence`` (the film engine) get the same contract. An image without bars
takes exactly the path it took before.

Every stage takes ``ws``: a :class:`hyperchroma.workspace.Workspace` whose arrays it writes into instead of
allocating (``model.colorize``'s latency path, where only the RGB output is new), or None to allocate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

from . import core
from .borders import Box, content_box
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
    - ``ab``: (h, w, 2) float32, the smoothed model-size Lab ab that was composed into ``rgb`` (an image with
      edge bars: its picture's ab pasted into the frame's grid, 0 in the bars; ``rgb``'s picture is composed
      from the picture's own model-size ab, its bars are gray);
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
    uint8, the model-size ``shape`` (h, w) and the classifier's input ``gray`` (h, w) float32 in [0, 1].

    An image with edge bars also has ``box`` (the picture inside them, full-resolution rows and columns) and
    ``content``: that picture prepared on its own (its crop, luma, model size and classifier input), which the
    stages use instead of the whole image when ``settings.borders`` is on."""

    image: np.ndarray
    luma: np.ndarray
    shape: Tuple[int, int]
    gray: np.ndarray
    box: Optional[Box] = None
    content: Optional["Prepared"] = None


def prepare(image: np.ndarray, size: int, ws: Optional[Workspace] = None, borders: bool = True) -> Prepared:
    """Stage 1: the gray version at full resolution and the model-size classifier input; with ``borders``
    also the picture inside any edge bars (:func:`hyperchroma.borders.content_box`), prepared on its own."""
    y = luma(image)
    shape = model_shape(image.shape[0], image.shape[1], size)
    gray = model_gray(image, shape, y, out=take(ws, "gray", shape, np.float32))
    if borders:
        box = content_box(y)
        if not box.is_full(*y.shape):
            rows, cols = slice(box.top, box.bottom), slice(box.left, box.right)
            cy = np.ascontiguousarray(y[rows, cols])
            cshape = model_shape(cy.shape[0], cy.shape[1], size)
            inner = Prepared(image[rows, cols], cy, cshape,
                             model_gray(cy, cshape, cy, out=take(ws, "content_gray", cshape, np.float32)))
            return Prepared(image, y, shape, gray, box, inner)
    return Prepared(image, y, shape, gray)


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


def _sample_grid(n: int, size: int, start: int, stop: int, inner: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray,
                                                                          np.ndarray, np.ndarray]:
    """Where the ``n`` model-size pixels along a side of ``size`` full-resolution pixels fall in a picture
    ``start:stop`` of it that has ``inner`` model-size pixels: (inside mask, i0, i1, weight of i1, nearest),
    half-pixel centres, clamped at the picture's edges."""
    centre = (np.arange(n, dtype=np.float64) + 0.5) * (size / n)
    inside = (centre >= start) & (centre < stop)
    pos = np.clip((centre - start) * (inner / (stop - start)) - 0.5, 0, inner - 1)
    i0 = np.floor(pos).astype(np.intp)
    i1 = np.minimum(i0 + 1, inner - 1)
    nearest = np.minimum(np.floor(pos + 0.5).astype(np.intp), inner - 1)
    return inside, i0, i1, (pos - i0).astype(np.float32), nearest


def paste(ab: np.ndarray, found: Lookup, inner: Tuple[int, int], box: Box, full: Tuple[int, int],
          shape: Tuple[int, int], ws: Optional[Workspace] = None) -> Tuple[np.ndarray, Lookup]:
    """The picture's model-size ab (hc, wc, 2) and lookup (``inner`` shape) put into the full frame's model-size
    grid ``shape`` (h, w) (the frame is ``full`` (H, W) at full resolution, the picture its ``box``): ab
    bilinearly resampled (half-pixel centres), status and distance from the nearest picture pixel; a pixel
    whose centre lies in a bar is neutral (ab 0, :attr:`Status.GRAY`, distance inf). The lookup returned keeps
    the picture's own as ``content`` (what :func:`confidence` reads)."""
    h, w = shape
    hc, wc = inner
    ry, y0, y1, fy, ny = _sample_grid(h, full[0], box.top, box.bottom, hc)
    rx, x0, x1, fx, nx = _sample_grid(w, full[1], box.left, box.right, wc)
    rows, cols = np.flatnonzero(ry), np.flatnonzero(rx)
    out = take(ws, "full_ab", (h, w, 2), np.float32)
    out = np.zeros((h, w, 2), np.float32) if out is None else out
    out.fill(0)
    a = ab.reshape(hc, wc, 2)
    wy, wx = fy[rows][:, None, None], fx[cols][None, :, None]
    top = a[y0[rows]][:, x0[cols]] * (1 - wx) + a[y0[rows]][:, x1[cols]] * wx
    bottom = a[y1[rows]][:, x0[cols]] * (1 - wx) + a[y1[rows]][:, x1[cols]] * wx
    if rows.size and cols.size:
        out[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1] = top * (1 - wy) + bottom * wy
    pick = (ny[rows][:, None] * wc + nx[cols][None, :]).reshape(-1)
    where = (rows[:, None] * w + cols[None, :]).reshape(-1)
    status = take(ws, "full_status", (h * w,), np.uint8)
    status = np.empty(h * w, np.uint8) if status is None else status
    status.fill(Status.GRAY)
    status[where] = found.status[pick]
    distance = take(ws, "full_distance", (h * w,), np.float32)
    distance = np.empty(h * w, np.float32) if distance is None else distance
    distance.fill(np.inf)
    distance[where] = found.distance[pick]
    raw = np.zeros((h * w, 2), np.float32)
    raw[where] = found.ab[pick]
    return out, Lookup(raw, status, distance, content=found)


def _colors(classifier: Classifier, quantizer: Quantizer, table: ColorTable, prepared: Prepared,
            settings: ColorizeSettings, threads: int = 1,
            ws: Optional[Workspace] = None) -> Tuple[np.ndarray, Lookup, Optional[np.ndarray]]:
    """:func:`model_colors`, and the picture's own smoothed ab when the frame has bars (else None)."""
    inner = prepared.content if settings.borders else None
    if inner is None or prepared.box is None:
        keys = tap_keys(classifier, quantizer, prepared, threads, ws)
        found = lookup(table, keys, prepared.shape, settings, threads, ws=ws)
        h, w = prepared.shape
        return smooth(found.ab.reshape(h, w, 2), prepared.gray, settings, threads, ws), found, None
    ab_inner, found_inner, _ = _colors(classifier, quantizer, table, inner, settings, threads, ws)
    ab, found = paste(ab_inner, found_inner, inner.shape, prepared.box, prepared.luma.shape, prepared.shape, ws)
    return ab, found, ab_inner


def model_colors(classifier: Classifier, quantizer: Quantizer, table: ColorTable, prepared: Prepared,
                 settings: ColorizeSettings, threads: int = 1,
                 ws: Optional[Workspace] = None) -> Tuple[np.ndarray, Lookup]:
    """Stages 2-4: the smoothed model-size ab (h, w, 2) and the per-pixel lookup, at the image's model size
    ``prepared.shape``. An image with edge bars (and ``settings.borders``) is colored from its picture alone
    and the bars are left neutral (:func:`paste`)."""
    ab, found, _ = _colors(classifier, quantizer, table, prepared, settings, threads, ws)
    return ab, found


def _compose(prepared: Prepared, ab: np.ndarray, ab_inner: Optional[np.ndarray], threads: int,
             ws: Optional[Workspace] = None) -> np.ndarray:
    """:func:`compose` of the image; with bars (``ab_inner`` the picture's own ab) the picture is composed
    from its own ab at its own model size and the bars stay gray (R = G = B = their luma)."""
    if ab_inner is None or prepared.box is None or prepared.content is None:
        return compose(prepared.luma, ab, threads, ws=ws)
    b = prepared.box
    rgb = np.empty(prepared.luma.shape + (3,), np.uint8)
    rgb[...] = prepared.luma[..., None]
    rgb[b.top:b.bottom, b.left:b.right] = compose(prepared.content.luma, ab_inner, threads, ws=ws)
    return rgb


def confidence(calibration: Optional[Calibration], found: Lookup, shape: Tuple[int, int],
               settings: ColorizeSettings, ws: Optional[Workspace] = None,
               pixels: bool = True) -> Tuple[Optional[float], Optional[np.ndarray]]:
    """The image's confidence (None for an uncalibrated model) and the per-pixel confidence map (h, w): the
    image's where a pixel got a color, 0 where it stayed gray (None with ``pixels=False``). Below
    ``min_confidence`` both are 0."""
    if calibration is None:
        return None, None
    own = found if found.content is None else found.content  # an image with bars: its picture's own
    n = own.status.shape
    c = calibration.confidence(descriptor(own.status, own.distance, take(ws, "clipped", n, np.float32),
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
    ab, found, ab_inner = _colors(classifier, quantizer, table, prepared, settings, threads)
    h, w = prepared.shape
    image_conf, pixel_conf = confidence(calibration, found, prepared.shape, settings)
    if image_conf is not None and settings.use_confidence and image_conf < 1.0:
        ab = ab * np.float32(image_conf)
        ab_inner = None if ab_inner is None else ab_inner * np.float32(image_conf)
    return Colorization(_compose(prepared, ab, ab_inner, threads), found.status.reshape(h, w),
                        found.distance.reshape(h, w), ab, pixel_conf, image_conf)


def colorize_rgb(classifier: Classifier, quantizer: Quantizer, table: ColorTable, image: np.ndarray, size: int,
                 settings: ColorizeSettings, threads: int, calibration: Optional[Calibration],
                 ws: Workspace) -> np.ndarray:
    """:func:`colorize`'s ``rgb`` (the same bytes) with every intermediate array in ``ws``: the latency path of
    ``model.colorize``, which allocates its output only."""
    prepared = prepare(image, size, ws, borders=settings.borders)
    if prepared.content is not None:  # an image with bars: the picture's ab only (the frame's are not needed)
        ab, found = model_colors(classifier, quantizer, table, prepared.content, settings, threads, ws)
    else:
        ab, found = model_colors(classifier, quantizer, table, prepared, settings, threads, ws)
    image_conf, _ = confidence(calibration, found, ab.shape[:2], settings, ws, pixels=False)
    if image_conf is not None and settings.use_confidence and image_conf < 1.0:
        ab *= np.float32(image_conf)  # (ab is ws's, or found's: both this call's own)
    if prepared.content is not None:
        return _compose(prepared, ab, ab, threads, ws)
    return compose(prepared.luma, ab, threads, ws=ws)
