"""The colorizer: fit a hypercolumn -> color table on color images, colorize gray ones, evaluate, save/load.

Data flows once, left to right (see DESIGN.md): image -> CIE L -> classifier taps at model size -> fused
packed keys -> hash table lookup -> nearest stored key for misses (sorted index) or gray -> median filter ->
ab upsampled to the input's resolution and joined with its own L -> RGB.
"""

from __future__ import annotations

import hashlib
import math
import numbers
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import __version__, core, metrics, model_file
from .classifier import Classifier
from .images import ImageError, ImageLike, expand_inputs, lightness, load_image, model_gray, model_shape, resize_rgb

# Per-pixel status of a colorization.
STATUS_GRAY = 0  #: nothing close enough in the table: left gray
STATUS_EXACT = 1  #: the pixel's key is in the table
STATUS_NEAREST = 2  #: colored from the nearest stored key

POLICIES = ("mark", "mean", "vote")


@dataclass(frozen=True)
class Settings:
    """Everything that shapes a model besides its classifier and learned arrays."""

    size: int = 224  #: long side of the image the classifier and table work at
    levels: int = 3  #: quantization levels per hypercolumn channel
    policy: str = "mean"  #: conflict policy: "mark" (paper), "mean" or "vote"
    tolerance: float = 12.0  #: ab distance for "mark" conflicts / ab bin width for "vote"
    median_size: int = 3  #: median filter on the ab result (1 = off)
    max_distance: float = 5.0  #: nearest keys farther than this (in quantization levels, L2) leave the pixel gray
    max_scan: int = 64  #: candidates scanned around the binary-search position for a missing key
    exact: bool = False  #: exact nearest key instead of the bounded scan
    seed_radius: int = 1  #: image neighbors (within this radius) found in the table seed the nearest-key search
    one_step: bool = True  #: first probe the table for keys one quantization step away (distance 1)

    def check(self) -> "Settings":
        """Validate every field; return the settings with numpy scalars turned into plain Python values."""

        def integer(name: str, lo: int, hi: Optional[int] = None) -> int:
            v = getattr(self, name)
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral):
                raise TypeError(f"{name} must be an integer, got {v!r}")
            if v < lo or (hi is not None and v > hi):
                raise ValueError(f"{name} must be an integer in {lo}..{hi if hi is not None else 'inf'}, got {v!r}")
            return int(v)

        def real(name: str, positive: bool, finite: bool) -> float:
            v = getattr(self, name)
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
                raise TypeError(f"{name} must be a number, got {v!r}")
            v = float(v)
            if math.isnan(v) or v < 0 or (positive and v == 0) or (finite and math.isinf(v)):
                raise ValueError(f"{name} must be a {'finite ' if finite else ''}number "
                                 f"{'> 0' if positive else '>= 0'}, got {v!r}")
            return v

        if self.policy not in POLICIES:
            raise ValueError(f"policy must be one of {', '.join(POLICIES)}, got {self.policy!r}")
        for flag in ("exact", "one_step"):
            if not isinstance(getattr(self, flag), (bool, np.bool_)):
                raise TypeError(f"{flag} must be True or False, got {getattr(self, flag)!r}")
        median = integer("median_size", 1)
        if median % 2 == 0:
            raise ValueError(f"median_size must be an odd integer >= 1, got {median}")
        return Settings(size=integer("size", 16), levels=integer("levels", 2, 256), policy=str(self.policy),
                        tolerance=real("tolerance", True, True), median_size=median,
                        max_distance=real("max_distance", False, False), max_scan=integer("max_scan", 1),
                        exact=bool(self.exact), seed_radius=integer("seed_radius", 0), one_step=bool(self.one_step))


def _threads() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


def _as_classifier(classifier: Union[None, str, os.PathLike, Classifier]) -> Classifier:
    if classifier is None:
        return Classifier()
    if isinstance(classifier, Classifier):
        return classifier
    if isinstance(classifier, (str, os.PathLike)):
        return Classifier(classifier)
    raise TypeError(f"classifier must be None, a path to an ONNX file or a Classifier, got {type(classifier).__name__}")


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


