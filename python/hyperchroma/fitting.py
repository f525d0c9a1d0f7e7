"""Fitting in phases that can run separately and be combined:

1. :func:`sample_hypercolumns`: run the classifier on every color training image and sample hypercolumns
   (image i's pixels drawn with a generator seeded by (``seed``, i), so any machine can sample any image;
   the samples of several runs concatenate in image order);
2. :func:`learn_quantizer`: thresholds (equal-fill levels per channel) and the projection, from the samples;
3. :func:`fill_table`: every training pixel's key -> its color into an open :class:`ColorTable`;
4. ``table.finalize()``: settle the conflict policy, free the fitting-only data, build the sorted index;
5. :func:`learn_calibration`: how far the model's colors can be trusted (:mod:`hyperchroma.calibration`).

:func:`hyperchroma.fit` runs them in order and returns a :class:`hyperchroma.Model`;
:func:`hyperchroma.distributed.fit` runs phases 1 and 3 (and the classifier runs of phase 5) on a Dask
cluster and gives the same model: phase 3's tables of parts of the images merge exactly
(:meth:`ColorTable.merge`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import core
from .classifier import GRAY_TAP, Classifier
from .borders import content_box
from .images import ImageError, ImageLike, expand_inputs, load_image, luma, model_gray, model_shape, resize_rgb
from .calibration import MAX_IMAGES as MAX_CALIBRATION_IMAGES
from .calibration import Calibration, calibrate
from .lookup import lookup
from .pipeline import smooth
from .quantizer import Quantizer, sample_taps
from .settings import ColorizeSettings, FitSettings
from .table import ColorTable

ClassifierArg = Union[None, str, "os.PathLike[str]", Classifier]

#: Bytes of classifier outputs kept between phases 1 and 3 so phase 3 need not run the classifier again.
MAP_CACHE_BYTES = 1 << 30
#: Bytes of color training images a model keeps as film keyframes (the film path propagates their colors).
KEYFRAME_BYTES = 64 << 20


def as_classifier(classifier: ClassifierArg) -> Classifier:
    """A :class:`Classifier` from None (the shipped one), an ONNX path or a Classifier."""
    if classifier is None:
        return Classifier()
    if isinstance(classifier, Classifier):
        return classifier
    if isinstance(classifier, (str, os.PathLike)):
        return Classifier(classifier)
    raise TypeError(f"classifier must be None, a path to an ONNX file or a Classifier, got {type(classifier).__name__}")


@dataclass
class TrainingImage:
    """One color training image at model size: ``shape`` (h, w), classifier input ``gray`` and target ``ab``."""

    shape: Tuple[int, int]
    gray: np.ndarray
    ab: np.ndarray


def training_image(image: ImageLike, size: int, name: str, borders: bool = True) -> TrainingImage:
    """The image decoded at model size; with ``borders``, of the picture inside its uniform edge bars only
    (:func:`hyperchroma.borders.content_box`, as colorizing sees it), so that bars teach the table nothing."""
    img = load_image(image)
    if img.ndim != 3:
        raise ImageError(f"training images must be color: {name} is grayscale")
    if borders:
        box = content_box(luma(img))
        if not box.is_full(img.shape[0], img.shape[1]):
            img = np.ascontiguousarray(img[box.top:box.bottom, box.left:box.right])
    shape = model_shape(img.shape[0], img.shape[1], size)
    ab = core.rgb_to_lab(resize_rgb(img, shape))[1].reshape(-1, 2)
    return TrainingImage(shape, model_gray(img, shape), ab)


Cache = Tuple[TrainingImage, Optional[List[np.ndarray]]]


def _name(image: Any, i: int) -> str:
    return os.fspath(image) if isinstance(image, (str, os.PathLike)) else f"image {i}"


@dataclass
class HypercolumnSample:
    """Phase 1's result: ``hypercolumns`` (N, C) float32 sampled over the images, and what phase 3 can reuse
    (``cache``: image index -> (the decoded :class:`TrainingImage`, its classifier maps or None)), within
    :data:`MAP_CACHE_BYTES`."""

    hypercolumns: np.ndarray
    cache: Dict[int, Cache] = field(default_factory=dict)
    keyframes: List[np.ndarray] = field(default_factory=list)
    tap_channels: List[int] = field(default_factory=list)
    tap_names: list[str] = field(default_factory=list)


def available_memory() -> Optional[int]:
    """Bytes of memory available here (Linux ``MemAvailable``), None where unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_sample_memory(n_images: int, channels: int, settings: FitSettings) -> None:
    """Refuse, with the numbers and the fix, a fit whose sampled hypercolumns (and their PCA, for a wide
    classifier) would not fit in the memory available: better than a raw MemoryError minutes in."""
    per_image = min(settings.samples_per_image, settings.size * settings.size)
    need = 2 * n_images * per_image * channels * 4  # the samples, and their concatenation
    if settings.key_channels and channels > settings.key_channels:
        need += 3 * channels * channels * 8  # the covariance and its eigenvectors (float64)
    have = available_memory()
    if have is not None and need > have:
        raise ValueError(
            f"fit would need about {need / 2**30:.1f} GiB for the sampled hypercolumns ({n_images} images x "
            f"{per_image} samples x {channels} channels), more than the {have / 2**30:.1f} GiB available; lower "
            "samples_per_image (--samples-per-image), fit on fewer images, or tap fewer channels "
            "(Classifier(max_channels=...), --max-tap-channels)")


