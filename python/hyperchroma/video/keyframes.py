"""Locating the color keyframes in a stream of gray frames by their model-size luminance.

Each keyframe and each frame is reduced to a small luminance image, normalized to zero mean and unit
standard deviation (so a different luma formula or a codec's level shift does not matter); the score of a
frame against a keyframe is the mean absolute difference of the two (0 for the same picture, about 1 for
unrelated pictures). A keyframe is placed at the frame of lowest score within a run of frames that score under
``threshold``; the run's best is final once ``lookahead`` frames have passed without a better one, when the
run ends (a frame scores above the threshold), or at a cut. A keyframe may so be placed more than once
(a shot that returns); one that is never placed is reported and still colors the table it was fit on.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np

THUMB = (48, 36)  # (w, h) of the matching images


def luma(rgb: np.ndarray) -> np.ndarray:
    """uint8 gray (ITU-R 601 luma, what PIL's convert("L") and most players give) of an RGB uint8 image."""
    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)


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
    """Streaming placement of keyframes; feed frames in order, collect (frame index, keyframe index) pairs."""

    def __init__(self, key_sigs: Sequence[np.ndarray], threshold: float = 0.25, lookahead: int = 6):
        self.keys = np.stack(key_sigs).astype(np.float32) if len(key_sigs) else np.zeros((0,) + THUMB[::-1],
                                                                                          np.float32)
        self.threshold = float(threshold)
        self.lookahead = int(lookahead)
        k = self.keys.shape[0]
        self._best: List[Optional[Tuple[float, int]]] = [None] * k  # open run: (score, frame)
        self._closed = np.zeros(k, bool)  # run finalized by lookahead; wait for the score to rise again
        self.placed: List[Tuple[int, int, float]] = []  # (frame, key, score), in the order they were final

    def open_frames(self) -> List[int]:
        """Frames currently holding an open run's best (they must not be output yet)."""
        return [b[1] for b in self._best if b is not None]

    def feed(self, index: int, sig: np.ndarray, cut: bool) -> List[Tuple[int, int]]:
        """Frame ``index`` (signature ``sig``; ``cut``: it starts a new shot). Returns newly final placements."""
        out: List[Tuple[int, int]] = []
        if cut:
            out += self._finish_all()
            self._closed[:] = False
        s = scores(self.keys, sig)
        for k in range(self.keys.shape[0]):
            b = self._best[k]
            if s[k] >= self.threshold:
                self._closed[k] = False
                if b is not None:
                    out.append(self._finish(k))
                continue
            if self._closed[k]:
                continue
            if b is None or s[k] < b[0]:
                self._best[k] = (float(s[k]), index)
            elif index - b[1] >= self.lookahead:
                out.append(self._finish(k))
                self._closed[k] = True
        return self._dedupe(out)

    def flush(self) -> List[Tuple[int, int]]:
        """At the end of the stream: every open run's best."""
        return self._dedupe(self._finish_all())

    def _finish(self, k: int) -> Tuple[int, int]:
        score, frame = self._best[k]
        self._best[k] = None
        self.placed.append((frame, k, score))
        return frame, k

    def _finish_all(self) -> List[Tuple[int, int]]:
        return [self._finish(k) for k in range(len(self._best)) if self._best[k] is not None]

    def _dedupe(self, found: List[Tuple[int, int]]) -> List[Tuple[int, int]]:
        """One keyframe per frame: where two land on one frame, the better score wins."""
        best = {}
        for frame, k in found:
            sc = next(s for f, kk, s in reversed(self.placed) if f == frame and kk == k)
            if frame not in best or sc < best[frame][1]:
                best[frame] = (k, sc)
        return sorted((f, ks[0]) for f, ks in best.items())
