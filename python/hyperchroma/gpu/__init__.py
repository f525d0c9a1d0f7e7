"""GPU-ready batched stages, built and tested on the CPU execution provider: the classifier with the key
quantization and packing inside its ONNX graph (:mod:`.keys_graph`), run on bucketed fixed batch shapes with
I/O binding (:class:`BatchKeys`)."""

from .batch import DEFAULT_BUCKETS, BatchKeys
from .keys_graph import add_keys, axis_taps, key_layout

__all__ = ["DEFAULT_BUCKETS", "BatchKeys", "add_keys", "axis_taps", "key_layout"]
