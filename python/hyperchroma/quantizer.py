"""The quantizer: per-channel thresholds that turn hypercolumns into levels, and the projection (weights of
the weighted sum) the sorted index orders keys by. Learned at fit time from sampled hypercolumns.

A classifier with many channels (an ImageNet backbone taps thousands) would give keys no two pixels share.
So a :class:`Projection` (PCA of the sampled hypercolumns to ``K`` channels) is learned too when the taps
have more than ``key_channels`` channels. Bilinear upsampling is linear, so the projection runs per tap at
the tap's own resolution (a 1x1 map of its channels), taps of one size are summed there, and only the K
projected channels are upsampled: a big backbone costs its forward pass plus that small map (Hariharan et
al. 2015).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import core
from .workspace import Workspace


def _axis(src: int, dst: int, pos: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weights of output positions ``pos`` along one axis: half-pixel centers, edges
    clamped, the convention of the core's bilinear upsampling (``core.upsample_bilinear``)."""
    s = np.maximum((pos + 0.5) * (src / dst) - 0.5, 0.0)
    a = np.floor(s).astype(np.int64)
    f = s - a
    top = a >= src - 1
    a = np.where(top, src - 1, a)
    f = np.where(top, 0.0, f)
    return a, np.minimum(a + 1, src - 1), f.astype(np.float32)


