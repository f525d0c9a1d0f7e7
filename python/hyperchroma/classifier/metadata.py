"""What a runtime model records about itself in ONNX ``metadata_props`` (keys prefixed ``hyperchroma.``):
its taps, its input normalization, its minimum size and provenance. One prefix for the whole package.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

META_PREFIX = "hyperchroma."
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: The tap added to every foreign model: its own gray input at stride 1 and two local features of it (contrast to
#: and deviation in a 5x5 window), what the shipped net's stride-1 layers learn and a backbone's finest
#: default tap (stride 2 or more) lacks. See :func:`hyperchroma.classifier.graph.add_gray_tap`.
GRAY_TAP = "hyperchroma_gray"
GRAY_TAP_CHANNELS = 3


class TapInfo(NamedTuple):
    """One tapped layer: the graph output ``name``, its ``channels`` and its ``stride`` (input size / map size)."""

    name: str
    channels: int
    stride: int


def default_model_path() -> Path:
    """Path of the classifier shipped inside the package (``hyperchroma/models/classifier.onnx``)."""
    return Path(__file__).resolve().parents[1] / "models" / "classifier.onnx"


def read_meta(model: Any) -> dict[str, str]:
    """The hyperchroma entries of a loaded ONNX model's ``metadata_props``, without the prefix."""
    return {p.key[len(META_PREFIX):]: p.value for p in model.metadata_props if p.key.startswith(META_PREFIX)}


def meta_from_bytes(data: bytes) -> dict[str, str]:
    """The same from ONNX bytes."""
    import onnx

    return read_meta(onnx.load_model_from_string(data))