def projection_weights(levels_sample: np.ndarray) -> np.ndarray:
    """Unit-norm first principal component of quantized hypercolumns: the sorted index's projection."""
    q = levels_sample.astype(np.float64)
    q -= q.mean(axis=0)
    cov = q.T @ q
    vals, vecs = np.linalg.eigh(cov)
    w = vecs[:, -1] if vals[-1] > 0 else np.ones(q.shape[1])
    if w.sum() < 0:
        w = -w
    return (w / np.linalg.norm(w)).astype(np.float32)


class Model:
    """A fitted colorizer. Build one with :func:`hyperchroma.fit` or :func:`hyperchroma.load`.

    Thread-safe: ``colorize`` may be called from several threads at once.
    """

    def __init__(self, classifier: Classifier, thresholds: np.ndarray, weights: np.ndarray, table: "core.Table",
                 settings: Settings):
        self.classifier = classifier
        self.settings = settings.check()
        self.thresholds = np.ascontiguousarray(thresholds, dtype=np.float32)
        self.weights = np.ascontiguousarray(weights, dtype=np.float32)
        self.table = table
        self.channels = int(self.thresholds.shape[0])
        entries = table.entries()
        usable = ~np.asarray(entries["conflicting"], dtype=bool)
        self.index = core.SortedIndex(
            np.ascontiguousarray(entries["keys"][usable]), np.ascontiguousarray(entries["ab"][usable]),
            self.weights, self.channels, self.settings.levels,
        )
        self.threads = _threads()
        self._local = threading.local()

    # ------------------------------------------------------------------ colorizing
    def _tap_buffers(self, shape: Tuple[int, int]) -> List[np.ndarray]:
        """This thread's reusable classifier outputs for one model-size shape (the latency path's buffers)."""
        cache = getattr(self._local, "taps", None)
        if cache is None:
            cache = self._local.taps = {}
        out = cache.get(shape)
        if out is None:
            if len(cache) >= 8:  # many image sizes: keep the memory bounded
                cache.clear()
            out = cache[shape] = [np.empty(s, np.float32) for s in self.classifier.output_shapes(*shape)]
        return out

    def _keys(self, gray_small: np.ndarray) -> np.ndarray:
        h, w = gray_small.shape
        maps = self.classifier.run(gray_small, out=self._tap_buffers((h, w)))
        keys, _ = core.hypercolumn_keys(maps, h, w, self.thresholds, self.weights, threads=self.threads)
        return keys

    def _ab_small(self, img: np.ndarray, shape: Tuple[int, int],
                  L: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """ab (h,w,2) at model size, status (h,w) uint8 and nearest-key distance (h,w) float32.

        A key in the table gives its color. A missing key takes the nearest stored key's color: first the
        mean color of the stored keys one quantization step away (``one_step``: distance 1, the nearest
        possible); failing that, the best of the found keys of its image neighbors (``seed_radius``) and the
        sorted index's scan around its projection (pruned at the best neighbor's distance); beyond
        ``max_distance`` the pixel stays gray.
        """
        s = self.settings
        h, w = shape
        keys = self._keys(model_gray(img, shape, L))
        ab, hit = self.table.lookup(keys, threads=self.threads)
        found = (hit == core.STATUS_HIT).view(np.uint8)
        status = found.copy()  # STATUS_EXACT where found, STATUS_GRAY elsewhere
        distance = np.zeros(len(keys), np.float32)
        miss = np.flatnonzero(found == 0)
        if miss.size and s.one_step and s.max_distance >= 1:
            ab1, hits = self.table.lookup_one_step(keys[miss], threads=self.threads)
            near = hits > 0
            ab[miss[near]] = ab1[near]
            status[miss[near]] = STATUS_NEAREST
            distance[miss[near]] = 1.0
            miss = miss[~near]
        if miss.size:
            bounds = None
            if s.seed_radius > 0:
                seed, seed_d = core.neighbor_seeds(keys, found, h, w, self.channels, s.levels, s.seed_radius,
                                                   threads=self.threads)
                seed, bounds = seed[miss], seed_d[miss]
            idx, dist = self.index.search(keys[miss], max_distance=s.max_distance, max_scan=s.max_scan,
                                          exact=s.exact, threads=self.threads, bounds=bounds)
            from_index = idx >= 0
            colors = self.index.colors(idx)
            dist = np.where(from_index, dist, np.inf).astype(np.float32)
            if bounds is not None:
                from_seed = ~from_index & (seed >= 0) & (bounds <= s.max_distance)
                colors[from_seed] = ab[seed[from_seed]]
                dist[from_seed] = bounds[from_seed]
                from_index |= from_seed
            ab[miss] = colors
            status[miss] = np.where(from_index, STATUS_NEAREST, STATUS_GRAY)
            distance[miss] = dist
        ab = ab.reshape(h, w, 2)
        if s.median_size > 1:
            ab = core.median_filter(ab, s.median_size, threads=self.threads)
        return ab, status.reshape(h, w), distance.reshape(h, w)

    def _compose(self, L: np.ndarray, ab_small: np.ndarray) -> np.ndarray:
        H, W = L.shape
        planar = np.ascontiguousarray(np.moveaxis(ab_small, -1, 0))
        ab_full = core.upsample_bilinear(planar, H, W, threads=self.threads)
        return core.lab_to_rgb(L, ab_full, planar=True, threads=self.threads)

    def colorize(self, image: ImageLike, *, return_status: bool = False):
        """Colorize one image: gray (H,W) or color (H,W,3) (then only its luminance is used).

        Returns uint8 RGB (H,W,3) at the input's resolution whose lightness is the input's. With
        ``return_status=True`` returns ``(rgb, status, distance)``: per-pixel status at model size
        (STATUS_EXACT / STATUS_NEAREST / STATUS_GRAY) and the nearest-key distance (0 for exact hits).
        """
        img = load_image(image)
        rgb, status, distance = self._colorize_loaded(img, lightness(img, self.threads))
        return (rgb, status, distance) if return_status else rgb

    def _colorize_loaded(self, img: np.ndarray, L: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """colorize() on a loaded image whose full-resolution lightness L is already computed."""
        shape = model_shape(img.shape[0], img.shape[1], self.settings.size)
        ab, status, distance = self._ab_small(img, shape, L)
        return self._compose(L, ab), status, distance

    def colorize_batch(self, images: Sequence[ImageLike], workers: Optional[int] = None) -> List[np.ndarray]:
        """Colorize many images, keeping every core busy; results in input order."""
        images = expand_inputs(images)
        workers = workers or _threads()
        if workers <= 1 or len(images) <= 1:
            return [self.colorize(im) for im in images]
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(self.colorize, images))

    def recolor(self, image: ImageLike, strength: float = 1.0) -> np.ndarray:
        """Color correction: recolor a color image from the model, keeping its own luminance.

        ``strength`` blends from the image's own colors (0) to the model's (1). Pixels the model leaves
        gray keep their own colors.
        """
        if not 0.0 <= float(strength) <= 1.0:
            raise ValueError(f"strength must be in [0, 1], got {strength!r}")
        img = load_image(image)
        if img.ndim != 3:
            raise ImageError("recolor needs a color image; use colorize for gray ones")
        H, W = img.shape[:2]
        shape = model_shape(H, W, self.settings.size)
        L, ab_own = core.rgb_to_lab(img, threads=self.threads)
        ab_model, status, _ = self._ab_small(img, shape, L)
        own_small = core.rgb_to_lab(resize_rgb(img, shape))[1]
        known = (status != STATUS_GRAY)[..., None]
        target = np.where(known, ab_model, own_small)
        delta = (target - own_small) * np.float32(strength)
        planar = np.ascontiguousarray(np.moveaxis(delta, -1, 0))
        delta_full = core.upsample_bilinear(planar, H, W, threads=self.threads)
        ab = np.moveaxis(ab_own, -1, 0) + delta_full
        return core.lab_to_rgb(L, np.ascontiguousarray(ab, dtype=np.float32), planar=True, threads=self.threads)

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, images: Sequence[ImageLike], pass_share: float = 0.5, progress: bool = False,
                 names: Optional[Sequence[str]] = None) -> Dict[str, Any]:
        """The paper's test stage on color images (colorized from their luminance, compared with the truth).

        Per image: psnr, psnr_gray, auc, auc_gray, colorfulness (ours, truth); an image passes when its AuC
        beats the all-gray baseline. The verdict says the model is fit for these images when at least
        ``pass_share`` of them pass.
        """
        from tqdm import tqdm

        images = expand_inputs(images)
        if not images:
            raise ValueError("evaluate needs at least one color image")
        if names is not None and len(names) != len(images):
            raise ValueError(f"names: {len(names)} names for {len(images)} images")
        _check_share(pass_share)
        rows = []
        for i, im in enumerate(tqdm(images, desc="evaluate", unit="img", disable=not progress)):
            truth = load_image(im)
            name = names[i] if names else (os.fspath(im) if isinstance(im, (str, os.PathLike)) else f"image {i}")
            if truth.ndim != 3:
                raise ImageError(f"evaluate needs color images (the truth): {name} is grayscale")
            rows.append(self._score(truth, name))
        return summarize(rows, pass_share)

    def _score(self, truth: np.ndarray, name: str) -> Dict[str, Any]:
        L, ab_true = core.rgb_to_lab(truth, threads=self.threads)
        pred = self._colorize_loaded(truth, L)[0]
        gray = core.lab_to_rgb(L, np.zeros_like(ab_true))
        ab_pred = core.rgb_to_lab(pred, threads=self.threads)[1]
        ab_gray = core.rgb_to_lab(gray)[1]
        r = {
            "name": name,
            "psnr": metrics.psnr(pred, truth),
            "psnr_gray": metrics.psnr(gray, truth),
            "auc": metrics.auc(ab_pred, ab_true),
            "auc_gray": metrics.auc(ab_gray, ab_true),
            "colorfulness": metrics.colorfulness(pred),
            "colorfulness_true": metrics.colorfulness(truth),
        }
        r["passed"] = bool(r["auc"] > r["auc_gray"])
        return r

    # ------------------------------------------------------------------ persistence
    def save(self, path: Union[str, os.PathLike]) -> None:
        """Write the model (classifier included) to one file, atomically."""
        e = self.table.entries()
        meta = {
            "hyperchroma": __version__,
            "settings": asdict(self.settings),
            "classifier": {"identity": self.classifier.identity,
                           "taps": [[t.name, int(t.channels), int(t.stride)] for t in self.classifier.taps]},
            "entries": len(self.table),
        }
        arrays = {
            "classifier": np.frombuffer(self.classifier.model_bytes, np.uint8),
            "thresholds": self.thresholds,
            "weights": self.weights,
            "table_keys": e["keys"],
            "table_ab": e["ab"],
            "table_counts": e["counts"],
            "table_conflicting": np.asarray(e["conflicting"], dtype=bool),
        }
        model_file.save(path, meta, arrays)

    def __repr__(self) -> str:
        s = self.settings
        return (f"Model(entries={len(self.table)}, channels={self.channels}, levels={s.levels}, policy={s.policy!r}, "
                f"size={s.size}, classifier={self.classifier.identity[:12]})")


