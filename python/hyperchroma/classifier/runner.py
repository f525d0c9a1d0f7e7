"""The runner: one reused ONNX Runtime session per thread budget, running the runtime model on gray images.

Outputs can be written into caller-owned arrays (``out=``) or into this thread's reusable buffers
(:meth:`Classifier.run_reusing`), so the latency path does not allocate the tap maps on every call.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from pathlib import Path
from typing import Any, Sequence, Union

import numpy as np

from . import choice as tap_choice
from . import fused
from .choice import TapChoice
from .geometry import PROBE_SIZE, Geometry, probe_geometry
from .graph import finish, prepare
from .metadata import (
    GRAY_TAP,
    GRAY_TAP_CHANNELS,
    TapInfo,
    default_model_path,
    meta_from_bytes,
)
from .providers import CUDA, ProviderArg, load_ort, quiet_ort, resolve_providers

PathLike = Union[str, "os.PathLike[str]"]
#: ONNX Runtime log severity of our sessions and runs: fatal only. Its errors come back to us as exceptions
#: that we turn into one clear line; printed, they would leak to stderr before it.
ORT_LOG_SEVERITY = 4


def _probe_image(h: int, w: int) -> np.ndarray:
    """A fixed gray image with structure at every scale (the probe that tells taps apart)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    rng = np.random.default_rng(12345)
    g = 0.5 + 0.2 * np.sin(x / 7.0) * np.cos(y / 11.0) + 0.15 * np.sin((x + 2 * y) / 29.0)
    g += 0.1 * rng.random((h, w), dtype=np.float32)
    return np.clip(g, 0, 1).astype(np.float32)[None, None]


def _ort_reason(e: BaseException) -> str:
    """ONNX Runtime's error without its source location and C++ signature, with a hint where one helps."""
    text = re.sub(r"\[ONNXRuntimeError\] : \d+ : \w+ : ", "", str(e).strip())
    text = re.sub(r"/onnxruntime_src/\S+:\d+ \S+?\(.*?\) ", "", text)
    m = re.search(r"Unsupported model IR version: (\d+), max supported IR version: (\d+)", text)
    if m:
        text += (f"; re-save it for this onnxruntime: m = onnx.load(path); m.ir_version = {m.group(2)}; "
                 "onnx.save(m, path)")
    return text[:800]


#: Inputs of at most this many pixels (batch included) run the fused split's elementwise first part on one thread.
SMALL_BEFORE_PIXELS = 65536


