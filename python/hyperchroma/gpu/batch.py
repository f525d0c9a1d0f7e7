"""Batched classifier runs that return packed keys (:mod:`hyperchroma.gpu.keys_graph`), on fixed batch shapes
with I/O binding: the GPU-ready first half of the pipeline, built and tested on the CPU execution provider.

Each model-size shape (h, w) gets one ONNX Runtime session of the classifier with the key nodes appended. A
batch of N gray images runs in chunks of the largest bucket, each padded (with its last image) to the smallest
bucket that holds it, so the session only ever sees a few fixed shapes (no re-planning or re-allocation on a
device). Inputs and outputs are bound through ``io_binding``: on the CPU provider straight into preallocated
buffers kept per (shape, bucket), so a steady stream allocates nothing but the result; on CUDA the keys are
bound on the device and only they are copied back (``words`` x 8 bytes per pixel instead of 4 x 56).
"""

from __future__ import annotations

import threading
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np

from .keys_graph import KEYS_OUTPUT, add_keys, key_layout

DEFAULT_BUCKETS = (1, 2, 4, 8, 16, 32)


class BatchKeys:
    """Packed keys (N, h*w, words) uint64 of batches of model-size gray images, from one ONNX Runtime run per
    bucketed chunk; identical to ``quantizer.keys(classifier.run(gray), (h, w))`` image by image.

    Args:
        classifier: a :class:`hyperchroma.Classifier` (its providers and thread setting are used).
        quantizer: the model's :class:`hyperchroma.quantizer.Quantizer` (without a PCA projection).
        buckets: the batch sizes the session runs at, ascending.
        threads: intra-op threads (None: the classifier's).
    """

    def __init__(self, classifier: Any, quantizer: Any, buckets: Sequence[int] = DEFAULT_BUCKETS,
                 threads: Optional[int] = None) -> None:
        if quantizer.projection is not None:
            raise ValueError("keys in the graph: a quantizer with a PCA projection is not supported (yet)")
        b = [int(v) for v in buckets] if not isinstance(buckets, (str, bytes)) else []
        if not b or any(isinstance(v, bool) or v < 1 for v in buckets) or sorted(set(b)) != b:
            raise ValueError(f"buckets: expected ascending distinct batch sizes >= 1, got {buckets!r}")
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise ValueError(f"threads must be an integer >= 1 or None, got {threads!r}")
        self.classifier = classifier
        self.quantizer = quantizer
        self.buckets = tuple(b)
        self.threads = threads
        self.device = "cuda" if classifier.provider == "CUDAExecutionProvider" else "cpu"
        self._lock = threading.Lock()
        self._sessions: Dict[Tuple[int, int], Any] = {}
        self._local = threading.local()
        self.words = key_layout(quantizer.channels, quantizer.levels)[2]

    def _session(self, shape: Tuple[int, int]) -> Any:
        with self._lock:
            s = self._sessions.get(shape)
        if s is None:
            import onnx

            c = self.classifier
            model = add_keys(onnx.load_model_from_string(c.model_bytes), c._output_names, c.output_shapes(*shape),
                             shape, self.quantizer.thresholds)
            s = c._make_session(model.SerializeToString(), c._resolved, self.threads)
            with self._lock:
                if len(self._sessions) >= 16:
                    self._sessions.pop(next(iter(self._sessions)))
                s = self._sessions.setdefault(shape, s)
        return s

    def bucket(self, n: int) -> int:
        """The batch size a chunk of n images runs at."""
        for b in self.buckets:
            if b >= n:
                return b
        return self.buckets[-1]

    def _buffers(self, shape: Tuple[int, int], b: int) -> Tuple[np.ndarray, np.ndarray]:
        cache = getattr(self._local, "buffers", None)
        if cache is None:
            cache = self._local.buffers = {}
        key = (shape, b)
        buf = cache.get(key)
        if buf is None:
            if len(cache) >= 32:
                cache.clear()
            h, w = shape
            buf = cache[key] = (np.empty((b, 1, h, w), np.float32), np.empty((b, h * w, self.words), np.int64))
        return buf

    def keys(self, grays: Any) -> np.ndarray:
        """Keys (N, h*w, words) uint64 of gray images (N, h, w) (or one (h, w)) with values in [0, 1]."""
        x = np.asarray(grays)
        if x.dtype.kind != "f":
            raise TypeError(f"grays: expected float gray values in [0, 1], got dtype {x.dtype}"
                            + (" (divide uint8 images by 255)" if x.dtype == np.uint8 else ""))
        single = x.ndim == 2
        if single:
            x = x[None]
        if x.ndim != 3 or x.shape[0] < 1:
            raise ValueError(f"grays: expected (N, h, w) or (h, w) gray images, got shape {np.shape(grays)}")
        n, h, w = x.shape
        self.classifier._check_size(h, w)
        session = self._session((h, w))
        out = np.empty((n, h * w, self.words), np.uint64)
        step = self.buckets[-1]
        for start in range(0, n, step):
            chunk = x[start:start + step]
            m = len(chunk)
            b = self.bucket(m)
            inp, res = self._buffers((h, w), b)
            inp[:m, 0] = chunk
            inp[m:, 0] = chunk[-1]  # padding: the last image again (a fixed shape, results dropped)
            binding = session.io_binding()
            binding.bind_cpu_input(self.classifier._input_name, inp)
            if self.device == "cpu":
                binding.bind_output(KEYS_OUTPUT, "cpu", 0, np.int64, list(res.shape), res.ctypes.data)
                self.classifier._run(session, binding, inp.shape)
                out[start:start + m] = res[:m].view(np.uint64)
            else:  # keys stay on the device until this copy: only they cross the bus
                binding.bind_output(KEYS_OUTPUT, self.device)
                self.classifier._run(session, binding, inp.shape)
                out[start:start + m] = binding.copy_outputs_to_cpu()[0][:m].view(np.uint64)
        return out[0] if single else out