def _check_share(pass_share: float) -> None:
    if isinstance(pass_share, bool) or not isinstance(pass_share, numbers.Real) or not 0 <= pass_share <= 1:
        raise ValueError(f"pass_share must be a number in [0, 1], got {pass_share!r}")


def summarize(rows: List[Dict[str, Any]], pass_share: float = 0.5) -> Dict[str, Any]:
    _check_share(pass_share)
    keys = ("psnr", "psnr_gray", "auc", "auc_gray", "colorfulness", "colorfulness_true")
    mean = {k: float(np.mean([r[k] for r in rows])) for k in keys}
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


def fit(images: Union[ImageLike, Sequence[ImageLike]], classifier: Union[None, str, os.PathLike, Classifier] = None,
        size: int = 224, levels: int = 3, policy: str = "mean", *, tolerance: float = 12.0, median_size: int = 3,
        max_distance: float = 5.0, max_scan: int = 64, exact: bool = False, seed_radius: int = 1,
        one_step: bool = True, samples_per_image: int = 4096,
        progress: bool = False, seed: int = 0) -> Model:
    """Fit a colorizer on color images (paths, folders, PIL images or uint8 (H,W,3) arrays).

    Thresholds are learned from the training hypercolumns (equal-fill levels per channel), the table is
    filled under ``policy`` and the sorted index built from its usable entries.
    """
    from tqdm import tqdm

    settings = Settings(size, levels, policy, tolerance, median_size, max_distance, max_scan, exact,
                        seed_radius, one_step).check()
    images = expand_inputs(images)
    if not images:
        raise ValueError("fit needs at least one color training image")
    if samples_per_image < 1:
        raise ValueError(f"samples_per_image must be >= 1, got {samples_per_image}")
    clf = _as_classifier(classifier)
    rng = np.random.default_rng(seed)
    threads = _threads()

    # Pass 1: run the classifier once per image, sample hypercolumns for the thresholds, keep the maps
    # (up to a memory budget) so pass 2 need not run the classifier again.
    budget = 1 << 30
    kept: List[Any] = []
    samples = []
    for i, im in enumerate(tqdm(images, desc="fit: features", unit="img", disable=not progress)):
        img = load_image(im)
        if img.ndim != 3:
            name = os.fspath(im) if isinstance(im, (str, os.PathLike)) else f"image {i}"
            raise ImageError(f"training images must be color: {name} is grayscale")
        shape = model_shape(img.shape[0], img.shape[1], settings.size)
        maps = clf.run(model_gray(img, shape))
        ab = core.rgb_to_lab(resize_rgb(img, shape))[1].reshape(-1, 2)
        hc = core.hypercolumns(maps, shape[0], shape[1], threads=threads)
        take = rng.choice(hc.shape[0], size=min(samples_per_image, hc.shape[0]), replace=False)
        samples.append(hc[take])
        nbytes = sum(m.nbytes for m in maps)
        if budget >= nbytes:
            budget -= nbytes
            kept.append((maps, shape, ab))
        else:
            kept.append((None, shape, ab))
    sample = np.concatenate(samples)
    thresholds = learn_thresholds(sample, settings.levels)
    sample_levels = np.stack([np.searchsorted(thresholds[c], sample[:, c], side="right")
                              for c in range(sample.shape[1])], axis=1)
    weights = projection_weights(sample_levels)

    # Pass 2: keys for every training pixel into the table.
    table = core.Table(sample.shape[1], settings.levels, settings.policy, settings.tolerance,
                       vote_bin=settings.tolerance)
    for i, (maps, shape, ab) in enumerate(tqdm(kept, desc="fit: table", unit="img", disable=not progress)):
        if maps is None:
            maps = clf.run(model_gray(load_image(images[i]), shape))
        keys, _ = core.hypercolumn_keys(maps, shape[0], shape[1], thresholds, weights, threads=threads)
        table.insert(keys, ab)
    table.shrink_to_fit()
    return Model(clf, thresholds, weights, table, settings)


