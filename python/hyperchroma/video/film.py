"""The streaming film engine: keyframe colors carried along optical flow, the table where motion fails.

Per shot (cuts split shots), every frame's ab at model size is a confidence-weighted mix of three tracks:

- ``K``: the previous keyframe's ab carried forward along the flow (frame t from t-1), confidence ``c``
  multiplied each frame by the flow's reliability (forward-backward and photometric checks) and ``decay``;
- ``K'``: the next keyframe's ab of the same shot carried backward (frame t from t+1), confidence ``c'``;
- ``Q``: the table's colors, smoothed along the motion: ``Q_t = a warp(Q_{t-1}) + (1 - a) T_t`` with
  ``a = smooth * reliability`` (so a table color flickering from frame to frame is averaged along the motion
  track and newly uncovered pixels take the table's color at once).

Confidence after a step is ``min(carried, reliability) * decay``.

Checked against the keyframe (``gate``) and relit (``relight``): each track also carries its pixels' positions
in its keyframe, and every frame the keyframe's gray sampled there is compared with the frame's
(:func:`keyframe_match`: both blurred, one gain fitted for the exposure, gray levels within ``gate_tolerance``
and alike in local structure). Frame-to-frame reliability cannot see a dissolve (each step changes the picture
a little), so without this the next shot's keyframe colors travel back through a dissolve onto the shot before
it. The agreement scales the track's weight, its confidence against the table's, and (before a keyframe) the
fallback's lean on it. The gain scales the track's chroma (:func:`relight`, ``gain ** (2.2 / 3)``), and the
carried table track's with it: a fade dims the colors with the picture, and a keyframe caught inside a fade lends
its colors to the bright frames around it at their brightness.
``ab = (w K + w' K' + u Q + u (1 - q) (1 - g) Kc) / (w + w' + u)`` with ``u = 1 - max(c, c')``,
``w = max(c, floor)`` (carried keyframe colors keep some say where the flow is doubtful; the table alone is
noisier) and ``Kc = (w K + w' K') / (w + w')`` (0 where no keyframe reaches): ``Q`` comes scaled toward gray by
the model's confidence ``q`` in the frame (as a single image's colors), and of the weight that doubt frees the
share ``g`` (``unsure_gray``, 0.5) stays gray, the rest goes to the carried keyframe colors (a frame made
unfamiliar by a new object keeps its known parts' colors; with no keyframe in reach all of it stays gray);
between two keyframes
``w`` and ``w'`` are also scaled linearly by temporal distance (the nearer keyframe leads: no jump at either).
Before a keyframe the fallback ``Q`` is mixed with ``K'`` by a share that decays by ``smooth`` every
``table_every`` frames, as ``Q`` itself starts from a keyframe's colors after one (so the frames on either side
of a keyframe lean on it alike). The table is consulted
only on frames where its weight ``u`` matters (``table_share``), at most every ``table_every`` frames (in
between ``Q`` is only carried along the flow). A keyframe's own frame takes the keyframe's colors (at model
size plus its detail like its neighbours, or at full resolution with ``key_full``).

Detail (``detail``, on by default in films at least ``detail_scale`` = 2 times the model size on both axes:
below an octave the band is thin and, at such low resolutions, mostly codec noise): what model size loses of a keyframe's colors (its full-resolution ab minus
its model-size ab upsampled) is added back at full resolution, sampled where a flow computed straight from the
frame to the keyframe points (at model size, the positions upsampled; chained frame-to-frame flows drift by
pixels over tens of frames, which smooth colors forgive and fine detail does not). The nearer of the shot's
keyframes in reach gives its detail, weighted by the photometric agreement of its gray along that flow, so
static and slowly moving content keeps the keyframes' small colored objects and edges. One more DIS flow and
one full-resolution pass (``core.upsample_detail``) per frame; 4 bytes per full-resolution pixel per keyframe.

Resampled once (``direct``, with the detail): carried along the chain, a track's colors are resampled
bilinearly once a frame, a low-pass that accumulates, so a keyframe's textured colors blur with every frame
away from it and the step into its own sharp colors at the keyframe is a jump. Each track also carries its
pixels' positions in its keyframe along the same flows; where the flow straight to the keyframe (one DIS flow
a frame per keyframe in reach, the nearer one's shared with the detail) lands within about ``direct_tau`` model
pixels of those positions and the gray agrees, the track's colors move toward the keyframe's sampled there
once, bicubically (:func:`resample_key`). Far from the chained positions the straight flow has locked onto a
wrong match (repetitive texture, a frame that has moved far) and the chain's colors stay. The state carried to
the next frame is the chain's own, so a straight flow's error in one frame does not travel. Between two
keyframes the farther one's flow is skipped where its time weight (nearness to the power ``lead``) is under
``DIRECT_MIN`` (0.1: in the frames nearest the other keyframe, about 43% of them at the default lead 1.5),
where its chained colors weigh too little for the resampling to show (vtest: 36.996 -> 36.993 dB; 2767 DIS
flows instead of 3061 in its 795 frames).

Memory: frames wait in a buffer until the next keyframe of their shot is seen, at most ``window`` frames
(then the oldest go out with forward propagation only) plus the one-pass keyframe locator's ``lookahead``.
Each held frame costs its full-resolution gray (H*W bytes) plus about 60 bytes per model-size pixel (two
flows with their sampling maps, two reliabilities, its gray, the backward track and its positions): about
2 MB at 224x168, so the default window of 200 holds about 400 MB + 200*H*W bytes at most; nothing grows with
the film's length.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from .. import core, pipeline
from ..images import model_shape
from ..lookup import Status
from . import keyframes as kf
from . import propagate as pp
from .shots import CutDetector, histogram


class _TableSource:
    """The one place the film engine touches the model (rewire here when the model changes)."""

    def __init__(self, model):
        self.model = model
        self.size = int(model.fit_settings.size)
        self.threads = int(model.threads)
        self.calls = 0

    def shape(self, height: int, width: int) -> Tuple[int, int]:
        return model_shape(height, width, self.size)

    def table_ab(self, gray: np.ndarray) -> Tuple[np.ndarray, np.ndarray, float]:
        """The table's ab (h,w,2) float32 at model size for a full-resolution gray frame, where it knows, and
        the model's confidence in the frame (1.0 uncalibrated); the ab are scaled by that confidence, like a
        single image's colors."""
        self.calls += 1
        m = self.model
        s = m.colorize_settings
        prepared = pipeline.prepare(gray, self.size, borders=s.borders)
        ab, found = pipeline.model_colors(m.classifier, m.quantizer, m.color_table, prepared, s, self.threads)
        conf, _ = pipeline.confidence(m.calibration, found, prepared.shape, s)
        scale = 1.0
        if conf is not None and s.use_confidence and conf < 1.0:
            ab = ab * np.float32(conf)
            scale = float(conf)
        return (np.ascontiguousarray(ab, dtype=np.float32), (found.status != Status.GRAY).reshape(prepared.shape),
                scale)

    def compose(self, gray: np.ndarray, ab_small: np.ndarray) -> np.ndarray:
        """uint8 RGB (H,W,3) whose gray version is the frame, with ab upsampled from model size."""
        return pipeline.compose(gray, np.ascontiguousarray(ab_small, dtype=np.float32), self.threads)

    def compose_planar(self, gray: np.ndarray, ab_planar: np.ndarray) -> np.ndarray:
        """uint8 RGB (H,W,3) whose gray version is the frame, from a planar (2,H,W) full-resolution ab, composed
        on the same ab grid as :meth:`compose`."""
        return core.compose_luma_grid(gray, ab_planar, threads=self.threads)

    def compose_full(self, gray: np.ndarray, ab_full: np.ndarray) -> np.ndarray:
        """uint8 RGB (H,W,3) whose gray version is the frame, from an ab (H,W,2) already at full resolution."""
        return core.compose_luma(gray, np.ascontiguousarray(ab_full, dtype=np.float32), threads=self.threads)


