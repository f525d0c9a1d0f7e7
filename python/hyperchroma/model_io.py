"""A :class:`Model` to and from its one file (the container format is :mod:`hyperchroma.model_file`).

The file holds the runtime classifier's ONNX bytes, the quantizer (thresholds, weights), the table's
entries and both kinds of settings. Loading validates everything before a model is built, and refuses a
file with :class:`ModelFileError` naming it, never with another exception.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from typing import Any, Dict, Optional, Tuple, Union

import numpy as np

from . import model_file
from ._version import __version__
from .classifier import Classifier
from .model_file import ModelFileError
from .calibration import Calibration
from .quantizer import Projection, Quantizer
from .settings import COLORIZE_FIELDS, ColorizeSettings, FitSettings
from .table import ColorTable

ARRAYS = ("classifier", "thresholds", "weights", "table_keys", "table_ab", "table_counts", "table_conflicting")


def save(model: Any, path: Union[str, "os.PathLike[str]"]) -> None:
    """Write ``model`` to ``path`` atomically."""
    e = model.color_table.entries()
    clf = model.classifier
    meta = {
        "hyperchroma": __version__,
        "fit_settings": dataclasses.asdict(model.fit_settings),
        "colorize_settings": dataclasses.asdict(model.colorize_settings),
        "classifier": {"identity": clf.identity,
                       "taps": [[t.name, int(t.channels), int(t.stride)] for t in clf.taps]},
        "entries": len(model.color_table),
        "keyframes": len(model.keyframes),
    }
    arrays = {
        "classifier": np.frombuffer(clf.model_bytes, np.uint8),
        "thresholds": model.quantizer.thresholds,
        "weights": model.quantizer.weights,
        "table_keys": e["keys"],
        "table_ab": e["ab"],
        "table_counts": e["counts"],
        "table_conflicting": e["conflicting"],
    }
    proj = model.quantizer.projection
    if proj is not None:
        meta["projection_taps"] = len(proj.matrices)
        arrays["projection_mean"] = proj.mean
        for i, p in enumerate(proj.matrices):
            arrays[f"projection_{i}"] = p
    for i, k in enumerate(model.keyframes):
        arrays[f"keyframe_{i}"] = k
    if model.calibration is not None:
        arrays["calibration_m"] = model.calibration.m
        arrays["calibration_s"] = model.calibration.s
        if model.calibration.m_in.size:
            arrays["calibration_m_in"] = model.calibration.m_in
            arrays["calibration_s_in"] = model.calibration.s_in
    model_file.save(path, meta, arrays)


def _settings(meta: Dict[str, Any]) -> Tuple[FitSettings, ColorizeSettings]:
    """Both settings from the header; format 1.0 files kept them in one flat "settings" object."""
    if "fit_settings" in meta:
        fit, col = meta["fit_settings"], meta.get("colorize_settings", {})
    else:
        flat = dict(meta["settings"])
        col = {k: flat.pop(k) for k in list(flat) if k in COLORIZE_FIELDS}
        fit = flat
    if not isinstance(fit, dict) or not isinstance(col, dict):
        raise ValueError("settings are not objects")
    return FitSettings(**fit).checked(), ColorizeSettings(**col).checked()


def load(path: Union[str, "os.PathLike[str]"], classifier: Optional[Classifier] = None,
         threads: Optional[int] = None) -> Any:
    """Load a model saved with :func:`save`.

    Refuses (``ModelFileError``) a missing, truncated, corrupt or foreign file, an inconsistent one, or a
    classifier other than the one the table was built with.
    """
    from .model import Model, _check_threads

    _check_threads(threads)
    meta, arrays = model_file.load(path)
    where = os.fspath(path)

    def refuse(why: str) -> ModelFileError:
        return ModelFileError(f"'{where}' is not a usable hyperchroma model ({why})")

    try:
        fit_settings, colorize_settings = _settings(meta)
        identity = meta["classifier"]["identity"]
        if not isinstance(identity, str):
            raise ValueError("the classifier identity is not a string")
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError, RecursionError) as e:
        raise refuse(f"{type(e).__name__}: {str(e)[:300]}") from None
    missing = [n for n in ARRAYS if n not in arrays]
    if missing:
        raise refuse(f"missing arrays {missing}")
    embedded = arrays["classifier"].tobytes()
    if hashlib.sha256(embedded).hexdigest() != identity:
        raise ModelFileError(f"'{where}': the embedded classifier does not match its recorded identity")
    if classifier is not None and classifier.identity != identity:
        raise ModelFileError(
            f"'{where}' was built with classifier {identity[:12]}, not the given {classifier.identity[:12]}: "
            "a table only works with the classifier it was fit with")
    try:
        clf = classifier or Classifier.from_bytes(embedded)
    except (ValueError, TypeError, KeyError, AttributeError, IndexError, RecursionError, OverflowError) as e:
        raise refuse(f"its classifier: {type(e).__name__}: {str(e)[:300]}") from None
    try:
        projection = None
        if "projection_taps" in meta:
            projection = Projection(tuple(arrays[f"projection_{i}"] for i in range(int(meta["projection_taps"]))),
                                    arrays["projection_mean"])
        quantizer = Quantizer(arrays["thresholds"], arrays["weights"], projection)
        if quantizer.levels != fit_settings.levels:
            raise ValueError(f"{quantizer.levels} quantization levels, the settings say {fit_settings.levels}")
        tap_channels = [t.channels for t in clf.taps]
        if (projection is None and quantizer.channels != clf.channels) or (
                projection is not None and [p.shape[0] for p in projection.matrices] != tap_channels):
            raise ValueError("the classifier's taps do not match the table's channels")
        entries = {"keys": arrays["table_keys"], "ab": arrays["table_ab"], "counts": arrays["table_counts"],
                   "conflicting": arrays["table_conflicting"]}
        if not np.all(np.isfinite(entries["ab"])):
            raise ValueError("table colors that are not finite numbers")
        table = ColorTable.from_entries(entries, quantizer.weights, fit_settings.levels, fit_settings)
        keyframes = []
        for i in range(int(meta.get("keyframes", 0))):
            k = arrays[f"keyframe_{i}"]
            if k.dtype != np.uint8 or k.ndim != 3 or k.shape[2] != 3 or k.shape[0] < 1 or k.shape[1] < 1:
                raise ValueError(f"keyframe {i} is not an (H, W, 3) uint8 image")
            keyframes.append(np.array(k))
        calibration = None
        if "calibration_m" in arrays or "calibration_s" in arrays:
            inside = [arrays[k] for k in ("calibration_m_in", "calibration_s_in") if k in arrays]
            calibration = Calibration(arrays["calibration_m"], arrays["calibration_s"], *inside)
        return Model(clf, quantizer, table, fit_settings, colorize_settings, threads, keyframes, calibration)
    except (ValueError, TypeError, KeyError, OverflowError, MemoryError) as e:
        raise refuse(f"inconsistent contents: {type(e).__name__}: {str(e)[:300]}") from None