def sample_taps(maps: Sequence[np.ndarray], shape: Tuple[int, int], ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Hypercolumns (N, sum of channels) float32 at the pixels (ys, xs) of the ``shape`` image, each tap
    bilinearly upsampled as the core does, without upsampling whole maps."""
    H, W = shape
    out = []
    for m in maps:
        _, h, w = m.shape
        y0, y1, fy = _axis(h, H, ys.astype(np.float64))
        x0, x1, fx = _axis(w, W, xs.astype(np.float64))
        top = m[:, y0, x0] * (1 - fx) + m[:, y0, x1] * fx
        bottom = m[:, y1, x0] * (1 - fx) + m[:, y1, x1] * fx
        out.append((top * (1 - fy) + bottom * fy).T)
    return np.ascontiguousarray(np.concatenate(out, axis=1), dtype=np.float32)


@dataclass(frozen=True)
class Projection:
    """A linear map of the hypercolumns to ``K`` channels, ``(x - mean) @ matrix``, split per tap:
    ``matrices[i]`` (C_i, K) float32 for tap i, ``mean`` (K,) float32 (the projected mean, subtracted)."""

    matrices: Tuple[np.ndarray, ...]
    mean: np.ndarray
    _groups: Dict[Tuple[int, int], List[int]] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        mats = tuple(np.ascontiguousarray(m, dtype=np.float32) for m in self.matrices)
        mean = np.ascontiguousarray(self.mean, dtype=np.float32).reshape(-1)
        if not mats or any(m.ndim != 2 or m.shape[1] != mean.size for m in mats):
            raise ValueError(f"projection: expected per-tap (C_i, {mean.size}) matrices")
        if not all(np.all(np.isfinite(m)) for m in mats) or not np.all(np.isfinite(mean)):
            raise ValueError("projection: not finite")
        object.__setattr__(self, "matrices", mats)
        object.__setattr__(self, "mean", mean)

    @property
    def channels(self) -> int:
        return int(self.mean.size)

    @classmethod
    def learn(cls, samples: np.ndarray, tap_channels: Sequence[int], k: int, balance: bool = False,
              components: int = 0, passthrough: int | None = None, thermometer: int = 0) -> "Projection":
        """PCA of sampled hypercolumns (N, C) to the ``k`` leading components, split per tap.

        ``balance``: first scale every tap to the same total variance, so that the components are not all
        drawn from the widest (deepest, coarsest) taps; the scale is folded into the matrices.
        ``components`` > 0: at most that many principal components (fewer key channels hit the table more
        often).
        ``passthrough``: the index of a tap kept out of the PCA (the gray tap): its first channel fills
        ``thermometer`` key channels (copies, which :meth:`Quantizer.learn` quantizes at interleaved
        thresholds: ``thermometer * (levels - 1) + 1`` levels of it), each other channel one; these come
        after the PCA channels, and ``k`` counts them (the PCA gets what is left, at least one)."""
        x = samples.astype(np.float64)
        C = x.shape[1]
        own = np.ones(C, bool)
        extra = 0
        if passthrough is not None:
            start = int(sum(tap_channels[:passthrough]))
            c = int(tap_channels[passthrough])
            own[start:start + c] = False
            extra = max(1, thermometer) + c - 1
        mu = np.where(own, x.mean(axis=0), 0.0)
        xc = (x - mu)[:, own]
        scale = np.ones(xc.shape[1])
        if balance:
            start = 0
            for i, c in enumerate(tap_channels):
                if i == passthrough:
                    continue
                var = float(xc[:, start:start + c].var(axis=0).sum())
                scale[start:start + c] = 1.0 / np.sqrt(var) if var > 0 else 1.0
                start += c
            xc = xc * scale
        vals, vecs = np.linalg.eigh(xc.T @ xc)
        vals, vecs = vals[::-1], vecs[:, ::-1]
        kp = max(1, min(k - extra, xc.shape[1], components or k))
        p = np.zeros((C, kp + extra))
        p[own, :kp] = vecs[:, :kp] * scale[:, None]  # largest components first, tap scales folded in
        if passthrough is not None:
            start = int(sum(tap_channels[:passthrough]))
            m = max(1, thermometer)
            p[start, kp:kp + m] = 1.0
            for j in range(1, int(tap_channels[passthrough])):
                p[start + j, kp + m + j - 1] = 1.0
        mats, start = [], 0
        for c in tap_channels:
            mats.append(p[start:start + c])
            start += c
        return cls(tuple(mats), (mu @ p).astype(np.float32))

    def project_samples(self, samples: np.ndarray) -> np.ndarray:
        """(N, C) hypercolumns -> (N, K)."""
        return (samples @ np.concatenate(self.matrices, axis=0) - self.mean).astype(np.float32)

    def apply(self, maps: Sequence[np.ndarray], shape: Tuple[int, int], threads: int = 1) -> np.ndarray:
        """The projected hypercolumns (K, H, W) float32 of tap maps: each tap projected at its own resolution,
        taps of one size summed, each size's K channels upsampled and accumulated in one pass (the fused core
        kernel ``core.project_upsample``; :meth:`apply_reference` is its numpy reference)."""
        if len(maps) != len(self.matrices):
            raise ValueError(f"projection: {len(self.matrices)} taps expected, got {len(maps)}")
        return core.project_upsample(list(maps), list(self.matrices), self.mean, shape[0], shape[1], threads=threads)

    def apply_reference(self, maps: Sequence[np.ndarray], shape: Tuple[int, int], threads: int = 1) -> np.ndarray:
        """:meth:`apply` in numpy: a matrix product per tap, an upsampling per tap size, sums."""
        if len(maps) != len(self.matrices):
            raise ValueError(f"projection: {len(self.matrices)} taps expected, got {len(maps)}")
        by_size: Dict[Tuple[int, int], np.ndarray] = {}
        for m, p in zip(maps, self.matrices):
            c, h, w = m.shape
            z = (p.T @ m.reshape(c, h * w)).reshape(-1, h, w)
            key = (h, w)
            by_size[key] = z if key not in by_size else by_size[key] + z
        H, W = shape
        out = np.zeros((self.channels, H, W), np.float32)
        for z in by_size.values():
            out += core.upsample_bilinear(np.ascontiguousarray(z, dtype=np.float32), H, W, threads=threads)
        out -= self.mean[:, None, None]
        return out


def learn_thresholds(samples: np.ndarray, levels: int) -> np.ndarray:
    """Per-channel thresholds (C, levels-1) splitting the samples (N, C) into equally filled levels.

    Ties are common (ReLU taps are mostly exact zeros), so each threshold splits what is left above the
    previous one, and always separates at least the lowest remaining value: a level is never empty by
    construction, as plain quantiles would make it.
    """
    n, C = samples.shape
    out = np.empty((C, levels - 1), np.float32)
    top = np.finfo(np.float32).max
    for c in range(C):
        s = np.sort(samples[:, c].astype(np.float32))
        start = 0
        for k in range(levels - 1):
            if start >= n:
                out[c, k:] = top
                break
            idx = min(n - 1, start + int(np.ceil((n - start) / (levels - k))))
            t = s[idx]
            if t <= s[start]:  # a tie mass at the bottom: put the cut just above it
                j = int(np.searchsorted(s, s[start], side="right"))
                t = s[j] if j < n else top
            out[c, k] = t
            start = int(np.searchsorted(s, t, side="left"))
    return out


def thermometer_thresholds(values: np.ndarray, levels: int, copies: int) -> np.ndarray:
    """Thresholds (copies, levels-1) of ``copies`` key channels that all hold the same value: cut at
    interleaved quantiles of ``values``, so that together they split it into ``copies * (levels - 1) + 1``
    about equally filled levels (a thermometer code; one step between neighbouring levels)."""
    s = np.sort(np.asarray(values, np.float32).reshape(-1))
    n = s.size
    total = copies * (levels - 1) + 1
    out = np.empty((copies, levels - 1), np.float32)
    for j in range(copies):
        for k in range(levels - 1):
            out[j, k] = s[min(n - 1, (n * (j + k * copies + 1)) // total)]
    return out


def quantize(samples: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Levels (N, C) uint8 of hypercolumns (N, C): the number of a channel's thresholds at or below the value."""
    return np.stack([np.searchsorted(thresholds[c], samples[:, c], side="right")
                     for c in range(samples.shape[1])], axis=1).astype(np.uint8)