@dataclasses.dataclass
class FilmOptions:
    """Knobs of the engine (defaults are the documented method; see the module docstring)."""

    decay: float = 0.99          # confidence kept per frame of propagation
    smooth: float = 0.8          # weight of the carried table colors against a new table look-up
    table_share: float = 0.02    # consult the table when the mean table weight u of a frame exceeds this
    table_every: int = 4         # ... and at most every this many frames (Q is carried in between)
    window: int = 200            # most frames held while waiting for the next keyframe
    flow_preset: str = "fine"    # DIS flow settings (propagate.PRESETS): "fine" is DIS "fast" to half model size
    tolerance: float = 24.0      # photometric check, gray levels
    match_threshold: float = 0.2
    lookahead: int = 6
    cut_hist: float = 0.5
    cut_follow: float = 0.2
    floor: float = 0.5           # least weight of carried keyframe colors in the blend
    unsure_gray: float = 0.5     # of the table's weight its doubt (1 - frame confidence) gives, the share gray
                                 # takes (the rest goes to the carried keyframe colors)
    key_full: bool = False       # a keyframe's own frame at the keyframe's full resolution (else model size)
    detail: bool = True          # carry the keyframes' full-resolution chroma detail along the motion ...
    detail_scale: float = 2.0    # ... in films at least this many times the model size (both axes)
    direct: bool = True          # ... and there resample each keyframe's colors once, straight from it (bicubic),
                                 # where the chained motion agrees, not once a frame along the chain (bilinear)
    direct_tau: float = 4.0      # model-size pixels: how far the straight flow may land from the chained positions
    lead: float = 1.5            # between two keyframes each leads with (its nearness in time) ** lead
    compound: str = "min"         # confidence after a step: min(carried, reliability) or their "product"
    gate: bool = True            # weigh carried keyframe colors by how well the keyframe's gray, where the track
                                 # says each pixel came from, still matches the frame (dissolves, drift)
    gate_tolerance: float = 16.0  # gray levels of that match (after a gain): full weight below, none at twice it
    relight: bool = True         # scale carried chroma with the frame's exposure against the keyframe's (fades)
    returns: int = 4             # a new shot that continues one of the last this many shots resumes its colors

    def check(self) -> "FilmOptions":
        if not 0 < self.decay <= 1:
            raise ValueError(f"decay must be in (0, 1], got {self.decay}")
        if not 0 <= self.smooth < 1:
            raise ValueError(f"smooth must be in [0, 1), got {self.smooth}")
        if not 0 <= self.unsure_gray <= 1:
            raise ValueError(f"unsure_gray must be in [0, 1], got {self.unsure_gray}")
        if not self.direct_tau > 0 or not np.isfinite(self.direct_tau):
            raise ValueError(f"direct_tau must be a positive number, got {self.direct_tau}")
        if not self.gate_tolerance > 0 or not np.isfinite(self.gate_tolerance):
            raise ValueError(f"gate_tolerance must be a positive number, got {self.gate_tolerance}")
        if not 0.5 <= self.lead <= 8:
            raise ValueError(f"lead must be in [0.5, 8], got {self.lead}")
        if not 0 <= self.returns <= 64:
            raise ValueError(f"returns must be in [0, 64], got {self.returns}")
        if self.table_every < 1 or self.window < 1 or self.lookahead < 1:
            raise ValueError("table_every, window and lookahead must be >= 1")
        return self


@dataclasses.dataclass
class _Frame:
    index: int
    gray: np.ndarray                      # full resolution uint8
    small: np.ndarray                     # model size uint8
    shot_start: bool = True
    flow_prev: Optional[pp.Maps] = None  # this -> previous frame
    rel_prev: Optional[np.ndarray] = None   # trust of colors carried from the previous frame
    flow_next: Optional[pp.Maps] = None  # this -> next frame
    rel_next: Optional[np.ndarray] = None
    key: Optional[int] = None