def load(path: Union[str, os.PathLike], classifier: Optional[Classifier] = None) -> Model:
    """Load a model saved with :meth:`Model.save`.

    Refuses (``ModelFileError``) a missing, truncated, corrupt or foreign file, or a classifier other than
    the one the table was built with.
    """
    meta, arrays = model_file.load(path)
    where = os.fspath(path)
    try:
        settings = Settings(**meta["settings"]).check()
        identity = meta["classifier"]["identity"]
        need = ("classifier", "thresholds", "weights", "table_keys", "table_ab", "table_counts", "table_conflicting")
        missing = [n for n in need if n not in arrays]
        if missing:
            raise ValueError(f"missing arrays {missing}")
    except (KeyError, TypeError, ValueError) as e:
        raise model_file.ModelFileError(f"'{where}' is not a usable hyperchroma model ({e})") from None
    embedded = arrays["classifier"].tobytes()
    if hashlib.sha256(embedded).hexdigest() != identity:
        raise model_file.ModelFileError(f"'{where}': the embedded classifier does not match its recorded identity")
    if classifier is not None and classifier.identity != identity:
        raise model_file.ModelFileError(
            f"'{where}' was built with classifier {identity[:12]}, not the given {classifier.identity[:12]}: "
            "a table only works with the classifier it was fit with")
    clf = classifier or Classifier.from_bytes(embedded)
    thresholds = arrays["thresholds"]
    if sum(t.channels for t in clf.taps) != thresholds.shape[0]:
        raise model_file.ModelFileError(f"'{where}': the classifier's taps do not match the table's channels")
    try:
        table = core.Table.from_entries(int(thresholds.shape[0]), settings.levels, settings.policy, settings.tolerance,
                                        arrays["table_keys"], arrays["table_ab"], arrays["table_counts"],
                                        arrays["table_conflicting"], vote_bin=settings.tolerance)
    except ValueError as e:
        raise model_file.ModelFileError(f"'{where}' has an inconsistent table ({e})") from None
    return Model(clf, thresholds, arrays["weights"], table, settings)
