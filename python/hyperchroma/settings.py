"""Settings, written once: what fitting fixes (:class:`FitSettings`) and what colorizing may change
(:class:`ColorizeSettings`).

``FitSettings`` shape the learned arrays (quantizer, table) and are saved with the model. ``ColorizeSettings``
only steer the lookup and smoothing; a loaded model takes new ones without refitting
(``model.with_settings(median_size=5)`` or ``model.colorize(image, median_size=5)``).

Every field is validated with a message naming the field and its allowed range; the bounds keep every
setting within what makes sense (no setting may make a call run for minutes or allocate gigabytes).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple, TypeVar

import numpy as np

POLICIES = ("mark", "mean", "vote")

#: Upper bounds (inclusive) of the numeric settings.
MAX_SIZE = 2048  # long side of the model-size image (the classifier and the table work there)
MAX_LEVELS = 16  # quantization levels per channel
MAX_MEDIAN = 15  # median filter window
MAX_SCAN = 1 << 16  # candidates scanned around the binary-search position
MAX_SEED_RADIUS = 8  # image-neighbour radius for the nearest-key seeds
MAX_SAMPLES_PER_IMAGE = 1 << 20
MAX_GUIDED_RADIUS = 16  # guided filter radius at model size
MAX_KEY_CHANNELS = 1024  # channels of a learned key projection
#: Default cap on the channels a foreign classifier's default taps total (before the key projection): more only
#: makes sampling and the projection's PCA slow (its covariance is channels squared).
DEFAULT_TAP_CHANNELS = 1024
MAX_TAP_CHANNELS = 16384  # the cap's upper bound (a 16384-channel PCA covariance is 2 GiB)


def _integer(name: str, v: Any, lo: int, hi: int) -> int:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {v!r}")
    iv = int(v)
    if not lo <= iv <= hi:
        raise ValueError(f"{name} must be an integer in {lo}..{hi}, got {v!r}")
    return iv


def _real(name: str, v: Any, *, positive: bool, finite: bool) -> float:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
        raise TypeError(f"{name} must be a number, got {v!r}")
    v = float(v)
    if math.isnan(v) or v < 0 or (positive and v == 0) or (finite and math.isinf(v)):
        raise ValueError(f"{name} must be a {'finite ' if finite else ''}number {'> 0' if positive else '>= 0'}, "
                         f"got {v!r}")
    return v


def _unit(name: str, v: Any) -> float:
    x = _real(name, v, positive=False, finite=True)
    if x > 1:
        raise ValueError(f"{name} must be a number in [0, 1], got {v!r}")
    return x


def _flag(name: str, v: Any) -> bool:
    if not isinstance(v, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {v!r}")
    return bool(v)


def _calibration_folds(v: Any) -> int:
    k = _integer("calibration_folds", v, 0, 64)
    if k == 1:
        raise ValueError("calibration_folds must be 0 (off) or an integer in 2..64, got 1")
    return k


S = TypeVar("S", "FitSettings", "ColorizeSettings")


def _replace(settings: S, overrides: Dict[str, Any]) -> S:
    names = [f.name for f in dataclasses.fields(settings)]
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise TypeError(f"unknown {type(settings).__name__} field(s) {', '.join(unknown)}; "
                        f"the fields are {', '.join(names)}")
    return dataclasses.replace(settings, **overrides).checked()


@dataclass(frozen=True)
class FitSettings:
    """What fitting fixes: the model-size image, the quantizer and the table's conflict policy."""

    size: int = 224  #: long side of the image the classifier and the table work at
    levels: int = 3  #: quantization levels per hypercolumn channel
    policy: str = "mean"  #: conflict policy: "mark" (the paper), "mean" or "vote"
    tolerance: float = 12.0  #: ab distance that makes a "mark" conflict
    vote_bin: Optional[float] = None  #: ab bin width of the "vote" policy (None: the tolerance)
    samples_per_image: int = 4096  #: hypercolumns sampled per training image to learn the quantizer
    seed: int = 0  #: seed of that sampling
    calibration_folds: int = 4  #: k of the k-fold confidence calibration over the training images (0 = off)
    key_channels: int = 56  #: taps with more channels than this are projected to this many by PCA (0 = never)
    #: that PCA sees every tap scaled to the same variance (the gray tap kept out of it), so that a few loud
    #: channels do not take all the components
    balance_taps: bool = True
    keep_keyframes: bool = True  #: keep the color training images in the model for the film path (64 MiB max)
    #: that PCA keeps at most this many components (fewer key channels hit more often; the shipped net has 16
    #: channels coarser than stride 1); 0 = key_channels
    pca_channels: int = 16
    #: key channels for the gray value of a foreign classifier's gray tap (interleaved thresholds: 2 per channel
    #: at 3 levels); 0 = that tap joins the PCA like the others
    gray_channels: int = 8
    #: training images' uniform edge bars (letterbox, thin black frames; :mod:`hyperchroma.borders`) are left
    #: out: the table learns the picture inside only
    borders: bool = True

    def checked(self) -> "FitSettings":
        """Validated copy (numpy scalars become plain Python values); raises TypeError/ValueError."""
        if self.policy not in POLICIES:
            raise ValueError(f"policy must be one of {', '.join(POLICIES)}, got {self.policy!r}")
        vote_bin = None if self.vote_bin is None else _real("vote_bin", self.vote_bin, positive=True, finite=True)
        return FitSettings(
            size=_integer("size", self.size, 16, MAX_SIZE), levels=_integer("levels", self.levels, 2, MAX_LEVELS),
            policy=str(self.policy), tolerance=_real("tolerance", self.tolerance, positive=True, finite=True),
            vote_bin=vote_bin,
            samples_per_image=_integer("samples_per_image", self.samples_per_image, 1, MAX_SAMPLES_PER_IMAGE),
            seed=_integer("seed", self.seed, 0, 2**63 - 1),
            calibration_folds=_calibration_folds(self.calibration_folds),
            key_channels=_integer("key_channels", self.key_channels, 0, MAX_KEY_CHANNELS),
            balance_taps=_flag("balance_taps", self.balance_taps),
            keep_keyframes=_flag("keep_keyframes", self.keep_keyframes),
            pca_channels=_integer("pca_channels", self.pca_channels, 0, MAX_KEY_CHANNELS),
            gray_channels=_integer("gray_channels", self.gray_channels, 0, MAX_KEY_CHANNELS),
            borders=_flag("borders", self.borders))

    @property
    def bin_width(self) -> float:
        """The "vote" policy's ab bin width: ``vote_bin``, or the tolerance when it is not set."""
        return self.tolerance if self.vote_bin is None else self.vote_bin

    def replace(self, **overrides: Any) -> "FitSettings":
        return _replace(self, overrides)