DETAIL_SCALE = 64.0  # fixed point of the keyframes' detail planes
DIRECT_MIN = 0.1    # between two keyframes the farther one is resampled from only where its time weight reaches this
RESUME_SHARE = 0.5   # least share of followed pixels for a new shot to continue an earlier one
DUPLICATE = 0.05     # keyframe signatures closer than this (kf.scores) show the same frame
DETAIL_MIN = 0.02    # a track whose detail weight stays below this everywhere adds none


def _identity(shape: Tuple[int, int]) -> np.ndarray:
    """(h, w, 2) float32 pixel coordinates (x, y) of each pixel: where a keyframe's own pixels come from."""
    xs, ys = pp._grid(*shape)
    return np.dstack([xs, ys])


class _Key:
    def __init__(self, rgb: np.ndarray, shape_full: Tuple[int, int], shape_small: Tuple[int, int],
                 detail: bool = True):
        rgb = np.ascontiguousarray(rgb)
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"keyframes must be uint8 (H,W,3) RGB arrays, got {rgb.dtype} {rgb.shape}")
        H, W = shape_full
        h, w = shape_small
        if rgb.shape[:2] != (H, W):
            rgb = cv2.resize(rgb, (W, H), interpolation=cv2.INTER_AREA)
        _, ab = core.rgb_to_lab(rgb)
        self.ab_full = np.ascontiguousarray(ab, dtype=np.float32)
        self.ab_small = cv2.resize(self.ab_full, (w, h), interpolation=cv2.INTER_AREA)
        self.small = cv2.resize(kf.luma(rgb), (w, h), interpolation=cv2.INTER_AREA)
        self.sig = kf.signature(self.small)
        self.soft = _soft(self.small)  # what the tracks' gray is compared with (keyframe_match)
        # what model size loses: the full-resolution ab minus the model-size ab upsampled as compose does it,
        # (H, W, 2) int16 in 1/DETAIL_SCALE ab units (half the memory of float32)
        self.detail: Optional[np.ndarray] = None
        if detail:
            up = core.upsample_bilinear(np.ascontiguousarray(np.moveaxis(self.ab_small, -1, 0)), H, W)
            diff = self.ab_full - np.moveaxis(up, 0, -1)
            self.detail = np.clip(np.rint(diff * DETAIL_SCALE), -32767, 32767).astype(np.int16)


def _warp_track(K: np.ndarray, maps: pp.Maps, *planes: Optional[np.ndarray]) -> Tuple[Optional[np.ndarray], ...]:
    """Colors and their per-pixel planes ((h, w) confidence, ..., or (h, w, 2) positions; None stays None)
    carried along one flow in one warp (border: nearest; the step's reliability is 0 where the flow leaves the
    frame, so the confidence there is cut by _carry): (K, plane, ...)."""
    kc = pp.warp(np.dstack([K, *(p for p in planes if p is not None)]), maps)
    out: List[Optional[np.ndarray]] = [kc[..., :2]]
    i = 2
    for p in planes:
        if p is None:
            out.append(None)
        elif p.ndim == 2:
            out.append(kc[..., i])
            i += 1
        else:
            out.append(kc[..., i:i + p.shape[2]])
            i += p.shape[2]
    return tuple(out)


