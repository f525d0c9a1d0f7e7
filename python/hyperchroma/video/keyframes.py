"""Locating the color keyframes in a stream of gray frames by their model-size luminance.

Each keyframe and each frame is reduced to a small luminance image, normalized to zero mean and unit
standard deviation (so a different luma formula or a codec's level shift does not matter); the score of a
frame against a keyframe is the mean absolute difference of the two (0 for the same picture, about 1 for
unrelated pictures; about 0.02-0.1 between neighbouring frames of a slow shot). A keyframe is placed at a
clear local minimum of its score (see :class:`KeyframeLocator`); it may so be placed more than once (a shot
that returns); one that is never placed is reported and still colors the table it was fit on.
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

import cv2
import numpy as np

from .. import images

THUMB = (48, 36)  # (w, h) of the matching images


def luma(rgb: np.ndarray) -> np.ndarray:
    """uint8 gray (ITU-R 601 luma, exactly PIL's convert("L")) of an RGB uint8 image."""
    return images.luma(np.ascontiguousarray(rgb))


def signature(gray_small: np.ndarray) -> np.ndarray:
    """Normalized matching image (THUMB) float32 of a gray uint8 image."""
    t = cv2.resize(gray_small, THUMB, interpolation=cv2.INTER_AREA).astype(np.float32)
    return (t - t.mean()) / max(float(t.std()), 2.0)


def scores(keys: np.ndarray, sig: np.ndarray) -> np.ndarray:
    """(K,) mean absolute difference of a frame's signature to each keyframe's (keys: (K, h, w))."""
    if keys.shape[0] == 0:
        return np.zeros(0, np.float32)
    return np.abs(keys - sig[None]).mean(axis=(1, 2))


class KeyframeLocator:
    """Streaming placement of keyframes; feed frames in order, collect (frame index, keyframe index) pairs.

    Frame c is keyframe k's place when, among the frames of its shot within ``lookahead`` either side, its
    score is the lowest (ties: the first), it is under ``threshold``, and it is a clear dip: under ``ratio``
    times the median score of that neighbourhood (frames c-1, c, c+1 left out), or under ``identical`` (a
    still shot, where every frame is the keyframe). A placed keyframe is placed again only after its score
    has risen over the threshold (the shot moved on), after a cut, or at a clearly better match (under
    ``better`` times its best placed score, less 0.005): one pass cannot know that a near-repeat early in the
    film is not the keyframe's own frame. Decisions come ``lookahead`` frames late.
    """

    def __init__(self, key_sigs: Sequence[np.ndarray], threshold: float = 0.2, lookahead: int = 6,
                 ratio: float = 0.6, identical: float = 0.01, better: float = 0.8):
        k = len(key_sigs)
        self.keys = np.stack(key_sigs).astype(np.float32) if k else np.zeros((0, THUMB[1], THUMB[0]), np.float32)
        self.threshold, self.lookahead = float(threshold), int(lookahead)
        self.ratio, self.identical, self.better = float(ratio), float(identical), float(better)
        self._best_placed = np.full(k, np.inf)
        self._hist: List[Tuple[int, np.ndarray]] = []  # (frame, scores) of the current shot, last 2L+1
        self._next = 0  # next candidate frame to decide
        self._closed = np.zeros(k, bool)
        self.placed: List[Tuple[int, int, float]] = []  # (frame, key, score)

    def undecided_from(self) -> int:
        """Earliest frame that may still be placed (frames before it can go out)."""
        return self._next

    def feed(self, index: int, sig: np.ndarray, cut: bool) -> List[Tuple[int, int]]:
        """Frame ``index`` (signature ``sig``; ``cut``: it starts a new shot). Returns newly final placements."""
        out: List[Tuple[int, int]] = []
        if cut:
            out += self.flush()
            self._closed[:] = False
            self._next = index
        self._hist.append((index, scores(self.keys, sig)))
        while self._next <= index - self.lookahead:
            out += self._decide(self._next)
            self._next += 1
        self._hist = [h for h in self._hist if h[0] >= self._next - self.lookahead]
        return out

    def flush(self) -> List[Tuple[int, int]]:
        """End of the shot or stream: decide the remaining frames with the neighbours there are."""
        out: List[Tuple[int, int]] = []
        last = self._hist[-1][0] if self._hist else self._next - 1
        while self._next <= last:
            out += self._decide(self._next)
            self._next += 1
        self._hist = []
        return out

    def _decide(self, c: int) -> List[Tuple[int, int]]:
        L = self.lookahead
        win = [(f, s) for f, s in self._hist if c - L <= f <= c + L]
        frames = np.array([f for f, _ in win])
        S = np.stack([s for _, s in win]) if win else np.zeros((0, self.keys.shape[0]))
        pos = int(np.flatnonzero(frames == c)[0])
        found: List[Tuple[int, int, float]] = []
        for k in range(self.keys.shape[0]):
            col = S[:, k]
            sc = float(col[pos])
            if sc >= self.threshold:
                self._closed[k] = False
                continue
            if self._closed[k] and not sc < self.better * self._best_placed[k] - 0.005:
                continue
            if (col[:pos] <= sc).any() or (col[pos + 1:] < sc).any():
                continue
            ctx = col[np.abs(frames - c) > 1]
            if sc < self.identical or (ctx.size and sc < self.ratio * float(np.median(ctx))):
                found.append((c, k, sc))
        if not found:
            return []
        c_, k, sc = min(found, key=lambda x: x[2])  # one keyframe per frame: the best
        for _, kk, _ in found:
            self._closed[kk] = True
        self._best_placed[k] = min(self._best_placed[k], sc)
        self.placed.append((c_, k, sc))
        return [(c_, k)]


def locate(S: np.ndarray, threshold: float = 0.2, lookahead: int = 6, ratio: float = 0.6,
           identical: float = 0.01, repeat: Tuple[float, float] = (1.25, 0.005)) -> dict:
    """Whole-film placement from the score matrix S (frames x keyframes): {frame: keyframe}.

    The candidates are the clear dips of :class:`KeyframeLocator`'s rule (no refractory period); a keyframe with
    none (a still shot, flat in its score) takes its best frame where that scores below ``ratio`` times the
    film's median for it, or below ``4 * identical``. A keyframe goes to its best candidate, and to every other candidate scoring within ``repeat`` (factor, margin) of
    that best (a shot that returns); so a near-repeat elsewhere in the film no longer steals it. Where two
    keyframes land on one frame, the better score wins.
    """
    S = np.asarray(S, np.float64)
    n, k = S.shape
    cands: List[Tuple[float, int, int]] = []
    for j in range(k):
        col = S[:, j]
        before = len(cands)
        for c in np.flatnonzero(col < threshold):
            lo, hi = max(0, c - lookahead), min(n, c + lookahead + 1)
            sc = col[c]
            if (col[lo:c] <= sc).any() or (col[c + 1:hi] < sc).any():
                continue
            idx = np.arange(lo, hi)
            ctx = col[lo:hi][np.abs(idx - c) > 1]
            if sc < identical or (ctx.size and sc < ratio * float(np.median(ctx))):
                cands.append((float(sc), int(c), j))
        if len(cands) == before:
            # no clear dip: a still shot matches the keyframe alike in every frame (a lossy film: not below
            # ``identical`` either). Its best frame still counts where it stands out from the film as a whole,
            # or nearly is the keyframe (a film of one still shot has no "rest" to stand out from).
            c = int(np.argmin(col))
            if col[c] < threshold and (col[c] < ratio * float(np.median(col)) or col[c] < 4 * identical):
                cands.append((float(col[c]), c, j))
    best = {}
    for sc, c, j in cands:
        best[j] = min(best.get(j, np.inf), sc)
    out: dict = {}
    for sc, c, j in sorted(cands):
        if sc <= repeat[0] * best[j] + repeat[1] and c not in out:
            out[c] = j
    return dict(sorted(out.items()))
