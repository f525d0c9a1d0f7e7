"""The colorizer users hold: :func:`fit` builds a :class:`Model`, which colorizes, recolors, evaluates and saves.

A model is its classifier, its quantizer and its color table (all fixed by fitting, with the
:class:`FitSettings`), plus :class:`ColorizeSettings` that can be changed without refitting
(:meth:`Model.with_settings`, or keyword overrides on each call). The stages themselves live in
:mod:`hyperchroma.pipeline`, the lookup chain in :mod:`hyperchroma.lookup`, files in :mod:`hyperchroma.model_io`.
"""

from __future__ import annotations

import os
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Union

import numpy as np

from . import core, pipeline, workspace
from .classifier import Classifier
from .fitting import ClassifierArg, as_classifier, fit_parts
from .images import ImageError, ImageLike, expand_inputs, load_image, resize_rgb
from .calibration import Calibration
from .lookup import Status
from .pipeline import Colorization
from .quantizer import Quantizer
from .settings import ColorizeSettings, FitSettings, Settings, split
from .table import ColorTable


def cpu_budget() -> int:
    """Threads a model uses by default: the cores this process may run on (at most 8)."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    return max(1, min(n, 8))


# colorize_batch's worker threads, kept per worker count for the process: a thread's scratch buffers (the lookup
# chain's, the guided filter's, the classifier's) and its miss memo outlive one batch, so a batch does not pay for
# new threads and first-call allocations. A forked child starts with none (the parent's threads are not there).
_pools: Dict[int, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()
_worker = threading.local()


def _mark_worker() -> None:
    _worker.active = True


def _forget_pools() -> None:
    global _pools_lock
    _pools.clear()
    _pools_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pools)


def _batch_pool(workers: int) -> ThreadPoolExecutor:
    with _pools_lock:
        pool = _pools.get(workers)
        if pool is None:
            pool = _pools[workers] = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hyperchroma-batch",
                                                        initializer=_mark_worker)
        return pool


def _check_threads(threads: Optional[int]) -> int:
    if threads is None:
        return cpu_budget()
    if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= 256:
        raise ValueError(f"threads must be an integer in 1..256 (or None for the cores here), got {threads!r}")
    return threads


class Model:
    """A fitted colorizer. Build one with :func:`hyperchroma.fit` or :func:`hyperchroma.load`.

    Thread-safe: ``colorize`` may be called from several threads at once. ``threads`` is the model's whole
    thread budget: one call uses all of it; :meth:`colorize_batch` splits it among its workers, so workers x
    kernel threads x ONNX Runtime threads never exceed it.
    """

    def __init__(self, classifier: Classifier, quantizer: Quantizer, table: ColorTable,
                 fit_settings: FitSettings, colorize_settings: Optional[ColorizeSettings] = None,
                 threads: Optional[int] = None, keyframes: Sequence[np.ndarray] = (),
                 calibration: Optional[Calibration] = None):
        taps = quantizer.projection.matrices if quantizer.projection is not None else None
        if taps is not None and [p.shape[0] for p in taps] != [t.channels for t in classifier.taps]:
            raise ValueError("the quantizer's projection does not match the classifier's taps")
        if taps is None and quantizer.channels != classifier.channels:
            raise ValueError(f"the quantizer has {quantizer.channels} channels, the classifier's taps "
                             f"{classifier.channels}")
        if (table.channels, table.levels) != (quantizer.channels, quantizer.levels):
            raise ValueError("the color table and the quantizer disagree on channels or levels")
        if quantizer.levels != fit_settings.levels:
            raise ValueError(f"the quantizer has {quantizer.levels} levels, the settings say {fit_settings.levels}")
        table.finalize()
        self.classifier = classifier
        self.quantizer = quantizer
        self.color_table = table
        self.fit_settings = fit_settings.checked()
        self.colorize_settings = (colorize_settings or ColorizeSettings()).checked()
        self.threads = _check_threads(threads)
        self.keyframes: List[np.ndarray] = [np.ascontiguousarray(k) for k in keyframes]
        self.calibration = calibration

    # ------------------------------------------------------------------------------------------ parts
    @property
    def settings(self) -> Settings:
        """Both kinds of settings; their fields also read as attributes (``model.settings.levels``)."""
        return Settings(self.fit_settings, self.colorize_settings)

    @property
    def table(self) -> "core.Table":
        """The hash table of key -> color (the color table's ``core.Table``)."""
        return self.color_table.table

    @property
    def thresholds(self) -> np.ndarray:
        return self.quantizer.thresholds

    @property
    def weights(self) -> np.ndarray:
        return self.quantizer.weights

    @property
    def channels(self) -> int:
        return self.quantizer.channels

    def with_settings(self, *, threads: Optional[int] = None, **overrides: Any) -> "Model":
        """The same fitted model with other :class:`ColorizeSettings` (and/or another thread budget); the
        classifier, quantizer and table are shared, not copied."""
        return Model(self.classifier, self.quantizer, self.color_table, self.fit_settings,
                     self.colorize_settings.replace(**overrides), self.threads if threads is None else threads,
                     self.keyframes, self.calibration)

    def _settings(self, overrides: Dict[str, Any]) -> ColorizeSettings:
        return self.colorize_settings.replace(**overrides) if overrides else self.colorize_settings

    # ------------------------------------------------------------------------------------- colorizing
    def colorize(self, image: ImageLike, *, details: bool = False, return_status: bool = False,
                 **overrides: Any) -> Any:
        """Colorize one image: gray (H, W) or color (H, W, 3) (then only its luminance is used).

        Returns uint8 RGB (H, W, 3) at the input's resolution that converts back to the input's gray version
        exactly (Pillow ``convert("L")``, ITU-R 601 luma); with
        ``details=True`` a :class:`Colorization` (rgb, per-pixel status and distance at model size, ab).
        Keyword overrides (``median_size=5``...) change :class:`ColorizeSettings` for this call only.
        ``return_status=True`` (deprecated: use ``details``) returns ``(rgb, status, distance)``.
        """
        if not (details or return_status):
            return self._colorize_rgb(load_image(image), self._settings(overrides), self.threads)
        result = self._colorize_loaded(load_image(image), self._settings(overrides), self.threads)
        if return_status:
            warnings.warn("colorize(return_status=True) is deprecated; use details=True (a Colorization)",
                          DeprecationWarning, stacklevel=2)
            return result.rgb, result.status, result.distance
        return result

    def _colorize_rgb(self, img: np.ndarray, settings: ColorizeSettings, threads: int) -> np.ndarray:
        """The latency path: the RGB only, every intermediate array in this thread's workspace."""
        return pipeline.colorize_rgb(self.classifier, self.quantizer, self.color_table, img, self.fit_settings.size,
                                     settings, threads, self.calibration, workspace.for_thread())

    def _colorize_loaded(self, img: np.ndarray, settings: ColorizeSettings, threads: int) -> Colorization:
        prepared = pipeline.prepare(img, self.fit_settings.size, borders=settings.borders)
        return pipeline.colorize(self.classifier, self.quantizer, self.color_table, prepared, settings, threads,
                                 self.calibration)

    def colorize_batch(self, images: Sequence[ImageLike], workers: Optional[int] = None, *, details: bool = False,
                       **overrides: Any) -> List[Any]:
        """Colorize many images, results in input order. The thread budget is split among ``workers``
        (default: one per budget thread), each running single images with its share."""
        images = expand_inputs(images)
        settings = self._settings(overrides)
        workers = max(1, min(len(images), _check_threads(workers) if workers is not None else self.threads))
        share = max(1, self.threads // workers)

        def one(im: ImageLike) -> Any:
            if details:
                return self._colorize_loaded(load_image(im), settings, share)
            return self._colorize_rgb(load_image(im), settings, share)

        if workers <= 1 or getattr(_worker, "active", False):  # (a batch inside a batch runs in its worker)
            return [one(im) for im in images]
        return list(_batch_pool(workers).map(one, images))

    def recolor(self, image: ImageLike, strength: float = 1.0, **overrides: Any) -> np.ndarray:
        """Color correction: recolor a color image from the model, keeping its own luma exactly.

        ``strength`` blends from the image's own colors (0) to the model's (1). Pixels the model leaves
        gray keep their own colors.
        """
        if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not 0.0 <= float(strength) <= 1.0:
            raise ValueError(f"strength must be a number in [0, 1], got {strength!r}")
        img = load_image(image)
        if img.ndim != 3:
            raise ImageError("recolor needs a color image; use colorize for gray ones")
        if strength == 0:
            return img.copy()
        t = self.threads
        ab_own = core.rgb_to_lab(img, threads=t)[1]
        settings = self._settings(overrides)
        prepared = pipeline.prepare(img, self.fit_settings.size, borders=settings.borders)
        ab_model, found = pipeline.model_colors(self.classifier, self.quantizer, self.color_table, prepared,
                                                settings, t)
        own_small = core.rgb_to_lab(resize_rgb(img, prepared.shape))[1]
        known = (found.status != Status.GRAY).reshape(prepared.shape)[..., None]
        conf, _ = pipeline.confidence(self.calibration, found, prepared.shape, settings)
        if conf is not None and settings.use_confidence:
            strength = strength * conf  # low confidence leaves the image's own colors
        delta = (np.where(known, ab_model, own_small) - own_small) * np.float32(strength)
        H, W = img.shape[:2]
        delta_full = core.upsample_bilinear(np.ascontiguousarray(np.moveaxis(delta, -1, 0)), H, W, threads=t)
        ab = np.ascontiguousarray(np.moveaxis(ab_own, -1, 0) + delta_full, dtype=np.float32)
        return core.compose_luma(prepared.luma, ab, planar=True, threads=t)

    # ----------------------------------------------------------------------------------------- film
    def colorize_frames(self, frames: Iterable[np.ndarray], *, keyframes: Optional[Sequence[np.ndarray]] = None,
                        stats: Optional[Dict[str, Any]] = None, **film_options: Any) -> Iterator[np.ndarray]:
        """Colorize a film streamed as gray (H, W) or color (H, W, 3) uint8 frames in display order: one uint8
        RGB frame out per frame in, in order, with bounded memory. The model's keyframes (its color training
        images, or ``keyframes``) are located in the film by themselves and their colors carried along the
        motion; the table fills what motion cannot see. ``film_options``: :class:`hyperchroma.video.FilmOptions`.
        """
        from .video import colorize_frames

        keys = self.keyframes if keyframes is None else list(keyframes)
        return colorize_frames(self, frames, keys, stats=stats, **film_options)

    def colorize_video(self, src: Union[str, "os.PathLike[str]"], dst: Union[str, "os.PathLike[str]"], *,
                       keyframes: Optional[Sequence[np.ndarray]] = None, codec: str = "libx264", crf: int = 18,
                       container: Optional[str] = None, progress: bool = False, **options: Any) -> Dict[str, Any]:
        """Colorize the video file ``src`` into ``dst`` (audio, timestamps, size and rotation kept; written whole
        or not at all); returns stats. See :func:`hyperchroma.video.colorize_video`."""
        from .video import colorize_video

        keys = self.keyframes if keyframes is None else list(keyframes)
        return colorize_video(self, src, dst, keys, codec=codec, crf=crf, container=container, progress=progress,
                              **options)

    # --------------------------------------------------------------------------- evaluation and files
    def evaluate(self, images: Sequence[ImageLike], pass_share: float = 0.5, progress: bool = False,
                 names: Optional[Sequence[str]] = None) -> Dict[str, Any]:
        """The paper's test stage on color images; see :func:`hyperchroma.evaluation.evaluate`."""
        from .evaluation import evaluate

        return evaluate(self, images, pass_share=pass_share, progress=progress, names=names)

    def save(self, path: Union[str, "os.PathLike[str]"]) -> None:
        """Write the model (classifier included) to one file, atomically."""
        from .model_io import save

        save(self, path)

    def __repr__(self) -> str:
        s = self.fit_settings
        return (f"Model(entries={len(self.table)}, channels={self.channels}, levels={s.levels}, policy={s.policy!r}, "
                f"size={s.size}, classifier={self.classifier.identity[:12]})")


def fit(images: Union[ImageLike, Sequence[ImageLike]], classifier: ClassifierArg = None, size: int = 224,
        levels: int = 3, policy: str = "mean", *, progress: bool = False, threads: Optional[int] = None,
        **settings: Any) -> Model:
    """Fit a colorizer on color images (paths, folders, PIL images or uint8 (H, W, 3) arrays).

    ``settings`` are the other :class:`FitSettings` (``tolerance``, ``vote_bin``, ``samples_per_image``,
    ``seed``) and :class:`ColorizeSettings` (``median_size``, ``max_distance``...) fields. Runs the phases of
    :mod:`hyperchroma.fitting`: sample hypercolumns, learn the quantizer, fill the table, finalize it.
    """
    fit_settings, colorize_settings = split(dict(settings, size=size, levels=levels, policy=policy))
    budget = _check_threads(threads)
    clf = as_classifier(classifier)
    quantizer, table, keyframes, calibration = fit_parts(expand_inputs(images), clf, fit_settings, budget, progress,
                                                         colorize_settings)
    return Model(clf, quantizer, table, fit_settings, colorize_settings, budget, keyframes, calibration)


def load(path: Union[str, "os.PathLike[str]"], classifier: Optional[Classifier] = None,
         threads: Optional[int] = None) -> Model:
    """Load a model saved with :meth:`Model.save` (see :func:`hyperchroma.model_io.load`)."""
    from .model_io import load as _load

    return _load(path, classifier, threads)
