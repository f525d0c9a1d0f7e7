"""Motion kernels at model size: DIS optical flow, backward warping, forward-backward consistency.

Conventions: a flow ``f`` from frame ``a`` to frame ``b`` (``flow(a, b)``) is (h, w, 2) float32 with
``a(x) ~ b(x + f(x))`` (x = (col, row)). ``warp(B, f)`` samples ``B`` at ``x + f(x)`` bilinearly, so it
brings a plane of frame ``b`` onto frame ``a``'s pixels. All of this runs at model size (about 224 x 168),
where a DIS flow costs about a millisecond.
"""

from __future__ import annotations

from typing import Optional, Tuple

import cv2
import numpy as np

#: name -> (OpenCV DIS preset, finest pyramid level or None for the preset's own). "fine" (the default) is DIS
#: "fast" refined down to half model size (level 1) instead of a quarter (level 2): at model size a quarter is
#: a 56-column flow field, too coarse for textured or zooming content, and refining one level more costs about
#: 0.6 ms a flow (about 1.1 ms against 0.5 at 224x164) where "medium" costs 1.8 ms for no better colors.
PRESETS = {"ultrafast": (cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, None),
           "fast": (cv2.DISOPTICAL_FLOW_PRESET_FAST, None),
           "fine": (cv2.DISOPTICAL_FLOW_PRESET_FAST, 1),
           "medium": (cv2.DISOPTICAL_FLOW_PRESET_MEDIUM, None)}


class Flow:
    """OpenCV DIS optical flow between uint8 gray images of one size (one instance per thread)."""

    def __init__(self, preset: str = "fine"):
        if preset not in PRESETS:
            raise ValueError(f"flow preset must be one of {sorted(PRESETS)}, got {preset!r}")
        base, finest = PRESETS[preset]
        self._dis = cv2.DISOpticalFlow_create(base)
        if finest is not None:
            self._dis.setFinestScale(finest)

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """flow(a, b): a(x) ~ b(x + f(x))."""
        return self._dis.calc(np.ascontiguousarray(a), np.ascontiguousarray(b), None)


_grids: dict = {}


def _grid(h: int, w: int) -> Tuple[np.ndarray, np.ndarray]:
    g = _grids.get((h, w))
    if g is None:
        if len(_grids) > 8:
            _grids.clear()
        xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        g = _grids[(h, w)] = (xs, ys)
    return g


class Maps:
    """A flow's sampling maps in OpenCV's fixed-point form, converted once and reused by every warp along it
    (the same 1/32-pixel interpolation OpenCV applies to float maps, without converting them each time)."""

    __slots__ = ("flow", "m1", "m2")

    def __init__(self, flow: np.ndarray):
        h, w = flow.shape[:2]
        xs, ys = _grid(h, w)
        self.flow = flow
        self.m1, self.m2 = cv2.convertMaps(xs + flow[..., 0], ys + flow[..., 1], cv2.CV_16SC2)