def sample_image(maps: List[np.ndarray], shape: Tuple[int, int], settings: FitSettings, index: int,
                 frame: Optional[Tuple[int, int]] = None) -> np.ndarray:
    """Phase 1 for one image: ``settings.samples_per_image`` of its hypercolumns, (n, C) float32, drawn with a
    generator seeded by (``settings.seed``, ``index``): the same wherever and in whatever order it runs.
    ``frame``: the classifier's frame of the image (``Classifier.frame``) when its maps cover a padded one."""
    h, w = shape
    rng = np.random.default_rng([settings.seed, index])
    take = rng.choice(h * w, size=min(settings.samples_per_image, h * w), replace=False)
    return sample_taps(maps, frame or shape, take // w, take % w)


def keyframe_picks(nbytes: Sequence[int], settings: FitSettings) -> List[int]:
    """Which training images (by index, from their decoded sizes) a model keeps as keyframes: in order, each
    one that still fits in :data:`KEYFRAME_BYTES`."""
    picks: List[int] = []
    budget = KEYFRAME_BYTES
    for i, n in enumerate(nbytes):
        if settings.keep_keyframes and n <= budget:
            budget -= n
            picks.append(i)
    if settings.keep_keyframes:
        warn_unkept_keyframes(len(picks), len(nbytes))
    return picks


def warn_unkept_keyframes(kept: int, total: int) -> None:
    """Say once (a warning; the CLI's is one line) when training images did not fit in the keyframe budget: a
    film colorized with the model propagates the colors of the kept ones only, the others teach the table."""
    if kept < total:
        import warnings

        warnings.warn(f"{total - kept} of {total} training images are not kept as film keyframes (a model keeps "
                      f"{KEYFRAME_BYTES / 2**20:g} MiB of decoded keyframes, in order): a film colorized with this model "
                      "carries the colors of the others only through its table; fit smaller keyframes (e.g. at "
                      "the film's size), or fewer, for a film; for a photo collection keep none (keep_keyframes=False, "
                      "fit --no-keyframes)",
                      stacklevel=3)


def sample_hypercolumns(images: Sequence[ImageLike], classifier: Classifier, settings: FitSettings,
                        threads: int = 1, progress: bool = False) -> HypercolumnSample:
    """Phase 1: ``settings.samples_per_image`` random hypercolumns of every image (:func:`sample_image`)."""
    from tqdm import tqdm

    check_sample_memory(len(images), classifier.channels, settings)

    budget = MAP_CACHE_BYTES
    samples, cache = [], {}
    keyframes: List[np.ndarray] = []
    key_budget = KEYFRAME_BYTES
    for i, im in enumerate(tqdm(images, desc="fit: features", unit="img", disable=not progress)):
        rgb = load_image(im)
        t = training_image(rgb, settings.size, _name(im, i), settings.borders)
        if settings.keep_keyframes and rgb.nbytes <= key_budget:
            key_budget -= rgb.nbytes
            keyframes.append(rgb)
        maps = classifier.run(t.gray, threads=threads)
        samples.append(sample_image(maps, t.shape, settings, i, classifier.frame(*t.shape)))
        nbytes = sum(m.nbytes for m in maps)
        keep = budget >= nbytes + t.gray.nbytes + t.ab.nbytes
        budget -= (nbytes if keep else 0) + t.gray.nbytes + t.ab.nbytes
        if budget >= 0:
            cache[i] = (t, maps if keep else None)
    if settings.keep_keyframes:
        warn_unkept_keyframes(len(keyframes), len(images))
    return HypercolumnSample(np.concatenate(samples), cache, keyframes, [t.channels for t in classifier.taps],
                             [t.name for t in classifier.taps])


def learn_quantizer(sample: Union[HypercolumnSample, np.ndarray], levels: int, key_channels: int = 0,
                    balance: bool = False, components: int = 0, gray_channels: int = 0) -> Quantizer:
    """Phase 2: the quantizer learned from phase 1's hypercolumns (or an (N, C) array of them), with a PCA
    projection to ``key_channels`` when the taps have more channels than that (of taps scaled to equal
    variance with ``balance``; at most ``components`` principal components); a classifier's gray tap
    (:data:`~hyperchroma.classifier.GRAY_TAP`) keeps ``gray_channels`` key channels of its own."""
    if isinstance(sample, HypercolumnSample):
        gray = sample.tap_names.index(GRAY_TAP) if GRAY_TAP in sample.tap_names else None
        return Quantizer.learn(sample.hypercolumns, levels, sample.tap_channels, key_channels, balance, components,
                               gray, gray_channels)
    return Quantizer.learn(np.asarray(sample, np.float32), levels, None, key_channels, balance, components)


def fill_table(images: Sequence[ImageLike], classifier: Classifier, quantizer: Quantizer, settings: FitSettings,
               table: Optional[ColorTable] = None, cache: Optional[Dict[int, Cache]] = None,
               threads: int = 1, progress: bool = False) -> ColorTable:
    """Phase 3: insert every pixel's key -> color of the images into ``table`` (a new open one by default).

    ``cache`` holds phase 1's decoded images and maps by image index, so those are not decoded or run again.
    """
    from tqdm import tqdm

    if table is None:
        table = ColorTable.empty(quantizer.channels, quantizer.levels, quantizer.weights, settings)
    for i, im in enumerate(tqdm(images, desc="fit: table", unit="img", disable=not progress)):
        if cache and i in cache:
            t, maps = cache[i]
        else:
            t, maps = training_image(im, settings.size, _name(im, i), settings.borders), None
        if maps is None:
            maps = classifier.run(t.gray, threads=threads)
        table.insert(quantizer.keys(maps, t.shape, threads, classifier.frame(*t.shape)), t.ab)
    return table


def learn_calibration(images: Sequence[ImageLike], classifier: Classifier, quantizer: Quantizer,
                      settings: FitSettings, colorize_settings: ColorizeSettings,
                      cache: Optional[Dict[int, Cache]] = None, threads: int = 1) -> Optional[Calibration]:
    """Phase 5: the confidence calibration, k-fold over (up to :data:`calibration.MAX_IMAGES`, evenly
    spread) training images; None when ``settings.calibration_folds`` is 0 or there is one image."""
    pick = calibration_picks(len(images), settings)
    if not pick:
        return None
    data = []
    for i in pick:
        if cache and i in cache:
            t, maps = cache[i]
        else:
            t, maps = training_image(images[i], settings.size, _name(images[i], i), settings.borders), None
        if maps is None:
            maps = classifier.run(t.gray, threads=threads)
        data.append((t, quantizer.keys(maps, t.shape, threads, classifier.frame(*t.shape))))
    return calibrate_keys(data, quantizer, settings, colorize_settings, threads)


def calibration_picks(n: int, settings: FitSettings) -> List[int]:
    """The indices of the training images phase 5 uses (none when it is off or there is one image)."""
    if settings.calibration_folds < 2 or n < 2:
        return []
    return [int(i) for i in np.unique(np.linspace(0, n - 1, min(n, MAX_CALIBRATION_IMAGES)).round().astype(int))]


def calibrate_keys(data: Sequence[Tuple[TrainingImage, np.ndarray]], quantizer: Quantizer, settings: FitSettings,
                   colorize_settings: ColorizeSettings, threads: int = 1) -> Calibration:
    """Phase 5 from the picked images' (:class:`TrainingImage`, keys), in :func:`calibration_picks` order."""

    def make_colorizer(train: List[int]) -> Any:
        table = ColorTable.empty(quantizer.channels, quantizer.levels, quantizer.weights, settings)
        for j in train:
            table.insert(data[j][1], data[j][0].ab)
        table.finalize()

        def colorize(i: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
            t, keys = data[i]
            found = lookup(table, keys, t.shape, colorize_settings, threads)
            ab = smooth(found.ab.reshape(t.shape[0], t.shape[1], 2), t.gray, colorize_settings, threads)
            return ab, found.status, found.distance

        return colorize

    return calibrate([t.ab for t, _ in data], make_colorizer, settings.calibration_folds)


def fit_parts(images: Sequence[ImageLike], classifier: Classifier, settings: FitSettings, threads: int = 1,
              progress: bool = False, colorize_settings: Optional[ColorizeSettings] = None
              ) -> Tuple[Quantizer, ColorTable, List[np.ndarray], Optional[Calibration]]:
    """Phases 1-5 on one machine: the quantizer, the finalized table, the keyframes kept (the decoded
    color images, up to :data:`KEYFRAME_BYTES`) and the confidence calibration."""
    images = expand_inputs(images)
    if not images:
        raise ValueError("fit needs at least one color training image")
    sample = sample_hypercolumns(images, classifier, settings, threads, progress)
    try:
        quantizer = learn_quantizer(sample, settings.levels, settings.key_channels, settings.balance_taps,
                                    settings.pca_channels, settings.gray_channels)
    except MemoryError:
        raise ValueError(f"out of memory learning the quantizer from {sample.hypercolumns.shape[0]} hypercolumns of "
                         f"{sample.hypercolumns.shape[1]} channels; lower samples_per_image or tap fewer channels "
                         "(Classifier(max_channels=...))") from None
    table = fill_table(images, classifier, quantizer, settings, cache=sample.cache, threads=threads,
                       progress=progress)
    table.finalize()
    calibration = learn_calibration(images, classifier, quantizer, settings, colorize_settings or ColorizeSettings(),
                                    cache=sample.cache, threads=threads)
    return quantizer, table, sample.keyframes, calibration