def resample_key(K: np.ndarray, key_ab: np.ndarray, pos: np.ndarray, agree: np.ndarray, chained: np.ndarray,
                 tau: float) -> np.ndarray:
    """A track's carried colors K (h, w, 2) moved toward the keyframe's model-size ab ``key_ab`` sampled once,
    bicubically, at ``pos`` (h, w, 2), where a flow straight from this frame to the keyframe lands: by
    ``agree`` (its photometric agreement, [0, 1]) times ``exp(-d^2 / tau^2)``, d the distance of ``pos`` from
    ``chained`` (the same pixels' positions in the keyframe carried along the chain of frame-to-frame flows).

    Carried along the chain the colors are resampled bilinearly once a frame, a low-pass that accumulates:
    textured colors blur away from a keyframe, and the step into the keyframe's own sharp colors is a jump.
    The straight flow does not drift but can lock onto a wrong match in repetitive texture (a building's
    windows) or where the frame has moved far; the chain knows roughly where each pixel is, so the straight
    flow is trusted only near it."""
    d = pos - chained
    d2 = cv2.transform(d * d, np.ones((1, 2), np.float32))  # the two channels summed (numpy's is ~3x slower)
    a = cv2.exp(d2 * np.float32(-1.0 / (tau * tau))) * agree
    out = cv2.remap(key_ab, pos, None, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    out -= K
    out *= a[..., None]
    out += K
    return out


GATE_SIGMA = 1.5    # model-size pixels: the blur of both grays before keyframe_match compares them
SHAPE_SIGMA = 1.0   # ... and further (on match_grid's half-size grid) before it compares shapes
FRAME_GATE = 2.0    # keyframe_match acts fully where this times the disagreeing share reaches 1
EDGE = 0.25         # model-size pixels from the keyframe's border within which keyframe_match does not judge
TEXTURE = 3.0       # gray levels of local standard deviation above which keyframe_match compares shapes
RELIGHT_MAX = 3.0   # most a keyframe's carried chroma is scaled up (a keyframe dimmed by a fade, carried out of it)


def _soft(gray: np.ndarray) -> np.ndarray:
    return cv2.GaussianBlur(gray.astype(np.float32), (0, 0), GATE_SIGMA)


def keyframe_match(key_soft: np.ndarray, P: np.ndarray, soft: np.ndarray, c: np.ndarray, tolerance: float
                   ) -> Tuple[np.ndarray, float]:
    """How far a track's colors still belong to this frame: (agreement (h, w) float32 in [0, 1], gain).

    ``P``: the track's positions (h, w, 2) in its keyframe; ``key_soft`` / ``soft``: the keyframe's and this
    frame's gray at model size, blurred (:func:`_soft`); ``c``: the track's confidence (weights the fit). The
    keyframe's gray sampled at ``P`` should be this frame's gray up to the frame's exposure (:func:`match_grid`,
    on a grid of half the model size: the agreement is a property of regions, and this runs every frame for
    each track). Frame-to-frame reliability cannot see a dissolve (each step changes the picture a little) nor
    a chain's slow drift; this compares each frame with the keyframe itself. The gain measures the exposure
    against the keyframe (see :func:`relight`). Where the track points outside the keyframe, or onto its very
    edge, there is nothing to compare: agreement 1. Pixels that came into the frame after the keyframe (a pan
    reveals them) carry the edge's position, since the warps replicate the border; their confidence is 0, so
    the table and the floor share of the carried edge colors decide there, as without the check.

    The check acts in proportion to how much of what the track carries disagrees (fully from half of it): a
    dissolve or a drift away from the keyframe's picture disagrees across the frame, while a limb that moved
    or a person who walked off is local, the flow's reliability's to judge, and there the carried colors are
    still better than the table's (vtest, keyframes in the first half only: 35.24 dB judged everywhere
    alike, 35.44 so)."""
    h, w = c.shape
    half = ((w + 1) // 2, (h + 1) // 2)
    Ph = cv2.resize(P, half, interpolation=cv2.INTER_AREA)  # the positions of each 2x2 block's centre
    ks = cv2.remap(key_soft, Ph, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    gc = cv2.resize(c, half, interpolation=cv2.INTER_AREA)
    a, gain = match_grid(ks, cv2.resize(soft, half, interpolation=cv2.INTER_AREA), gc, tolerance)
    kh, kw = key_soft.shape
    e = np.float32(EDGE)
    a[(Ph[..., 0] < e) | (Ph[..., 0] > kw - 1 - e) | (Ph[..., 1] < e) | (Ph[..., 1] > kh - 1 - e)] = 1.0
    # in proportion to how much of what the track carries disagrees: fully from 1 / FRAME_GATE of it
    disagree = 1.0 - float((a * gc).sum()) / max(float(gc.sum()), 1e-6)
    k = np.float32(min(1.0, FRAME_GATE * max(disagree, 0.0)))
    return cv2.resize(np.float32(1.0) - (np.float32(1.0) - a) * k, (w, h), interpolation=cv2.INTER_LINEAR), gain


def match_grid(ks: np.ndarray, soft: np.ndarray, c: np.ndarray, tolerance: float) -> Tuple[np.ndarray, float]:
    """:func:`keyframe_match` on one grid: ``ks`` the keyframe's gray where the track's pixels came from,
    ``soft`` the frame's, ``c`` the weights. One gain, fitted by least squares through 0 (a fade or a
    printer's light scales the picture), then fitted again on the pixels that agree. The agreement is 1 where
    the two differ by under ``tolerance`` gray levels, 0 from twice that, times SSIM's contrast-structure term
    over 5x5 after a further blur (SHAPE_SIGMA: the same texture, not only the same gray levels; a chain's
    drift by a pixel or two forgiven; near 0 for unrelated textures or texture against a flat area, 1 where
    both are flat, TEXTURE deciding how flat), 3x3 box-blurred."""
    w = c
    gain = 1.0
    a = np.ones_like(c)
    for _ in range(2):
        den = float((w * ks * ks).sum())
        if den <= 1e-3 * max(ks.size, 1):
            return a, gain  # nothing carried to fit on (or a black keyframe): nothing to judge
        gain = float((w * soft * ks).sum()) / den
        a = np.clip(np.float32(2.0) - cv2.absdiff(soft, np.float32(gain) * ks) * np.float32(1.0 / tolerance),
                    0.0, 1.0)
        w = c * a
    k = (5, 5)
    x = cv2.GaussianBlur(soft, (0, 0), SHAPE_SIGMA)
    y = cv2.GaussianBlur(ks, (0, 0), SHAPE_SIGMA) * np.float32(gain)
    mx, my = cv2.blur(x, k), cv2.blur(y, k)
    vx = cv2.blur(x * x, k) - mx * mx
    vy = cv2.blur(y * y, k) - my * my
    cxy = cv2.blur(x * y, k) - mx * my
    t2 = np.float32(TEXTURE * TEXTURE)
    cs = (2 * cxy + t2) / (np.maximum(vx, 0) + np.maximum(vy, 0) + t2)
    shape = np.clip((cs - np.float32(0.25)) * np.float32(2.0), 0.0, 1.0)
    return cv2.blur(a * shape, (3, 3)), gain


def relight(gain: float) -> float:
    """The factor on a keyframe's ab for a frame whose gray levels are ``gain`` times the keyframe's: gray
    levels are gamma-encoded (about ^2.2 to linear light) and CIELAB's a, b scale with the cube root of linear
    light, so the factor is ``gain ** (2.2 / 3)``, at most RELIGHT_MAX."""
    return float(min(max(gain, 0.0) ** (2.2 / 3.0), RELIGHT_MAX))


def _carry(c: np.ndarray, rel: np.ndarray, o: "FilmOptions") -> np.ndarray:
    """Confidence after one propagation step: carried confidence limited by this step's reliability."""
    c = np.minimum(c, rel) if o.compound == "min" else c * rel
    return c * np.float32(o.decay)


def continues(flow: pp.Flow, cuts: CutDetector, tolerance: float, recent: Sequence[np.ndarray],
              small: np.ndarray) -> Optional[Tuple[int, pp.Link]]:
    """Which of the earlier shots (``recent``: their last frames at model size, newest first) the shot starting
    with frame ``small`` continues (shot, reverse shot, shot; a cutaway), with the link from that shot's last
    frame: (index in ``recent``, link), or None. A shot continues another when the cut test finds no cut
    between the two frames and at least RESUME_SHARE of the pixels can be followed; of several, the best
    followed. The engine resumes that shot's forward state; the distributed split computes the same from
    the frames alone, so that no segment boundary falls between a shot and its return."""
    best: Optional[Tuple[float, int, pp.Link]] = None
    hist = histogram(small)
    for i, last in enumerate(recent):
        link = pp.Link(flow, last, small, tolerance, both=False)
        share = float(link.rel_back.mean())
        if share >= RESUME_SHARE and not cuts.is_cut(histogram(link.matched), hist, share):
            if best is None or share > best[0]:
                best = (share, i, link)
    return None if best is None else (best[1], best[2])


def returns_of(flow: pp.Flow, cuts: CutDetector, tolerance: float, keep: int,
               shots: Sequence[Tuple[np.ndarray, Optional[np.ndarray], bool]]) -> Dict[int, int]:
    """{shot: earlier shot it continues} for shots given in order as (first frame, last frame, whether its first
    frame is a keyframe), the model-size gray of each, as the engine decides them with ``returns=keep``
    (the last shot's last frame may be None)."""
    out: Dict[int, int] = {}
    recent: List[int] = []  # shot numbers, newest first
    for j, (first, _, keyed) in enumerate(shots):
        if j:
            recent = ([j - 1] + recent)[:keep]
        if keyed or not recent or not keep:
            continue
        found = continues(flow, cuts, tolerance, [_last_of(shots[i]) for i in recent], first)
        if found is not None:
            out[j] = recent.pop(found[0])
    return out


def _last_of(shot: Tuple[np.ndarray, Optional[np.ndarray], bool]) -> np.ndarray:
    if shot[1] is None:
        raise ValueError("only the last shot may lack its last frame")
    return shot[1]


def _to_gray(frame: np.ndarray) -> np.ndarray:
    a = np.asarray(frame)
    if a.dtype != np.uint8 or not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (1, 3))):
        raise ValueError(f"frames must be uint8 (H,W) gray or (H,W,3) RGB, got {a.dtype} {a.shape}")
    if a.ndim == 3:
        a = a[..., 0] if a.shape[2] == 1 else kf.luma(a)
    return np.ascontiguousarray(a)


class FilmEngine:
    """Push gray frames in display order; pull (index, gray, ab_small, ab_full, detail) results in the same
    order.

    Exactly one of ab_small (model size) / ab_full (a keyframe's own frame) is set per result; ``detail`` is
    None or the keyframe detail to add at full resolution (:func:`with_detail`), which :func:`compose` does.

    ``on_result``: called with each result the moment it is made, instead of holding it for :meth:`results`.
    A keyframe releases a whole segment of held frames at once; handed over one by one, they reach a consumer
    in another thread (the encoder) while the engine is still coloring the rest of the segment. With it,
    :meth:`results` stays empty; an exception raised by the callback leaves the engine unusable.
    """

    def __init__(self, model, keyframes: Sequence[np.ndarray] = (), options: Optional[FilmOptions] = None,
                 source: Optional[_TableSource] = None, placements: Optional[Dict[int, int]] = None,
                 on_result: Optional[Callable[[tuple], None]] = None):
        self.opt = (options or FilmOptions()).check()
        self.source = source or _TableSource(model)
        self._key_rgb = list(keyframes)
        self._placements = None if placements is None else {int(f): int(k) for f, k in placements.items()}
        self._detail = self._direct = self._track_pos = False
        if self._placements and not all(0 <= k < len(self._key_rgb) for k in self._placements.values()):
            raise ValueError("placements name a keyframe that is not given")
        self._keys: List[_Key] = []
        self._flow = pp.Flow(self.opt.flow_preset)
        self._cuts = CutDetector(self.opt.cut_hist, self.opt.cut_follow)
        self._buf: List[_Frame] = []
        self._prev: Optional[_Frame] = None
        # forward tracks after the last output frame: (K, c, Q, last table, key frame, keyframe, table confidence,
        # positions in the keyframe, the exposure factor (relight) Q was last brought to)
        self._state = None
        self._locator: Optional[kf.KeyframeLocator] = None
        self._n = 0
        self.shape_full: Optional[Tuple[int, int]] = None
        self.shots = 0
        self.keys_placed: List[Tuple[int, int]] = []  # (frame, keyframe)
        self._out: List[Tuple[int, np.ndarray, Optional[np.ndarray], Optional[np.ndarray], Optional[list]]] = []
        self._emit_to = on_result if on_result is not None else self._out.append
        # the shot being emitted: its last frame's model-size gray and the forward state after it; earlier shots'
        # the same, newest first (a shot that returns after a cutaway picks up from there)
        self._last: Optional[Tuple[np.ndarray, tuple]] = None
        self._recent: List[Tuple[np.ndarray, tuple]] = []
        self.returns = 0

    # ------------------------------------------------------------------ input
    def push(self, frame: np.ndarray) -> None:
        gray = _to_gray(frame)
        if self.shape_full is None:
            self._start(gray.shape)
        elif gray.shape != self.shape_full:
            raise ValueError(f"frame {self._n} is {gray.shape[1]}x{gray.shape[0]}, the film is "
                             f"{self.shape_full[1]}x{self.shape_full[0]}")
        h, w = self.shape_small
        fr = _Frame(self._n, gray, cv2.resize(gray, (w, h), interpolation=cv2.INTER_AREA))
        self._n += 1
        hist = histogram(fr.small)
        cut = True
        prev = self._prev
        if prev is not None:
            link = pp.Link(self._flow, prev.small, fr.small, self.opt.tolerance)
            cut = self._cuts.is_cut(histogram(link.matched), hist, float(link.rel_back.mean()))
            if not cut:
                fr.shot_start = False
                fr.flow_prev, fr.rel_prev = link.back, link.rel_back
                prev.flow_next, prev.rel_next = link.fwd, link.rel_fwd
        self.shots += int(cut)
        if self._placements is not None:  # keyframes located beforehand (whole-film pass)
            if cut:
                self._flush(len(self._buf))
            self._buf.append(fr)
            self._prev = fr
            if fr.index in self._placements:
                self._place([(fr.index, self._placements[fr.index])])
            elif len(self._buf) > self.opt.window:
                self._flush(len(self._buf) - 1)
            return
        placed = self._locator.feed(fr.index, kf.signature(fr.small), cut)
        if cut:
            self._place(placed)
            self._flush(len(self._buf))
            placed = []
        self._buf.append(fr)
        self._prev = fr
        self._place(placed)
        if len(self._buf) > self.opt.window:
            n = self._locator.undecided_from() - self._buf[0].index
            self._flush(max(0, min(n, len(self._buf) - 1)))

    def finish(self) -> None:
        if self._placements is None:
            self._place(self._locator.flush() if self._locator else [])
        self._flush(len(self._buf))

    def results(self) -> Iterator[Tuple[int, np.ndarray, Optional[np.ndarray], Optional[np.ndarray]]]:
        out = self._out[:]
        self._out.clear()  # the list stays: _emit_to may be its bound append
        return iter(out)

    def set_placements(self, placements: Dict[int, int]) -> None:
        """Use these {frame: keyframe} placements instead of locating on the fly (before the first frame)."""
        if self._n:
            raise RuntimeError("placements must be set before the first frame")
        self._placements = {int(f): int(k) for f, k in placements.items()}

    def signature_of(self, gray: np.ndarray) -> np.ndarray:
        """The keyframe-matching signature of a full-resolution gray frame of this film."""
        h, w = self.shape_small
        return kf.signature(cv2.resize(gray, (w, h), interpolation=cv2.INTER_AREA))

    def stats(self) -> Dict[str, Any]:
        placed = {}
        for frame, k in self.keys_placed:
            placed.setdefault(k, []).append(frame)
        # a keyframe never placed because another shows the same frame (given twice, or two colorings of one
        # frame: one frame takes one keyframe) is that one's duplicate, not a keyframe the film lacks
        duplicate = {}
        for k in range(len(self._key_rgb)):
            if k not in placed and self.key_sigs is not None:
                d = kf.scores(self.key_sigs, self.key_sigs[k])
                same = [j for j in placed if d[j] < DUPLICATE]
                if same:
                    duplicate[k] = min(same, key=lambda j: d[j])
        return {"frames": self._n, "shots": self.shots, "returns": self.returns, "table_calls": self.source.calls,
                "keyframes": len(self._key_rgb), "keyframes_placed": placed,
                "keyframes_unmatched": [k for k in range(len(self._key_rgb)) if k not in placed and k not in duplicate],
                "keyframes_duplicate": duplicate}

    # ------------------------------------------------------------------ internals
    def start(self, shape: Tuple[int, int]) -> None:
        """Fix the film's (H, W) before the first frame (the first frame does it otherwise)."""
        if self.shape_full is None:
            self._start(tuple(shape))

    def _start(self, shape: Tuple[int, int]) -> None:
        self.shape_full = shape
        self.shape_small = self.source.shape(*shape)
        # below an octave above model size the detail is a thin band, at low resolutions mostly codec noise
        scale = min(s / m for s, m in zip(shape, self.shape_small))
        self._detail = self.opt.detail and scale >= self.opt.detail_scale
        self._direct = self._detail and self.opt.direct
        self._track_pos = self._direct or self.opt.gate or self.opt.relight  # tracks carry their keyframe positions
        self._keys = [_Key(k, shape, self.shape_small, self._detail) for k in self._key_rgb]
        self._locator = kf.KeyframeLocator([k.sig for k in self._keys], self.opt.match_threshold,
                                           self.opt.lookahead)
        self.key_sigs = np.stack([k.sig for k in self._keys]) if self._keys else None

    def _place(self, placed: List[Tuple[int, int]]) -> None:
        for frame, k in placed:
            first = self._buf[0].index if self._buf else self._n
            pos = frame - first
            if not 0 <= pos < len(self._buf):
                continue  # already out (cannot happen with the flush rule; kept safe)
            self._buf[pos].key = k
            self.keys_placed.append((frame, k))
            self._segment(pos + 1, right=pos)

    def _flush(self, n: int) -> None:
        if n > 0:
            self._segment(n, right=None)

    def _segment(self, n: int, right: Optional[int]) -> None:
        """Color and emit the first n buffered frames; ``right``: position of a keyframe ending them."""
        seg, self._buf = self._buf[:n], self._buf[n:]
        o = self.opt
        # per frame: the backward track (colors, confidence, keep, keyframe, positions in it or None)
        back: List[Optional[tuple]] = [None] * n
        if right is not None:
            kidx = seg[right].key
            key = self._keys[kidx]
            K, c = key.ab_small, np.ones(self.shape_small, np.float32)
            # keep: the keyframe's share in the fallback before it, as Q's after one (Q starts as the keyframe's
            # colors and gives up 1 - smooth to the table every table_every frames): time-symmetric, no jump
            keep = c
            P = _identity(self.shape_small) if self._track_pos else None  # positions in the keyframe
            back[right] = (K, c, keep, kidx, P)
            for t in range(right - 1, -1, -1):
                fr = seg[t]
                if seg[t + 1].shot_start or fr.flow_next is None:
                    break
                K, c, keep, P = _warp_track(K, fr.flow_next, c, keep, P)
                c = _carry(c, fr.rel_next, o)
                keep = keep * np.float32(o.smooth ** (1.0 / o.table_every))
                back[t] = (K, c, keep, kidx, P)
        right_at = seg[right].index if right is not None else None
        for t, fr in enumerate(seg):
            self._emit(fr, back[t], right_at)

    def _resume(self, fr: _Frame) -> Optional[Tuple[tuple, pp.Maps, np.ndarray]]:
        """At a cut: the forward state of an earlier shot that this frame continues (:func:`continues`), with
        the link from that shot's last frame, or None."""
        found = continues(self._flow, self._cuts, self.opt.tolerance, [small for small, _ in self._recent], fr.small)
        if found is None:
            return None
        i, link = found
        state = self._recent.pop(i)[1]
        self.returns += 1
        return state, link.back, link.rel_back

    def _emit(self, fr: _Frame, back, right_at: Optional[int] = None) -> None:
        o = self.opt
        resumed = None
        if fr.shot_start:
            if self._last is not None:
                self._recent = ([self._last] + self._recent)[:o.returns]
                self._last = None
            if fr.key is None and self._recent:
                resumed = self._resume(fr)
        self._emit_frame(fr, back, right_at, resumed)
        if o.returns:
            self._last = (fr.small, self._state)

    def _emit_frame(self, fr: _Frame, back, right_at: Optional[int], resumed) -> None:
        o = self.opt
        if fr.key is not None:
            key = self._keys[fr.key]
            ones = np.ones(self.shape_small, np.float32)
            self._state = (key.ab_small, ones, key.ab_small.copy(), fr.index, fr.index, fr.key, 1.0,
                           _identity(self.shape_small) if self._track_pos else None, 1.0)
            if o.key_full:
                self._emit_to((fr.index, fr.gray, None, key.ab_full, None))
            else:  # the same path as its neighbours (at model size, plus the detail they carry): no pop
                self._emit_to((fr.index, fr.gray, key.ab_small, None,
                                  [(key.detail, _identity(self.shape_small), ones)] if self._detail else None))
            return
        zeros = np.zeros(self.shape_small, np.float32)
        kf_at = None
        start = resumed is None and (fr.shot_start or self._state is None)
        if start:
            K, c, Q, last_table, qc = np.zeros(self.shape_small + (2,), np.float32), zeros, None, -10**9, 1.0
            q_light, key_at = 1.0, None
            trust = zeros
            P = None
        else:
            state, flow_prev, trust = resumed if resumed is not None else (self._state, fr.flow_prev, fr.rel_prev)
            assert state is not None
            K, c, Q, last_table, key_at, kf_at, qc, P, q_light = state
            K, c, P = _warp_track(K, flow_prev, c, P)  # P: this frame's pixels' positions in the keyframe
            c = _carry(c, trust, o)
            Q = None if Q is None else pp.warp(Q, flow_prev)
        Kb, cb, keep, kb_at, Pb = back if back is not None else (None, zeros, None, None, None)
        # each track against its own keyframe: agreement (gf, gb) and exposure (sf, sb), see keyframe_match
        gf = gb = None
        sf = sb = 1.0
        if (o.gate or o.relight) and ((P is not None and kf_at is not None) or (Pb is not None and kb_at is not None)):
            soft = _soft(fr.small)
            if P is not None and kf_at is not None:
                gf, sf = keyframe_match(self._keys[kf_at].soft, P, soft, c, o.gate_tolerance)
            if Pb is not None and kb_at is not None:
                gb, sb = keyframe_match(self._keys[kb_at].soft, Pb, soft, cb, o.gate_tolerance)
            sf, sb = (relight(sf), relight(sb)) if o.relight else (1.0, 1.0)
            if not o.gate:
                gf = gb = None
        if Q is not None and kf_at is not None and sf != q_light:
            # the carried table track holds the keyframe's colors it started from: they follow the exposure too
            Q = Q * np.float32(sf / max(q_light, 1e-3))
            q_light = sf
        cf_eff = c if gf is None else c * gf
        cb_eff = cb if gb is None else cb * gb
        u = 1.0 - np.maximum(cf_eff, cb_eff)
        if float(u.mean()) > o.table_share and (Q is None or fr.index - last_table >= o.table_every):
            T, known, qc = self.source.table_ab(fr.gray)
            last_table = fr.index
            if Q is None:
                Q = T
            else:
                a = np.where(known, np.float32(o.smooth) * trust, 1.0).astype(np.float32)[..., None]
                Q = a * Q + (1 - a) * T
        # flows straight to the shot's keyframes in reach, the nearer first: its positions carry its detail;
        # with ``direct`` each track's colors are also resampled once from its keyframe there (resample_key)
        located = None
        Kf = K  # the forward colors this frame blends; the state goes on from K, the chain's own
        between = False
        tf = tb = np.float32(1.0)
        if key_at is not None and Kb is not None and right_at is not None:
            between = True
            # between two keyframes: the nearer one leads (its nearness in time to the power lead: 1 is linear;
            # above 1 the keyframe being approached takes over sooner, which lowers the step into its own exact
            # colors), so there is no jump at either
            span = float(right_at - key_at)
            tf = np.float32(((right_at - fr.index) / span) ** o.lead)
            tb = np.float32(((fr.index - key_at) / span) ** o.lead)
        if self._detail:
            reach = sorted((abs(fr.index - a), k, side) for side, (a, k) in enumerate(((key_at, kf_at),
                                                                                        (right_at, kb_at)))
                           if a is not None and k is not None)
            for i, (_, k, side) in enumerate(reach if self._direct else reach[:1]):
                if i and (tf, tb)[side] < DIRECT_MIN:  # (both are 1 unless between two keyframes)
                    continue  # the farther keyframe weighs too little here for its resampling to show
                key = self._keys[k]
                pos, agree = pp.locate(self._flow, fr.small, key.small, o.tolerance)
                if located is None:
                    located = (key, pos, agree, side)
                if self._direct and side == 0 and P is not None:
                    Kf = resample_key(K, key.ab_small, pos, agree, P, o.direct_tau)
                elif self._direct and side == 1 and Kb is not None and Pb is not None:
                    Kb = resample_key(Kb, key.ab_small, pos, agree, Pb, o.direct_tau)
        wf, wb = c, cb
        if o.floor > 0:  # colors carried from a keyframe keep some say even where the flow was doubtful
            if key_at is not None:
                wf = np.maximum(c, np.float32(o.floor))
            if Kb is not None:
                wb = np.maximum(cb, np.float32(o.floor))
        # ... but none where the frame no longer shows what the keyframe showed there (a dissolve)
        if gf is not None:
            wf = wf * gf
        if gb is not None:
            wb = wb * gb
        if sf != 1.0:
            Kf = Kf * np.float32(sf)
        if sb != 1.0 and Kb is not None:
            Kb = Kb * np.float32(sb)
        if between:
            wf, wb = wf * tf, wb * tb
        fallback = Q
        if keep is not None and Q is not None and Kb is not None:
            # before a keyframe the fallback leans on its colors as Q does after one (time-symmetric), as far as
            # the frame still shows what the keyframe showed
            if gb is not None:
                keep = keep * gb
            fallback = keep[..., None] * Kb + (1 - keep[..., None]) * Q
        num = wf[..., None] * Kf + u[..., None] * (fallback if fallback is not None else 0.0)
        if Kb is not None:
            num = num + wb[..., None] * Kb
        if fallback is not None and qc < 1.0:
            # the table's colors come scaled toward gray by its confidence qc; of the weight that doubt frees,
            # unsure_gray stays gray and the rest goes to the carried keyframe colors where any reach
            keyed = wf + wb
            lend = u * np.float32((1.0 - qc) * (1.0 - o.unsure_gray))
            carried = num - u[..., None] * fallback
            num = num + (lend / np.maximum(keyed, np.float32(1e-6)))[..., None] * carried
        den = (wf + wb + u)[..., None] + np.float32(1e-6)
        if Q is None:  # no table yet and none needed: the carried colors stand in for it
            den = den - u[..., None]
        den = np.maximum(den, np.float32(1e-6))
        ab = (num / den).astype(np.float32)
        if Q is None:
            Q = ab.copy()
        detail = None
        if self._detail:
            # the nearer keyframe's detail (of those the shot's tracks reach), found in this frame by a flow
            # straight to it (chained flows drift), where its gray agrees along that flow. The table has no
            # detail of its own: smooth colors from it still take the keyframe's. One keyframe a frame: where the
            # nearer one changes, static content has the same detail in both (no pop), moving content little.
            if located is not None and float(located[2].max()) > DETAIL_MIN:
                key, pos, agree, side = located
                g, sc = (gf, sf) if side == 0 else (gb, sb)
                if g is not None:
                    agree = agree * g
                if sc != 1.0:
                    agree = agree * np.float32(sc)
                detail = [(key.detail, pos, agree)]
        self._state = (K, c, Q, last_table, key_at, kf_at, qc, P, q_light)
        self._emit_to((fr.index, fr.gray, ab, None, detail))


def engine_results(model, frames: Iterable[np.ndarray], keyframes: Sequence[np.ndarray] = (),
                   engine: Optional[FilmEngine] = None, **opts) -> Iterator[tuple]:
    """(index, gray, ab_small, ab_full, detail) per frame in order; ``engine`` (if given) keeps the stats."""
    eng = engine or FilmEngine(model, keyframes, FilmOptions(**opts))
    for frame in frames:
        eng.push(frame)
        yield from eng.results()
    eng.finish()
    yield from eng.results()


def with_detail(ab_small: np.ndarray, shape: Tuple[int, int], detail: List[tuple], threads: int = 1) -> np.ndarray:
    """Planar (2, H, W) float32: the model-size ab upsampled as compose does it, plus each keyframe's detail
    (``(detail plane, positions, weight)``: the keyframe's int16 detail sampled bilinearly where the model-size
    positions (h, w, 2), upsampled, point, times the upsampled weight (h, w)), in one pass
    (``core.upsample_detail``)."""
    H, W = shape
    motions = [np.ascontiguousarray(np.concatenate([np.moveaxis(P, -1, 0), weight[None]]), dtype=np.float32)
               for _, P, weight in detail]
    return core.upsample_detail(np.ascontiguousarray(np.moveaxis(ab_small, -1, 0), dtype=np.float32), H, W,
                                [d for d, _, _ in detail], motions, DETAIL_SCALE, threads=threads)


def compose(source: _TableSource, result: tuple) -> np.ndarray:
    _, gray, ab_small, ab_full, detail = result
    if ab_full is not None:
        return source.compose_full(gray, ab_full)
    if detail:
        return source.compose_planar(gray, with_detail(ab_small, gray.shape, detail, source.threads))
    return source.compose(gray, ab_small)


def colorize_frames(model, frames: Iterable[np.ndarray], keyframes: Sequence[np.ndarray] = (),
                    stats: Optional[Dict[str, Any]] = None, placements: Optional[Dict[int, int]] = None,
                    **opts) -> Iterator[np.ndarray]:
    """Colorize a film given as an iterable of gray (H,W) or color (H,W,3) uint8 frames in display order.

    Yields one uint8 RGB (H,W,3) frame per input, in order, each with its input's luminance. ``keyframes``:
    the color keyframes (uint8 (H,W,3) RGB) the model was fit on; each is located in the film by its
    luminance. Memory is bounded by ``window`` held frames (see the module docstring), not the film's length.
    ``stats`` (a dict) is filled at the end with counts: frames, shots, table calls, keyframes placed.
    ``placements``: {frame index: keyframe index} when known (e.g. from :func:`locate_keyframes`); else the
    keyframes are located on the fly (one pass: a keyframe goes to the first clear match, and later only
    to better ones). ``opts``: fields of :class:`FilmOptions`.
    """
    eng = FilmEngine(model, keyframes, FilmOptions(**opts), placements=placements)
    for r in engine_results(model, frames, engine=eng):
        yield compose(eng.source, r)
    if stats is not None:
        stats.update(eng.stats())


def locate_keyframes(model, frames: Iterable[np.ndarray], keyframes: Sequence[np.ndarray],
                     **opts) -> Dict[int, int]:
    """{frame index: keyframe index} from a whole pass over ``frames`` (what colorize_video does first).

    Pass the result as ``placements=`` to :func:`colorize_frames` when the frames can be read twice.
    """
    eng = FilmEngine(model, keyframes, FilmOptions(**opts))
    rows = []
    for f in frames:
        g = _to_gray(f)
        eng.start(g.shape)
        rows.append(kf.scores(eng.key_sigs, eng.signature_of(g)))
    if not rows or eng.key_sigs is None:
        return {}
    return kf.locate(np.stack(rows), eng.opt.match_threshold, eng.opt.lookahead)