def warp(plane: np.ndarray, flow, outside: Optional[float] = None) -> np.ndarray:
    """plane (h,w) or (h,w,c) float32 sampled bilinearly at x + flow(x); ``flow``: (h,w,2) or :class:`Maps`.

    Samples outside the image take the nearest border value, or ``outside`` when given.
    """
    if isinstance(flow, Maps):
        mx, my = flow.m1, flow.m2
    else:
        h, w = flow.shape[:2]
        xs, ys = _grid(h, w)
        mx = xs + flow[..., 0]
        my = ys + flow[..., 1]
    if outside is None:
        return cv2.remap(plane, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return cv2.remap(plane, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=outside)


def consistency(f_ab, f_ba: np.ndarray, alpha: float = 0.01, beta: float = 0.5) -> np.ndarray:
    """Forward-backward check on frame a's pixels: 1.0 where following f_ab then f_ba comes back, else 0.0.

    Sundaram et al. 2010: |f_ab(x) + f_ba(x + f_ab(x))|^2 <= alpha (|f_ab|^2 + |f_ba(..)|^2) + beta.
    A pixel whose target lies outside frame b fails.
    """
    maps = f_ab if isinstance(f_ab, Maps) else None
    f_ab = f_ab.flow if maps is not None else f_ab
    h, w = f_ab.shape[:2]
    back = warp(f_ba, maps if maps is not None else f_ab)
    s = f_ab + back
    err = s[..., 0] ** 2 + s[..., 1] ** 2
    # squared norms written out per component: numpy's reduction over a last axis of 2 is ~30x slower
    mag = (f_ab[..., 0] ** 2 + f_ab[..., 1] ** 2) + (back[..., 0] ** 2 + back[..., 1] ** 2)  # the sums' order
    ok = err <= alpha * mag + beta
    xs, ys = _grid(h, w)
    tx = xs + f_ab[..., 0]
    ty = ys + f_ab[..., 1]
    ok &= (tx >= 0) & (tx <= w - 1) & (ty >= 0) & (ty <= h - 1)
    return ok.astype(np.float32)


def photometric(gray_a: np.ndarray, gray_b: np.ndarray, f_ab, tolerance: float = 24.0) -> np.ndarray:
    """1.0 where frame b sampled along the flow matches frame a within ``tolerance`` gray levels, else 0.0."""
    wb = warp(gray_b.astype(np.float32), f_ab)
    return (np.abs(wb - gray_a.astype(np.float32)) <= tolerance).astype(np.float32)


def match_brightness(src: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """uint8 ``src`` with its gray levels mapped by one gain and offset so that its mean and standard deviation
    are ``ref``'s (gain limited to [0.5, 2]).

    Film flickers: the exposure of consecutive frames differs globally (old film by several percent from frame
    to frame, a camera's automatic exposure when a bright or dark object enters). The flow, the photometric
    check and the cut test compare two frames after this, so such a change neither breaks the motion nor looks
    like a cut. Only the analysis uses it; the output keeps each frame's own luminance.
    """
    ms, ss = cv2.meanStdDev(src)
    mr, sr = cv2.meanStdDev(ref)
    gain = float(np.clip(sr[0, 0] / max(ss[0, 0], 1.0), 0.5, 2.0))
    offset = float(mr[0, 0]) - gain * float(ms[0, 0])
    return cv2.convertScaleAbs(src, alpha=gain, beta=offset)  # rounds and saturates to uint8


class Link:
    """The motion between two consecutive frames ``a`` (earlier) and ``b`` of a shot at model size, with each
    direction's trust, as the film engine and the distributed scan both compute it: ``a`` is first brightness-
    matched to ``b`` (:func:`match_brightness`); ``back`` samples ``a`` on ``b``'s pixels, ``fwd`` the reverse;
    ``rel_back`` / ``rel_fwd`` their :func:`reliability`; ``matched``: the brightness-matched ``a`` (its
    histogram goes into the cut test against ``b``'s)."""

    __slots__ = ("back", "fwd", "rel_back", "rel_fwd", "matched")

    def __init__(self, flow: "Flow", a: np.ndarray, b: np.ndarray, tolerance: float, both: bool = True):
        am = match_brightness(a, b)
        f_b = flow(b, am)
        f_f = flow(am, b)
        self.matched = am
        self.back = Maps(f_b)
        self.rel_back = reliability(b, am, self.back, f_f, tolerance)
        self.fwd = Maps(f_f) if both else None
        self.rel_fwd = reliability(am, b, self.fwd, f_b, tolerance) if both else None


def locate(flow: "Flow", gray: np.ndarray, ref: np.ndarray, tolerance: float = 24.0
           ) -> Tuple[np.ndarray, np.ndarray]:
    """Where each pixel of ``gray`` lies in ``ref`` (another frame of the shot, brightness-matched first), by one
    flow straight between them: positions (h, w, 2) float32 (x, y) in ``ref``'s pixels, and the agreement (h, w)
    float32 in [0, 1] of ``ref``'s gray sampled there with ``gray`` (the photometric check)."""
    rm = match_brightness(ref, gray)
    f = flow(gray, rm)
    xs, ys = _grid(*gray.shape[:2])
    pos = np.dstack([xs + f[..., 0], ys + f[..., 1]])
    # softened by a 3x3 blur only: no erosion as in reliability(), since the detail worth carrying lies at
    # the edges an erosion would drop (frames next to a keyframe would then lack what the keyframe has)
    return pos, cv2.blur(photometric(gray, rm, f, tolerance), (3, 3))


def reliability(gray_a: np.ndarray, gray_b: np.ndarray, f_ab, f_ba: np.ndarray,
                tolerance: float = 24.0) -> np.ndarray:
    """Per-pixel trust (h,w) float32 in [0,1] of carrying frame b's colors to frame a along f_ab.

    Forward-backward consistency times photometric agreement, softened by a 3x3 minimum (occlusion edges)
    and a 3x3 box blur so the switch to the table's colors has no hard seam.
    ``f_ab`` may be given as :class:`Maps`.
    """
    r = consistency(f_ab, f_ba) * photometric(gray_a, gray_b, f_ab, tolerance)
    r = cv2.erode(r, np.ones((3, 3), np.uint8))
    return cv2.blur(r, (3, 3))