def projection_weights(levels_sample: np.ndarray) -> np.ndarray:
    """Unit-norm first principal component of quantized hypercolumns: the sorted index's projection."""
    q = levels_sample.astype(np.float64)
    q -= q.mean(axis=0)
    vals, vecs = np.linalg.eigh(q.T @ q)
    w = vecs[:, -1] if vals[-1] > 0 else np.ones(q.shape[1])
    if w.sum() < 0:
        w = -w
    return (w / np.linalg.norm(w)).astype(np.float32)


@dataclass(frozen=True)
class Quantizer:
    """Thresholds (C, levels-1) float32, sorted per channel, and projection weights (C,) float32; with a
    ``projection``, C is its K channels and the keys are made from the projected hypercolumns."""

    thresholds: np.ndarray
    weights: np.ndarray
    projection: Optional[Projection] = None

    def __post_init__(self) -> None:
        t = np.ascontiguousarray(self.thresholds, dtype=np.float32)
        w = np.ascontiguousarray(self.weights, dtype=np.float32)
        if t.ndim != 2 or t.shape[0] < 1 or t.shape[1] < 1:
            raise ValueError(f"thresholds: expected (channels, levels - 1), got shape {t.shape}")
        if w.shape != (t.shape[0],):
            raise ValueError(f"weights: expected ({t.shape[0]},) for {t.shape[0]} channels, got shape {w.shape}")
        if not (np.all(np.isfinite(w)) and not np.any(np.isnan(t))):
            raise ValueError("thresholds and weights must be numbers (no NaN; weights finite)")
        if t.shape[1] > 1 and np.any(np.diff(t, axis=1) < 0):
            raise ValueError("thresholds must be sorted per channel")
        if self.projection is not None and self.projection.channels != t.shape[0]:
            raise ValueError(f"projection gives {self.projection.channels} channels, the thresholds have {t.shape[0]}")
        object.__setattr__(self, "thresholds", t)
        object.__setattr__(self, "weights", w)

    @classmethod
    def learn(cls, samples: np.ndarray, levels: int, tap_channels: Optional[Sequence[int]] = None,
              key_channels: int = 0, balance: bool = False, components: int = 0,
              gray_tap: int | None = None, gray_channels: int = 0) -> "Quantizer":
        """Learn thresholds (equal-fill levels) and the sort projection from sampled hypercolumns (N, C); with
        ``key_channels`` > 0 and more channels than that (or a ``gray_tap``), first a PCA :class:`Projection`
        to at most that many (of the taps scaled to equal variance with ``balance``, at most ``components``
        principal components, see :meth:`Projection.learn`).

        ``gray_tap``: the index of the classifier's gray tap (its first channel the gray value): with
        ``gray_channels`` > 0 it stays out of the PCA and its gray value gets that many key channels, cut at
        :func:`thermometer_thresholds`."""
        if samples.ndim != 2 or samples.shape[0] < 1:
            raise ValueError(f"samples: expected (N >= 1, channels) hypercolumns, got shape {samples.shape}")
        projection = None
        tap_channels = list(tap_channels or [samples.shape[1]])
        passthrough = gray_tap if gray_channels > 0 and gray_tap is not None else None
        if key_channels and (samples.shape[1] > key_channels or passthrough is not None):
            projection = Projection.learn(samples, tap_channels, key_channels, balance, components, passthrough,
                                          gray_channels)
            samples = projection.project_samples(samples)
        thresholds = learn_thresholds(samples, levels)
        if projection is not None and passthrough is not None:
            first = projection.channels - (tap_channels[passthrough] - 1) - gray_channels
            thresholds[first:first + gray_channels] = thermometer_thresholds(samples[:, first], levels, gray_channels)
        return cls(thresholds, projection_weights(quantize(samples, thresholds)), projection)

    @property
    def channels(self) -> int:
        return int(self.thresholds.shape[0])

    @property
    def levels(self) -> int:
        return int(self.thresholds.shape[1]) + 1

    def keys(self, maps: Sequence[np.ndarray], shape: Tuple[int, int], threads: int = 1,
             frame: Optional[Tuple[int, int]] = None, ws: Optional[Workspace] = None) -> np.ndarray:
        """Packed keys (h*w, words) uint64 of the tap maps upsampled to ``shape`` (fused C++ kernel).

        ``frame``: the (H, W) the maps cover when it is larger than the image (``classifier.frame(h, w)``, a
        reflect-padded input): the maps are upsampled to the frame and cropped to its top-left ``shape``, so
        keys stay aligned with their pixels. ``ws``: write the keys into its arrays (see
        :mod:`hyperchroma.workspace`)."""
        if frame is not None and tuple(frame) != tuple(shape):
            H, W = int(frame[0]), int(frame[1])
            h, w = shape
            if H < h or W < w:
                raise ValueError(f"frame: {H}x{W} is smaller than the image's {h}x{w}")
            if self.projection is not None:
                full = self.projection.apply(maps, (H, W), threads)
            else:
                full = np.concatenate([core.upsample_bilinear(np.ascontiguousarray(m, dtype=np.float32), H, W,
                                                              threads=threads) for m in maps])
            maps = [np.ascontiguousarray(full[:, :h, :w])]
        elif self.projection is not None:
            maps = [self.projection.apply(maps, shape, threads)]
        out = None
        if ws is not None:
            n = shape[0] * shape[1]
            out = (ws.get("keys", (n, core.key_words(self.channels, self.levels)), np.uint64),
                   ws.get("key_sums", (n,), np.float32))
        keys, _ = core.hypercolumn_keys(maps, shape[0], shape[1], self.thresholds, self.weights, threads=threads,
                                        out=out)
        return keys