class Classifier:
    """A CNN classifier whose conv-layer outputs ("taps") are the features of every pixel.

    Args:
        path: an ONNX file; ``None`` for the classifier shipped with the package.
        providers: execution providers for ONNX Runtime (names, aliases ``"cpu"``/``"cuda"``, or (name, options)
            pairs); ``None`` picks CUDA when it is usable here, else CPU, without printing anything.
        taps: tensor or node names to tap; ``None`` for the model's recorded taps (ours) or every Conv (foreign).
        threads: ONNX Runtime intra-op threads; ``None`` for its default (one per physical core).
        mean, std: input normalization of a foreign model, on gray values in [0, 1] (per channel for a
            3-channel model, which gets the gray plane replicated); default: what its metadata states
            (``mean``/``std`` props), else ImageNet's for a 3-channel model, none for a 1-channel one. For a
            model fed 0..255, pass ``mean=0, std=1/255``.
        max_channels: with default taps, the most channels tapped in total (0: no cap); see
            :mod:`.choice` for which taps go first. Default :data:`hyperchroma.settings.DEFAULT_TAP_CHANNELS`.
        gray_tap: a foreign model also gets the tap :data:`~.metadata.GRAY_TAP` (its gray input at stride 1
            and two 5x5 local features of it, last in :attr:`taps`); the fit gives its gray value its own key
            channels (:class:`hyperchroma.quantizer.Projection`). Ignored for the shipped model and for
            runtime models, which keep the taps they record.

    Foreign models: NCHW or NHWC, 1 or 3 channels, float32 or float16 inputs; weights kept in external data
    files beside the model are read from there and embedded. A model whose sides must be multiples of a
    stride gets reflect-padded input (:mod:`.geometry`), a fixed-size one resized input.

    Raises:
        ValueError: the file is not a usable ONNX CNN (not ONNX, truncated, no conv, wrong input rank...).
    """

    def __init__(
        self,
        path: PathLike | None = None,
        providers: Sequence[ProviderArg] | ProviderArg | None = None,
        taps: Sequence[str] | None = None,
        threads: int | None = None,
        *,
        mean: float | Sequence[float] | None = None,
        std: float | Sequence[float] | None = None,
        max_channels: int | None = None,
        gray_tap: bool = True,
    ) -> None:
        if path is None:
            path = default_model_path()
            if not path.is_file():
                raise FileNotFoundError(f"the shipped classifier is missing from the installation: {path}")
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path: expected a file path, got {type(path).__name__} "
                            "(use Classifier.from_bytes for a model in memory)")
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"no such classifier file: {p}")
        self._init(p.read_bytes(), str(p), providers, taps, threads, mean, std, max_channels,
                   str(p.resolve().parent), gray_tap)

    @classmethod
    def from_bytes(
        cls,
        data: bytes,
        providers: Sequence[ProviderArg] | ProviderArg | None = None,
        taps: Sequence[str] | None = None,
        threads: int | None = None,
        *,
        mean: float | Sequence[float] | None = None,
        std: float | Sequence[float] | None = None,
        max_channels: int | None = None,
        gray_tap: bool = True,
    ) -> "Classifier":
        """A classifier from ONNX bytes, e.g. :attr:`model_bytes` of another one (then with the same
        :attr:`identity`)."""
        self = cls.__new__(cls)
        self._init(data, "<bytes>", providers, taps, threads, mean, std, max_channels, None, gray_tap)
        return self

    # -------------------------------------------------------------------------------------------- set-up
    def _init(self, data: Any, origin: str, providers: Any, taps: Any, threads: Any, mean: Any, std: Any,
              max_channels: Any = None, base_dir: str | None = None, gray_tap: bool = True) -> None:
        if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 0):
            raise ValueError(f"threads: expected a non-negative int (0 or None: onnxruntime's default), got {threads!r}")
        from ..settings import DEFAULT_TAP_CHANNELS, MAX_TAP_CHANNELS

        if max_channels is None:
            max_channels = DEFAULT_TAP_CHANNELS
        if isinstance(max_channels, bool) or not isinstance(max_channels, int) or not 0 <= max_channels <= MAX_TAP_CHANNELS:
            raise ValueError(f"max_channels: expected an integer in 0..{MAX_TAP_CHANNELS} (0: no cap), got {max_channels!r}")
        self._origin = origin
        self._threads = threads
        self._providers_arg = providers
        self._lock = threading.Lock()
        self._local = threading.local()
        self._shapes: dict[tuple[int, int], list[tuple[int, int, int]]] = {}
        prep = prepare(data, origin, taps, mean, std, base_dir)
        self._input_info = prep.input_info
        self._meta = prep.meta
        resolved = resolve_providers(providers)
        geometry = Geometry.from_json(prep.meta.get("geometry"))
        choice = tap_choice.from_json(prep.meta.get("tap_choice"))
        if prep.taps is not None and "taps" in prep.meta:  # an unchanged runtime model
            taps_info, min_size = prep.taps, prep.min_size
            self._model_bytes = prep.data
        elif prep.taps is not None:  # taps known from our metadata: no probe needed
            taps_info = prep.taps
            min_size = max(prep.min_size, max(t.stride for t in taps_info))
            self._model_bytes = finish(prep, taps_info, min_size)
        else:  # a foreign model: probe runs tell its input geometry and the taps' channels and strides
            static = prep.meta.get("source_size")
            geometry, taps_info, maps = self._probe(self._make_session(prep.data, resolved),
                                                    tuple(json.loads(static)) if static else None)
            probe = geometry.input_shape(PROBE_SIZE, PROBE_SIZE)
            if taps is None:
                choice = tap_choice.choose_taps(taps_info, maps, min(probe), max_channels)
                chosen = [t for t, c in zip(taps_info, choice) if c.chosen]
                if not chosen:
                    raise ValueError(f"{origin}: no conv output carries per-pixel information at {probe[0]}x{probe[1]} "
                                     "(all are 1x1 maps, constant or duplicates); name the layers to tap")
                if len(chosen) < len(taps_info):
                    prep = prepare(data, origin, [t.name for t in chosen], mean, std, base_dir)
                    taps_info = chosen
            else:
                choice = tap_choice.named_choice(taps_info)
            del maps
            min_size = max(t.stride for t in taps_info)
            if gray_tap:
                taps_info = list(taps_info) + [TapInfo(GRAY_TAP, GRAY_TAP_CHANNELS, 1)]
            self._model_bytes = finish(prep, taps_info, min_size, geometry.to_json(), tap_choice.to_json(choice))
        self._geometry = geometry
        self._choice = choice
        self._resolved = resolved
        self._session = self._make_session(self._model_bytes, resolved)
        self._sessions: dict[int, Any] = {}
        self._taps = list(taps_info)
        self._min_size = int(min_size)
        self._input_name = self._session.get_inputs()[0].name
        self._output_names = [o.name for o in self._session.get_outputs()]
        if self._output_names != [t.name for t in self._taps]:
            raise ValueError(f"{origin}: internal error: session outputs {self._output_names} != taps")
        self._identity = hashlib.sha256(self._model_bytes).hexdigest()
        self._run_options = load_ort().RunOptions()
        self._run_options.log_severity_level = ORT_LOG_SEVERITY
        self._provider = self._session.get_providers()[0]
        # on the CPU, the first 1x1 conv + ReLU + KxK conv in one C++ pass (fused.py); a GPU runs the graph whole
        self._fusion = fused.plan(self._model_bytes) if self._provider == "CPUExecutionProvider" else None
        self._fused_sessions: dict[int | None, tuple[Any, Any]] = {}

    def _make_session(self, data: bytes, providers: list[Any], threads: int | None = None) -> Any:
        rt = load_ort()
        so = rt.SessionOptions()
        so.graph_optimization_level = rt.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.execution_mode = rt.ExecutionMode.ORT_SEQUENTIAL
        so.inter_op_num_threads = 1
        threads = threads or self._threads
        if threads:
            so.intra_op_num_threads = threads
        so.log_severity_level = ORT_LOG_SEVERITY
        # no busy-waiting: the threads sleep between runs instead of fighting the core's (and the caller's) threads
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        so.add_session_config_entry("session.inter_op.allow_spinning", "0")
        try:
            if any((p[0] if isinstance(p, tuple) else p) == CUDA for p in providers):
                with quiet_ort():
                    return rt.InferenceSession(data, so, providers=providers)
            return rt.InferenceSession(data, so, providers=providers)
        except Exception as e:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise ValueError(f"{self._origin}: ONNX Runtime cannot load the model: {_ort_reason(e)}") from None

    def _session_for(self, threads: int | None) -> Any:
        """The session whose intra-op pool has ``threads`` threads (None: the classifier's own setting)."""
        if threads is None or threads == self._threads:
            return self._session
        with self._lock:
            session = self._sessions.get(threads)
        if session is None:
            session = self._make_session(self._model_bytes, self._resolved, threads)
            with self._lock:
                session = self._sessions.setdefault(threads, session)
        return session

    def _fused_pair(self, threads: int | None) -> tuple[Any, Any]:
        """The (before, after) sessions of the fused split for ``threads`` intra-op threads (see :mod:`.fused`)."""
        key = self._threads if threads is None else threads
        with self._lock:
            pair = self._fused_sessions.get(key)
        if pair is None:
            f = self._fusion
            assert f is not None
            before = self._make_session(f.before, self._resolved, key)
            after = self._make_session(f.after, self._resolved, key) if f.after is not None else None
            with self._lock:
                pair = self._fused_sessions.setdefault(key, (before, after))
        return pair

    def _run_fused(self, x: np.ndarray, shapes: list[tuple[int, int, int]] | None, outs: list[np.ndarray] | None,
                   threads: int | None) -> list[np.ndarray]:
        """The taps of the (n, 1, H, W) input ``x`` through the fused split: the part of the graph before the
        fused convolution, ``core.pwl_conv``, the part after it. ``outs``: (n, C, h, w) arrays to write into
        (their shapes ``shapes``, known after the first run at a size), or None to let ONNX Runtime allocate."""
        from .. import core

        f = self._fusion
        assert f is not None
        n, _, H, W = x.shape
        _, after = self._fused_pair(threads)
        # the part before the fused convolution is elementwise (the input normalization, a 1x1 convolution): at
        # model size one thread does it sooner than two (0.82 against 1.02 ms at 224x164, waking the pool costs)
        before, _ = self._fused_pair(1 if n * H * W <= SMALL_BEFORE_PIXELS else threads)
        sizes: dict[tuple[int, int, int], dict[str, np.ndarray]] | None = getattr(self._local, "fused", None)
        if sizes is None:
            sizes = self._local.fused = {}
        scratch = sizes.get((n, H, W))  # this thread's buffers for this input size
        if scratch is None:
            if len(sizes) >= 8:  # many image sizes: keep the memory bounded
                sizes.clear()
            scratch = sizes[(n, H, W)] = {}
        L = scratch.get("L")
        if L is None:
            L = scratch["L"] = np.empty((n, 1, H, W), np.float32)
        by_name = dict(zip(self._output_names, outs)) if outs is not None else {}
        b = before.io_binding()
        b.bind_cpu_input(self._input_name, x)
        b.bind_output(f.l_name, "cpu", 0, np.float32, list(L.shape), L.ctypes.data)
        for name in f.before_outputs:
            if name in by_name:
                arr = by_name[name]
                b.bind_output(name, "cpu", 0, np.float32, list(arr.shape), arr.ctypes.data)
            else:
                b.bind_output(name, "cpu")
        self._run(before, b, x.shape)
        got = dict(zip(f.before_outputs, [np.ascontiguousarray(a, dtype=np.float32)
                                          for a in b.copy_outputs_to_cpu()[1:]])) if not by_name else {}
        kthreads = threads if threads else (self._threads or 0)
        mid = by_name.get(f.mid_name)
        if mid is None:
            mid = scratch.get(f.mid_name)
            if mid is None:
                mid = scratch[f.mid_name] = np.empty((n, f.mid_channels, H, W), np.float32)
        core.pwl_conv(L.reshape(n, H, W), f.breaks, f.A, f.B, f.bias, f.pads[0], f.pads[1], out=mid, threads=kthreads)
        got[f.mid_name] = mid
        cut_arr = mid
        for st in f.stages:  # the (pool +) convolutions after it, in C++ too
            Hs, Ws = cut_arr.shape[2:]
            shape = (n, st.channels, Hs // 2, Ws // 2) if st.pool else (n, st.channels, Hs, Ws)
            dst = by_name.get(st.name)
            if dst is None:
                dst = scratch.get(st.name)
                if dst is None:
                    dst = scratch[st.name] = np.empty(shape, np.float32)
            core.pool_conv(cut_arr, st.weights, st.bias, st.pads[0], st.pads[1], pool=st.pool, out=dst,
                           threads=kthreads)
            got[st.name] = dst
            cut_arr = dst
        if after is not None:
            a = after.io_binding()
            a.bind_cpu_input(f.cut, cut_arr)
            for name in f.after_outputs:
                if name in by_name:
                    arr = by_name[name]
                    a.bind_output(name, "cpu", 0, np.float32, list(arr.shape), arr.ctypes.data)
                else:
                    a.bind_output(name, "cpu")
            self._run(after, a, cut_arr.shape)
            if not by_name:
                got.update(zip(f.after_outputs, [np.ascontiguousarray(v, dtype=np.float32)
                                                 for v in a.copy_outputs_to_cpu()]))
        if outs is not None:
            return list(outs)
        scratched = {f.mid_name} | {st.name for st in f.stages}  # held in this thread's scratch: copied out
        return [got[name].copy() if name in scratched else got[name] for name in self._output_names]

    def _probe(self, session: Any, static: tuple[int | None, int | None] | None
               ) -> tuple[Geometry, list[TapInfo], list[np.ndarray]]:
        """A foreign model's input :class:`Geometry`, its taps' channels and strides, and their maps on the probe
        image (for :func:`.choice.choose_taps`)."""
        name = session.get_inputs()[0].name
        options = load_ort().RunOptions()
        options.log_severity_level = ORT_LOG_SEVERITY

        def fails(h: int, w: int, n: int = 1) -> str | None:
            try:
                session.run(None, {name: np.zeros((n, 1, h, w), np.float32)}, options)
            except Exception as e:  # noqa: BLE001 - onnxruntime raises its own exception types
                return _ort_reason(e)
            return None

        geometry = probe_geometry(fails, static, self._origin)
        H, W = geometry.input_shape(PROBE_SIZE, PROBE_SIZE)
        try:
            outs = session.run(None, {name: _probe_image(H, W)}, options)
        except Exception as e:  # noqa: BLE001
            raise ValueError(f"{self._origin}: the model fails on a {H}x{W} input: {_ort_reason(e)}") from None
        taps = []
        maps = []
        for o, arr in zip(session.get_outputs(), outs):
            if arr.ndim != 4 or arr.dtype != np.float32:
                raise ValueError(f"{self._origin}: tap {o.name!r} is not a float32 (N, C, h, w) map "
                                 f"(got {arr.dtype} of shape {arr.shape}); tap conv layers")
            stride = max(1, int(round(H / max(arr.shape[2], 1))))
            taps.append(TapInfo(o.name, int(arr.shape[1]), stride))
            maps.append(arr[0])
        return geometry, taps, maps

    # ----------------------------------------------------------------------------------------- properties
    @property
    def taps(self) -> list[TapInfo]:
        """The tapped layers in order (the order of :meth:`run`'s outputs)."""
        return list(self._taps)

    @property
    def channels(self) -> int:
        """Hypercolumn length: the sum of the taps' channels."""
        return sum(t.channels for t in self._taps)

    @property
    def provider(self) -> str:
        """The execution provider running the model, e.g. ``"CPUExecutionProvider"``."""
        return self._provider

    @property
    def providers(self) -> list[str]:
        """All providers of the session, in priority order."""
        return list(self._session.get_providers())

    @property
    def identity(self) -> str:
        """SHA-256 (hex) of :attr:`model_bytes`: what a colorization table records to stay with its classifier."""
        return self._identity

    @property
    def model_bytes(self) -> bytes:
        """The runtime (tapped) model actually run, as ONNX bytes; :meth:`from_bytes` rebuilds the classifier."""
        return self._model_bytes

    @property
    def min_size(self) -> int:
        """Smallest height and width the model is run at (after padding or resizing, see :attr:`geometry`)."""
        return self._min_size

    @property
    def geometry(self) -> Geometry:
        """How images are fitted to the model's input: as they are, padded to a stride multiple, or resized."""
        return self._geometry

    @property
    def tap_choice(self) -> list[TapChoice]:
        """Every candidate tap of a foreign model with whether it was chosen and why (empty for ours)."""
        return list(self._choice)

    def frame(self, height: int, width: int) -> tuple[int, int]:
        """The (height, width), in image pixels, that :meth:`run`'s tap maps of an (height, width) image cover:
        the reflect-padded image when the model needs a stride multiple (the image is its top-left corner;
        make keys on the frame and crop them), else the image itself."""
        return self._geometry.frame(int(height), int(width))

    @property
    def normalization(self) -> dict[str, Any]:
        """The input normalization built into the runtime model: ``{"space": "L"|"gray", "mean", "std"}``."""
        return dict(self._input_info)

    @property
    def metadata(self) -> dict[str, str]:
        """The runtime model's hyperchroma metadata (spec, taps, input, provenance... as stored)."""
        return dict(meta_from_bytes(self._model_bytes))

    @property
    def threads(self) -> int | None:
        return self._threads

    @property
    def fused(self) -> bool:
        """Whether :meth:`run` computes the graph's leading 1x1 conv + ReLU + KxK conv in one C++ pass, and the
        2x2 max pool + conv after it (:mod:`.fused`: the shipped classifier on the CPU; taps equal to the whole
        graph's up to float rounding). Set it to False to run the graph whole (as the GPU does)."""
        return self._fusion is not None

    @fused.setter
    def fused(self, on: bool) -> None:
        if not on:
            self._fusion = None
        elif self._fusion is None and self._provider == "CPUExecutionProvider":
            self._fusion = fused.plan(self._model_bytes)

    def __repr__(self) -> str:
        taps = ", ".join(f"{t.name}:{t.channels}@{t.stride}" for t in self._taps)
        return f"Classifier({self._origin!r}, provider={self._provider!r}, taps=[{taps}], identity={self._identity[:12]})"

    def __getstate__(self) -> dict[str, Any]:
        return {"data": self._model_bytes, "providers": self._providers_arg, "threads": self._threads,
                "origin": self._origin}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._init(state["data"], state["origin"], state["providers"], None, state["threads"], None, None)

    # ------------------------------------------------------------------------------------------------ run
    def output_shapes(self, height: int, width: int) -> list[tuple[int, int, int]]:
        """The (C, h, w) of every tap for an (height, width) input (runs the model once per new size)."""
        key = (int(height), int(width))
        with self._lock:
            shapes = self._shapes.get(key)
        if shapes is None:
            self._check_size(*key)
            self.run(np.zeros(key, np.float32))
            with self._lock:
                shapes = self._shapes[key]
        return list(shapes)

    def _check_size(self, h: int, w: int) -> None:
        H, W = self._geometry.input_shape(h, w)
        if H < self._min_size or W < self._min_size:
            raise ValueError(f"image of {h}x{w} pixels is smaller than the classifier's minimum "
                             f"{self._min_size}x{self._min_size}")

    def run_reusing(self, gray: np.ndarray, threads: int | None = None) -> list[np.ndarray]:
        """Tap maps of one gray (H, W) image written into this thread's reusable buffers for that shape.

        The latency path: no tap map is allocated after the first call at a size. The arrays returned are
        overwritten by this thread's next call at the same size; copy them to keep them.
        """
        shape = tuple(np.shape(gray))
        cache = getattr(self._local, "buffers", None)
        if cache is None:
            cache = self._local.buffers = {}
        out = cache.get(shape)
        if out is None:
            if len(shape) != 2:
                return self.run(gray, threads=threads)
            if len(cache) >= 8:  # many image sizes: keep the memory bounded
                cache.clear()
            out = cache[shape] = [np.empty(s, np.float32) for s in self.output_shapes(*shape)]
        return self.run(gray, out=out, threads=threads)

    def run(self, gray: np.ndarray, out: list[np.ndarray] | None = None,
            threads: int | None = None) -> list[np.ndarray]:
        """Tap maps of a gray image or a batch.

        Args:
            gray: float (H, W) or (N, H, W) sRGB gray values in [0, 1] (float32 avoids a converted copy).
            out: optional preallocated outputs (float32 C-contiguous, shapes as returned) to write into, so that
                repeated runs do not allocate; see :meth:`output_shapes`.
            threads: intra-op threads for this call (a session per thread count is kept); ``None`` for the
                classifier's own ``threads``. Callers running several classifiers at once pass their share.

        Returns:
            One float32 C-contiguous array per tap, in :attr:`taps` order: (C_i, h_i, w_i) for an (H, W) input,
            (N, C_i, h_i, w_i) for a batch. The maps cover :meth:`frame` (H, W) (the padded image for a model
            that needs a stride multiple); ``h_i`` is about ``frame_H / stride_i`` (pooling rounds down).

        Thread-safe: concurrent calls share the one session.
        """
        x = np.asarray(gray)
        if x.dtype.kind not in "f":
            raise TypeError(f"gray: expected float gray values in [0, 1], got dtype {x.dtype}"
                            + (" (divide uint8 images by 255)" if x.dtype == np.uint8 else ""))
        if x.ndim not in (2, 3):
            raise ValueError(f"gray: expected (H, W) or (N, H, W) gray values, got shape {x.shape}")
        single = x.ndim == 2
        n, h, w = (1, *x.shape) if single else x.shape
        if n < 1:
            raise ValueError("gray: empty batch")
        if x.ndim == 3 and w in (3, 4) and w < self._min_size:
            raise ValueError(f"gray: expected (H, W) or (N, H, W) gray values, got shape {x.shape}: a color image? "
                             "convert it to gray first")
        self._check_size(h, w)
        if n > 1 and self._geometry.one_at_a_time:  # a model with a static batch of one
            singles = [self.run(x[i], threads=threads) for i in range(n)]
            stacked = [np.stack([s[k] for s in singles]) for k in range(len(singles[0]))]
            if out is None:
                return stacked
            self._check_out(out, [a.shape for a in stacked])
            for dst, src in zip(out, stacked):
                dst[...] = src
            return list(out)
        x = np.ascontiguousarray(x, dtype=np.float32).reshape(n, h, w)
        x = self._geometry.fit_input(x)
        x = np.ascontiguousarray(x.reshape(n, 1, x.shape[1], x.shape[2]))

        with self._lock:
            shapes = self._shapes.get((h, w))
        if self._fusion is not None:
            return self._run_split(x, n, h, w, single, shapes, out, threads)
        session = self._session_for(threads)
        binding = session.io_binding()
        binding.bind_cpu_input(self._input_name, x)
        if shapes is None:
            # first run at this size: onnxruntime allocates the outputs and we learn their shapes
            for name in self._output_names:
                binding.bind_output(name, "cpu")
            self._run(session, binding, x.shape)
            outs = [np.ascontiguousarray(a, dtype=np.float32) for a in binding.copy_outputs_to_cpu()]
            outs = self._first_outputs(h, w, outs, out, single)
            if out is not None:
                return outs
        else:
            # later runs: onnxruntime writes straight into the arrays returned (or the caller's `out`)
            full = [(n, *s) for s in shapes]
            outs = self._later_buffers(full, out, single)
            for name, arr, s in zip(self._output_names, outs, full):
                binding.bind_output(name, "cpu", 0, np.float32, list(s), arr.ctypes.data)
            self._run(session, binding, x.shape)
            if out is not None:
                return list(out)
        if single:
            return [a.reshape(a.shape[1:]) for a in outs]
        return outs

    def _run_split(self, x: np.ndarray, n: int, h: int, w: int, single: bool, shapes: Any, out: Any,
                   threads: int | None) -> list[np.ndarray]:
        """:meth:`run` through the fused split (same outputs, same buffer rules)."""
        if shapes is None:
            outs = self._run_fused(x, None, None, threads)
            outs = self._first_outputs(h, w, outs, out, single)
            if out is not None:
                return outs
        else:
            full = [(n, *s) for s in shapes]
            outs = self._later_buffers(full, out, single)
            self._run_fused(x, shapes, outs, threads)
            if out is not None:
                return list(out)
        if single:
            return [a.reshape(a.shape[1:]) for a in outs]
        return outs

    def _first_outputs(self, h: int, w: int, outs: list[np.ndarray], out: Any, single: bool) -> list[np.ndarray]:
        """After the first run at (h, w): remember the taps' shapes, and copy ``outs`` into the caller's ``out``
        when given (returned then; else ``outs``)."""
        with self._lock:
            if len(self._shapes) >= 64:
                self._shapes.pop(next(iter(self._shapes)))
            self._shapes[(h, w)] = [(int(a.shape[1]), int(a.shape[2]), int(a.shape[3])) for a in outs]
        if out is None:
            return outs
        self._check_out(out, [a.shape[1:] if single else a.shape for a in outs])
        for dst, src in zip(out, outs):
            dst.reshape(src.shape)[...] = src
        return list(out)

    def _later_buffers(self, full: Sequence[tuple[int, ...]], out: Any, single: bool) -> list[np.ndarray]:
        """The (N, C, H, W) arrays a later run writes into: the caller's ``out`` (checked, viewed with the
        batch axis) or new ones."""
        if out is None:
            return [np.empty(s, np.float32) for s in full]
        self._check_out(out, [s[1:] if single else s for s in full])
        return [a.reshape(s) for a, s in zip(out, full)]

    def _check_out(self, out: Sequence[np.ndarray], shapes: Sequence[tuple[int, ...]]) -> None:
        if not isinstance(out, (list, tuple)) or len(out) != len(shapes):
            raise ValueError(f"out: expected a list of {len(shapes)} arrays, one per tap")
        for i, (a, s) in enumerate(zip(out, shapes)):
            s = tuple(s)
            if not isinstance(a, np.ndarray) or a.dtype != np.float32 or not a.flags.c_contiguous or not a.flags.writeable:
                raise ValueError(f"out[{i}]: expected a writeable C-contiguous float32 array")
            if a.shape != s:
                raise ValueError(f"out[{i}]: expected shape {s}, got {a.shape}")

    def _run(self, session: Any, binding: Any, shape: tuple[int, ...]) -> None:
        try:
            session.run_with_iobinding(binding, self._run_options)
        except Exception as e:  # noqa: BLE001
            raise ValueError(f"{self._origin}: the classifier failed on input of shape {shape}: "
                             f"{str(e).strip()[:800]}") from None