@dataclass(frozen=True)
class ColorizeSettings:
    """What colorizing may change on a fitted model: the nearest-key fallback and the smoothing."""

    median_size: int = 3  #: median filter on the ab result (odd; 1 = off)
    max_distance: float = 5.0  #: nearest keys farther than this (quantization levels, L2) leave the pixel gray
    max_scan: int = 64  #: candidates scanned around the binary-search position for a missing key
    exact: bool = False  #: exact nearest key instead of the bounded scan (slow)
    seed_radius: int = 1  #: image neighbours within this radius found in the table seed the nearest-key search
    one_step: bool = True  #: first probe the table for the keys one quantization step away (distance 1)
    guided_radius: int = 1  #: edge-aware smoothing of ab guided by the gray image after the median (0 = off)
    guided_eps: float = 1e-4  #: the guided filter's regularization, in (gray in [0, 1]) squared
    use_confidence: bool = True  #: scale an image's chroma by the model's confidence in it (calibrated models)
    min_confidence: float = 0.0  #: below this image confidence the image comes back gray
    #: an image's uniform edge bars (letterbox, pillarbox, thin black frames; :mod:`hyperchroma.borders`) are
    #: kept out of the classifier: the picture inside is colorized alone, the bars stay gray
    borders: bool = True

    def checked(self) -> "ColorizeSettings":
        """Validated copy (numpy scalars become plain Python values); raises TypeError/ValueError."""
        median = _integer("median_size", self.median_size, 1, MAX_MEDIAN)
        if median % 2 == 0:
            raise ValueError(f"median_size must be an odd integer in 1..{MAX_MEDIAN}, got {median}")
        return ColorizeSettings(
            median_size=median, max_distance=_real("max_distance", self.max_distance, positive=False, finite=False),
            max_scan=_integer("max_scan", self.max_scan, 1, MAX_SCAN), exact=_flag("exact", self.exact),
            seed_radius=_integer("seed_radius", self.seed_radius, 0, MAX_SEED_RADIUS),
            one_step=_flag("one_step", self.one_step),
            guided_radius=_integer("guided_radius", self.guided_radius, 0, MAX_GUIDED_RADIUS),
            guided_eps=_real("guided_eps", self.guided_eps, positive=True, finite=True),
            use_confidence=_flag("use_confidence", self.use_confidence),
            min_confidence=_unit("min_confidence", self.min_confidence),
            borders=_flag("borders", self.borders))

    def replace(self, **overrides: Any) -> "ColorizeSettings":
        return _replace(self, overrides)


FIT_FIELDS: Tuple[str, ...] = tuple(f.name for f in dataclasses.fields(FitSettings))
COLORIZE_FIELDS: Tuple[str, ...] = tuple(f.name for f in dataclasses.fields(ColorizeSettings))


def split(options: Dict[str, Any]) -> Tuple[FitSettings, ColorizeSettings]:
    """Validated (FitSettings, ColorizeSettings) from one dict of keyword options (defaults for the rest)."""
    unknown = sorted(set(options) - set(FIT_FIELDS) - set(COLORIZE_FIELDS))
    if unknown:
        raise TypeError(f"unknown setting(s) {', '.join(unknown)}; fitting takes {', '.join(FIT_FIELDS)}, "
                        f"colorizing {', '.join(COLORIZE_FIELDS)}")
    fit = FitSettings(**{k: v for k, v in options.items() if k in FIT_FIELDS}).checked()
    col = ColorizeSettings(**{k: v for k, v in options.items() if k in COLORIZE_FIELDS}).checked()
    return fit, col


@dataclass(frozen=True)
class Settings:
    """A model's settings: ``fit`` (fixed by fitting) and ``colorize`` (changeable); either's fields also read
    as attributes of this object (``model.settings.levels``, ``model.settings.median_size``)."""

    fit: FitSettings = FitSettings()
    colorize: ColorizeSettings = ColorizeSettings()

    def __getattr__(self, name: str) -> Any:
        for part in ("fit", "colorize"):
            obj = object.__getattribute__(self, part)
            if name in (f.name for f in dataclasses.fields(obj)):
                return getattr(obj, name)
        raise AttributeError(f"Settings has no field {name!r}")

    def as_dict(self) -> Dict[str, Dict[str, Any]]:
        return {"fit": dataclasses.asdict(self.fit), "colorize": dataclasses.asdict(self.colorize)}
