"""Uniform edge bars: letterbox and pillarbox bars, thin black frames, scan margins.

Archive film scans and many photos have them: rows or columns at the image's edges whose pixels are nearly
constant (black, near-black and noisy, dark gray, or any other uniform level). Fed to the classifier they
change its hypercolumns well inside the picture (its receptive field and the resize to model size), so the
model's confidence in the whole image collapses. :func:`content_box` finds them so the pipeline can run the
model on the picture inside (:mod:`hyperchroma.pipeline`) and leave the bars neutral.

A side's bar is the longest run of edge rows (columns), starting at the edge, in which every row

- has at least :data:`FULL_SHARE` of its pixels within ``tol`` gray levels of the bar's level (the lower
  median of the edge row itself; ``tol`` grows with the edge row's noise ``spread``, which must be at most
  :data:`MAX_SPREAD` for a dark bar and :data:`FLAT_SPREAD` for a brighter one: very low variance along the
  bar), and
- has the mean of those pixels within ``max(MIN_DRIFT, spread // 2)`` of the level (a slow gradient such as a
  night sky drifts off it);

then up to :data:`RAGGED` more rows (no more than the run's own; a row among them all at the level but
drifting off it makes a gradient, no bar) that still hold at least :data:`RAGGED_SHARE` of bar-level pixels (a
ragged 1-2 px edge) are cut with it; and the run counts only when the band of rows just inside the cut is
clearly not bar (at most :data:`STEP_SHARE` of its pixels at the bar's level: a step to the content), when it
is at most :data:`MAX_SHARE` of the side and leaves a picture of at least :data:`MIN_CONTENT` of the image
(and 16 pixels) each way. So dark content that fades (a night sky) or a dark region that does not span the
whole edge is never taken for a bar. The sides are found together, and once more inside those bars for the
sides that had none (bars of another level); content is never peeled off layer by layer.

:func:`run_py` finds a side's run of bar rows row by row (the slow, obvious reference); :func:`run` is the
same over blocks of rows (tested equal on random images); :func:`finish` adds the ragged rows and the step
test.
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Tuple

import numpy as np

#: A bar row holds at least this share of pixels at the bar's level (dust and grain may make the rest).
FULL_SHARE = 0.98
#: The edge row's noise ``spread`` (the 90th percentile of its pixels' distances to its level; 1.6 sigma of
#: gaussian noise, 1.3 sigma of noise clipped at black) at most (gray levels): very low variance.
MAX_SPREAD = 6
#: A bar brighter than this level (a white scan margin, a flat digital frame) must be flat: a spread of at most
#: FLAT_SPREAD, so that uniform bright content at an edge (a wall, a stripe, a sky) is not taken for one.
DARK_LEVEL = 64
FLAT_SPREAD = 1
#: Pixels within ``max(MIN_TOL, TOL_PER_SPREAD * spread)`` gray levels of the level are at the bar's level.
MIN_TOL = 6
TOL_PER_SPREAD = 2.5
#: The mean of a bar row's bar-level pixels stays within ``max(MIN_DRIFT, spread // 2)`` of the level.
MIN_DRIFT = 2
#: Rows of a ragged edge cut with the bar, at most (and at most as many as the bar's own rows), and the share of
#: bar-level pixels that makes one.
RAGGED = 3
RAGGED_SHARE = 0.2
#: The band just inside the cut (``max(2, n // STEP_DIV)`` rows) holds at most this share of bar-level pixels.
STEP_SHARE = 0.6
STEP_DIV = 100
#: A bar covers at most this share of its side's dimension, and the picture keeps at least MIN_CONTENT of it.
MAX_SHARE = 0.35
MIN_CONTENT = 0.25
#: Rows (columns) shorter than this have no bars.
MIN_LENGTH = 8


class Box(NamedTuple):
    """The picture inside the bars: rows ``top:bottom`` and columns ``left:right`` of the image."""

    top: int
    bottom: int
    left: int
    right: int

    @property
    def shape(self) -> tuple:
        return self.bottom - self.top, self.right - self.left

    def is_full(self, height: int, width: int) -> bool:
        """True when there are no bars (the box is the whole ``height`` x ``width`` image)."""
        return self == (0, height, 0, width)


class _Bar(NamedTuple):
    level: int
    tol: int
    drift: int


def _bar(edge: np.ndarray) -> Optional[_Bar]:
    """The level, tolerance and drift of a bar whose edge row is ``edge``, or None when it is too noisy."""
    m = edge.shape[0]
    level = int(np.partition(edge, m // 2)[m // 2])
    dev = np.abs(edge.astype(np.int32) - level)
    k = min(m - 1, (9 * m) // 10)
    spread = int(np.partition(dev, k)[k])
    if spread > (MAX_SPREAD if level <= DARK_LEVEL else FLAT_SPREAD):
        return None
    return _Bar(level, max(MIN_TOL, int(TOL_PER_SPREAD * spread + 0.5)), max(MIN_DRIFT, spread // 2))


def _is_bar_row(cnt: int, total: int, m: int, bar: _Bar) -> bool:
    """Integer form of the bar-row test from a row's count and sum of bar-level pixels (exact, so that the
    reference and the block version agree bit for bit)."""
    return cnt * 100 >= FULL_SHARE * 100 * m and abs(total - bar.level * cnt) <= bar.drift * cnt


Run = Tuple[int, Optional[_Bar]]


def finish(plane: np.ndarray, run: Run) -> int:
    """The cut of a side from its run of bar rows (``run``: their number and the bar, from :func:`run` or
    :func:`run_py`): the run, the ragged rows after it, and the step test; 0 when that is no bar. ``plane`` has
    the rows the run was measured on, and may leave out the columns of the other sides' bars."""
    full, bar = run
    n, m = plane.shape
    if bar is None or full == 0 or full > int(MAX_SHARE * n) or m == 0:
        return 0
    near = np.abs(plane[full:min(n, full + min(RAGGED, full))].astype(np.int32) - bar.level) <= bar.tol
    cut = full
    for k, c in enumerate(near.sum(axis=1)):
        if int(c) * 100 >= FULL_SHARE * 100 * m:
            return 0  # all at the level but drifting off it: a gradient, not a bar
        if int(c) * 100 >= RAGGED_SHARE * 100 * m:
            cut = full + k + 1
    if cut > int(MAX_SHARE * n):
        return 0
    band = max(2, n // STEP_DIV)
    if cut + band > n:
        return 0
    near = np.abs(plane[cut:cut + band].astype(np.int32) - bar.level) <= bar.tol
    return cut if int(near.sum()) * 100 <= STEP_SHARE * 100 * band * m else 0


def run_py(plane: np.ndarray) -> Run:
    """The run of bar rows at the top of ``plane`` (n, m) uint8, one row at a time: (its length, the bar), (0,
    None) when the edge row is no bar's (the reference of :func:`run`)."""
    n, m = plane.shape
    if n < 4 or m < MIN_LENGTH:
        return 0, None
    bar = _bar(plane[0])
    if bar is None:
        return 0, None
    limit = int(MAX_SHARE * n)
    full = 0
    while full <= limit:
        row = plane[full].astype(np.int64)
        near = np.abs(row - bar.level) <= bar.tol
        if not _is_bar_row(int(near.sum()), int(row[near].sum()), m, bar):
            break
        full += 1
    return full, bar


def _counts(rows: np.ndarray, bar: _Bar) -> Tuple[np.ndarray, np.ndarray]:
    """Per row of ``rows`` (k, m): the count and the sum of its bar-level pixels."""
    v = rows.astype(np.int32)
    near = np.abs(v - bar.level) <= bar.tol
    return near.sum(axis=1, dtype=np.int64), np.where(near, v, 0).sum(axis=1, dtype=np.int64)


def run(plane: np.ndarray) -> Run:
    """:func:`run_py` over blocks of rows growing 8 times each step, so an image without bars costs a row or
    two (any strides: the other sides are flipped or transposed views)."""
    n, m = plane.shape
    if n < 4 or m < MIN_LENGTH:
        return 0, None
    bar = _bar(plane[0])
    if bar is None:
        return 0, None
    limit = int(MAX_SHARE * n)
    full, block = 0, 1
    while full <= limit:
        stop = min(n, full + block, limit + 1)
        cnt, total = _counts(plane[full:stop], bar)
        ok = (cnt * 100 >= FULL_SHARE * 100 * m) & (np.abs(total - bar.level * cnt) <= bar.drift * cnt)
        bad = np.flatnonzero(~ok)
        if bad.size:
            return full + int(bad[0]), bar
        full = stop
        block *= 8
    return full, bar


def leading_py(plane: np.ndarray) -> int:
    """Rows of bar at the top of ``plane`` (n, m) uint8, row by row (the reference of :func:`leading`)."""
    return finish(plane, run_py(plane))


def leading(plane: np.ndarray) -> int:
    """Rows of bar at the top of ``plane`` (n, m) uint8 (any strides); 0 when there is none."""
    return finish(plane, run(plane))


def content_box(gray: np.ndarray, reference: bool = False) -> Box:
    """The picture inside the uniform edge bars of a gray image (H, W) uint8 (the whole image when it has none).

    A round measures the four sides' runs of bar rows, then each side's ragged rows and step within the
    columns (rows) the other sides' runs leave, so that a side bar never counts as a top bar's ragged edge; a
    second round, inside the bars of the first, looks again at the sides that had none. ``reference=True``
    uses :func:`run_py`."""
    if gray.ndim != 2 or gray.dtype != np.uint8:
        raise ValueError(f"content_box: expected a (H, W) uint8 gray image, got {gray.shape} {gray.dtype}")
    side = run_py if reference else run
    H, W = gray.shape
    t, b, l, r = 0, H, 0, W
    found = [False] * 4
    for _ in range(2):
        sub = gray[t:b, l:r]
        h, w = sub.shape
        runs = [(0, None) if done else side(v)
                for done, v in zip(found, (sub, sub[::-1], sub.T, sub.T[::-1]))]
        ft, fb, fl, fr = (f if bar is not None and f <= int(MAX_SHARE * n) else 0
                          for (f, bar), n in zip(runs, (h, h, w, w)))
        cols, rows = sub[:, fl:w - fr], sub[ft:h - fb]
        top, bottom = finish(cols, runs[0]), finish(cols[::-1], runs[1])
        left, right = finish(rows.T, runs[2]), finish(rows.T[::-1], runs[3])
        if top + bottom >= h:
            top = bottom = 0
        if left + right >= w:
            left = right = 0
        if not (top or bottom or left or right):
            break
        t, b, l, r = t + top, b - bottom, l + left, r - right
        found = [f or bool(c) for f, c in zip(found, (top, bottom, left, right))]
    if b - t < max(16, MIN_CONTENT * H) or r - l < max(16, MIN_CONTENT * W):
        return Box(0, H, 0, W)
    return Box(t, b, l, r)
