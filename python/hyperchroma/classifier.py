"""The CNN classifier run through ONNX Runtime, with its conv layers' outputs ("taps") as the result.

:class:`Classifier` loads an ONNX CNN (by default the small classifier shipped in ``hyperchroma/models``),
builds from it a *runtime model* and runs that in one reused ``InferenceSession``:

- the graph's outputs are the taps only (everything they do not depend on, e.g. the FC head, is pruned);
- the input is the gray image itself, (N, 1, H, W) float32 sRGB gray values in [0, 1], with dynamic N, H, W;
  the model's own input normalization is baked into the graph in front of it (for our models, conversion to
  Lab L and the normalization recorded in ``metadata_props``; for a foreign 3-channel model, the gray plane
  replicated to R=G=B and normalized with its mean/std, ImageNet's by default);
- its ``metadata_props`` record the taps (name, channels, stride) and the input normalization, so that
  ``Classifier.from_bytes(clf.model_bytes)`` rebuilds exactly the same classifier (same :attr:`identity`).

Any ONNX CNN can be tapped: by default every ``Conv`` (its activation's output where a BatchNormalization
and/or an activation follows it alone), or the tensors / nodes named in ``taps``.

Providers: the CUDA execution provider when it is actually usable (the driver loads, a device exists, the
provider's libraries load), else the CPU one, chosen without printing anything; ``providers=`` overrides.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import io
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, NamedTuple, Sequence, Union

import numpy as np

__all__ = ["Classifier", "TapInfo", "default_model_path", "available_providers", "cuda_usable", "cuda_status",
           "IMAGENET_MEAN", "IMAGENET_STD"]

META_PREFIX = "hyperchroma."
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_PROBE_SIZE = 224
_ACTIVATIONS = {"Relu", "LeakyRelu", "PRelu", "Clip", "Sigmoid", "Tanh", "Elu", "Selu", "HardSigmoid",
                "HardSwish", "Softplus", "Mish", "Gelu", "Celu", "ThresholdedRelu"}
_CPU = "CPUExecutionProvider"
_CUDA = "CUDAExecutionProvider"
_ORT_DEFAULT_LOG_SEVERITY = 2  # onnxruntime's own default (warning)

PathLike = Union[str, "os.PathLike[str]"]
ProviderArg = Union[str, "tuple[str, dict[str, Any]]"]


class TapInfo(NamedTuple):
    """One tapped layer: the graph output ``name``, its ``channels`` and its ``stride`` (input size / map size)."""

    name: str
    channels: int
    stride: int


def default_model_path() -> Path:
    """Path of the classifier shipped inside the package (``hyperchroma/models/classifier.onnx``)."""
    return Path(__file__).resolve().parent / "models" / "classifier.onnx"


def _ort() -> Any:
    import onnxruntime

    return onnxruntime


# --------------------------------------------------------------------------------------- provider probing
def _cuda_device_count() -> int:
    """Number of CUDA devices the driver reports (0 when there is no driver or no device), via ctypes."""
    for name in ("libcuda.so.1", "libcuda.so", "nvcuda.dll"):
        try:
            lib = ctypes.CDLL(name)
            break
        except OSError:
            continue
    else:
        return 0
    try:
        if lib.cuInit(0) != 0:
            return 0
        count = ctypes.c_int(0)
        if lib.cuDeviceGetCount(ctypes.byref(count)) != 0:
            return 0
        return int(count.value)
    except (AttributeError, OSError):
        return 0


@contextlib.contextmanager
def _quiet_ort() -> Iterable[None]:
    """Silence onnxruntime's default logger (and Python-level prints of its helpers) for a probe."""
    ort = _ort()
    ort.set_default_logger_severity(4)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        ort.set_default_logger_severity(_ORT_DEFAULT_LOG_SEVERITY)


def _tiny_model_bytes() -> bytes:
    import onnx
    from onnx import TensorProto, helper

    w = helper.make_tensor("w", TensorProto.FLOAT, [1, 1, 1, 1], [1.0])
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"])], "probe",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 2, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 2, 2])], initializer=[w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    return onnx._serialize(model) if hasattr(onnx, "_serialize") else model.SerializeToString()


@functools.lru_cache(maxsize=None)
def cuda_status() -> tuple[bool, str]:
    """``(usable, reason)`` for ONNX Runtime's CUDA execution provider: usable when the installed onnxruntime
    offers it, the CUDA driver loads and reports a device, and a tiny session on it keeps the CUDA provider.
    Probed once, silently (nothing reaches stdout/stderr), and cached."""
    ort = _ort()
    if _CUDA not in ort.get_available_providers():
        return False, "this onnxruntime build has no CUDA provider (install onnxruntime-gpu)"
    n = _cuda_device_count()
    if n < 1:
        return False, "no CUDA driver or no CUDA device"
    with _quiet_ort():
        try:
            if hasattr(ort, "preload_dlls"):  # CUDA/cuDNN from the nvidia-* wheels, when installed
                ort.preload_dlls()
        except Exception:  # noqa: BLE001 - a failed preload only means the system paths are used
            pass
        try:
            so = ort.SessionOptions()
            so.log_severity_level = 4
            sess = ort.InferenceSession(_tiny_model_bytes(), so, providers=[_CUDA, _CPU])
            if sess.get_providers()[0] == _CUDA:
                return True, f"{n} CUDA device(s)"
        except Exception:  # noqa: BLE001
            pass
    return False, f"{n} CUDA device(s), but the CUDA provider's libraries (CUDA, cuDNN) do not load"


def cuda_usable() -> bool:
    """Whether ONNX Runtime's CUDA execution provider actually works here (see :func:`cuda_status`)."""
    return cuda_status()[0]


def available_providers() -> list[str]:
    """Execution providers usable here, best first: ``CUDAExecutionProvider`` only when :func:`cuda_usable`."""
    ort = _ort()
    out = [_CUDA] if cuda_usable() else []
    return out + [p for p in ort.get_available_providers() if p not in (_CUDA, "TensorrtExecutionProvider")]


_ALIASES = {"cpu": _CPU, "cuda": _CUDA, "gpu": _CUDA, "tensorrt": "TensorrtExecutionProvider"}


def _resolve_providers(providers: Any) -> list[Any]:
    """Explicit providers: names (or aliases cpu/cuda), or (name, options) pairs. Unusable ones are dropped when a
    later one can run; when none can, a ValueError names what is available."""
    if providers is None:
        return [(_CUDA, {}), _CPU] if cuda_usable() else [_CPU]
    if isinstance(providers, (str, tuple)):
        providers = [providers]
    ort = _ort()
    have = set(ort.get_available_providers())
    out: list[Any] = []
    for p in providers:
        name, opts = (p[0], dict(p[1])) if isinstance(p, tuple) else (p, None)
        if not isinstance(name, str):
            raise TypeError(f"providers: expected names like 'CPUExecutionProvider' or (name, options), got {p!r}")
        name = _ALIASES.get(name.lower(), name)
        usable = name in have and (name not in (_CUDA, "TensorrtExecutionProvider") or cuda_usable())
        if usable:
            out.append((name, opts) if opts is not None else name)
    if not out:
        raise ValueError(
            f"none of the requested execution providers {list(providers)!r} is usable here "
            f"(usable: {available_providers()})"
        )
    return out


# ------------------------------------------------------------------------------------- model preparation
def _meta(model: Any) -> dict[str, str]:
    return {p.key[len(META_PREFIX):]: p.value for p in model.metadata_props if p.key.startswith(META_PREFIX)}


def _load_model(data: bytes, origin: str) -> Any:
    import onnx
    from google.protobuf.message import DecodeError

    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"{origin}: expected the model's bytes, got {type(data).__name__}")
    if len(data) == 0:
        raise ValueError(f"{origin}: empty file, not an ONNX model")
    try:
        model = onnx.load_model_from_string(bytes(data))
    except (DecodeError, ValueError, RuntimeError) as e:
        raise ValueError(f"{origin}: not a valid ONNX model (cannot parse it: {e}); is the file truncated?") from None
    if not model.HasField("graph") or len(model.graph.node) == 0:
        raise ValueError(f"{origin}: not a valid ONNX model (no graph); is the file truncated or of another kind?")
    try:
        onnx.checker.check_model(model)
    except Exception as e:  # noqa: BLE001 - onnx raises ValidationError (or C++ errors) for broken models
        raise ValueError(f"{origin}: invalid ONNX model: {str(e).strip().splitlines()[0]}") from None
    return model


@dataclass
class _Prepared:
    data: bytes
    taps: list[TapInfo] | None  # None: to be probed
    min_size: int
    input_info: dict[str, Any]
    meta: dict[str, str]


def _image_input(graph: Any, origin: str) -> Any:
    inits = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise ValueError(f"{origin}: expected one image input, the model has {len(inputs)} "
                         f"({', '.join(i.name for i in inputs) or 'none'})")
    inp = inputs[0]
    tt = inp.type.tensor_type
    if not inp.type.HasField("tensor_type") or not tt.HasField("shape"):
        raise ValueError(f"{origin}: the input {inp.name!r} has no tensor shape; expected (N, C, H, W)")
    if len(tt.shape.dim) != 4:
        raise ValueError(f"{origin}: expected a 4-D image input (N, C, H, W), the input {inp.name!r} has rank "
                         f"{len(tt.shape.dim)}")
    from onnx import TensorProto

    if tt.elem_type != TensorProto.FLOAT:
        raise ValueError(f"{origin}: only float32 models are supported, the input {inp.name!r} is "
                         f"{TensorProto.DataType.Name(tt.elem_type)}")
    c = tt.shape.dim[1]
    if not c.HasField("dim_value") or c.dim_value not in (1, 3):
        raise ValueError(f"{origin}: expected 1 (gray) or 3 (RGB) input channels, the input {inp.name!r} has "
                         f"{c.dim_value if c.HasField('dim_value') else repr(c.dim_param)}")
    return inp


def _conv_taps(graph: Any) -> list[tuple[Any, str]]:
    """(Conv node, tensor to tap) for every Conv: its output, followed through a BatchNormalization and/or an
    activation that is its only consumer."""
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {o.name for o in graph.output}
    found: list[tuple[Any, str]] = []
    for node in graph.node:
        if node.op_type != "Conv":
            continue
        t = node.output[0]
        for follow in ({"BatchNormalization"}, _ACTIVATIONS):
            users = consumers.get(t, [])
            if len(users) == 1 and users[0].op_type in follow and t not in outputs:
                t = users[0].output[0]
        found.append((node, t))
    return found


def _default_taps(graph: Any) -> list[str]:
    """Every Conv, post-activation (see :func:`_conv_taps`)."""
    taps: list[str] = []
    for _, t in _conv_taps(graph):
        if t not in taps:
            taps.append(t)
    return taps


def _named_taps(graph: Any, names: Sequence[str], origin: str) -> list[str]:
    """User-named taps: a tensor name is tapped as is; a node name taps the node's output (a Conv's followed
    through its BatchNormalization/activation as for the default taps)."""
    produced = {o for node in graph.node for o in node.output}
    by_node = {node.name: node for node in graph.node if node.name}
    conv_tap = {node.name: t for node, t in _conv_taps(graph) if node.name}
    out: list[str] = []
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"taps: expected tensor or node names, got {name!r}")
        if name in produced:
            t = name
        elif name in by_node:
            t = conv_tap.get(name, by_node[name].output[0])
        else:
            convs = ", ".join(n.name or n.output[0] for n in graph.node if n.op_type == "Conv")
            raise ValueError(f"{origin}: no tensor or node named {name!r} to tap (the Conv nodes: "
                             f"{convs[:400] or 'none'})")
        if t in out:
            raise ValueError(f"taps: {name!r} is tapped twice")
        out.append(t)
    if not out:
        raise ValueError("taps: name at least one layer")
    return out


def _subgraph_inputs(node: Any) -> set[str]:
    names: set[str] = set()
    for attr in node.attribute:
        graphs = list(attr.graphs) + ([attr.g] if attr.HasField("g") else [])
        for g in graphs:
            for n in g.node:
                names.update(n.input)
                names |= _subgraph_inputs(n)
    return names


def _preprocess_nodes(input_info: dict[str, Any], src: str, dst: str, channels: int) -> tuple[list[Any], list[Any]]:
    """Nodes turning gray [0,1] (N,1,H,W) ``src`` into the model's normalized input ``dst`` (N,C,H,W)."""
    from onnx import helper, numpy_helper

    mean = np.asarray(input_info["mean"], np.float32).reshape(-1)
    std = np.asarray(input_info["std"], np.float32).reshape(-1)
    nodes, inits = [], []
    p = "hyperchroma_pre_"

    def const(name: str, value: Any) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value, np.float32), p + name))
        return p + name

    x = src
    if input_info["space"] == "L":
        # Lab L/100 of a gray sRGB value g: f = cbrt(Y) (or its linear toe), L/100 = 1.16 f - 0.16
        nodes += [
            helper.make_node("Max", [x, const("zero", 0.0)], [p + "lo"]),
            helper.make_node("Min", [p + "lo", const("one", 1.0)], [p + "g"]),
            helper.make_node("Less", [p + "g", const("srgb_knee", 0.04045)], [p + "toe"]),
            helper.make_node("Div", [p + "g", const("srgb_slope", 12.92)], [p + "lin_toe"]),
            helper.make_node("Add", [p + "g", const("srgb_off", 0.055)], [p + "g1"]),
            helper.make_node("Div", [p + "g1", const("srgb_div", 1.055)], [p + "g2"]),
            helper.make_node("Pow", [p + "g2", const("srgb_gamma", 2.4)], [p + "lin_pow"]),
            helper.make_node("Where", [p + "toe", p + "lin_toe", p + "lin_pow"], [p + "Y"]),
            helper.make_node("Greater", [p + "Y", const("lab_eps", 216.0 / 24389.0)], [p + "cubic"]),
            helper.make_node("Pow", [p + "Y", const("third", 1.0 / 3.0)], [p + "f_pow"]),
            helper.make_node("Mul", [p + "Y", const("lab_kappa", 24389.0 / 27.0 / 116.0)], [p + "f_lin0"]),
            helper.make_node("Add", [p + "f_lin0", const("lab_16", 16.0 / 116.0)], [p + "f_lin"]),
            helper.make_node("Where", [p + "cubic", p + "f_pow", p + "f_lin"], [p + "f"]),
        ]
        # (1.16 f - 0.16 - mean) / std  ==  f * a + b
        a = (1.16 / std).reshape(1, -1, 1, 1)
        b = ((-0.16 - mean) / std).reshape(1, -1, 1, 1)
        x = p + "f"
    else:
        a = (1.0 / std).reshape(1, -1, 1, 1)
        b = (-mean / std).reshape(1, -1, 1, 1)
    if channels == 3 and a.size == 1:
        a, b = np.repeat(a, 3, 1), np.repeat(b, 3, 1)
    if channels == 3:
        nodes.append(helper.make_node("Concat", [x, x, x], [p + "rgb"], axis=1))
        x = p + "rgb"
    nodes.append(helper.make_node("Mul", [x, const("scale", a)], [p + "scaled"]))
    nodes.append(helper.make_node("Add", [p + "scaled", const("shift", b)], [dst]))
    for i, n in enumerate(nodes):
        n.name = f"{p}{i}_{n.op_type}"
    return nodes, inits


def _prepare(data: bytes, origin: str, taps: Sequence[str] | None, mean: Any, std: Any) -> _Prepared:
    """Build the runtime model's bytes from any ONNX CNN (or return a runtime model unchanged)."""
    from onnx import TensorProto, helper

    model = _load_model(data, origin)
    graph = model.graph
    meta = _meta(model)
    runtime = meta.get("runtime") == "1"

    if runtime:
        if mean is not None or std is not None:
            raise ValueError(f"{origin}: this is a prepared runtime model with its normalization built in; "
                             "mean/std cannot be changed (tap the original model instead)")
        recorded = [TapInfo(**t) for t in json.loads(meta["taps"])]
        if taps is None or list(taps) == [t.name for t in recorded]:
            if [o.name for o in graph.output] != [t.name for t in recorded]:
                raise ValueError(f"{origin}: runtime model outputs do not match its recorded taps")
            return _Prepared(bytes(data), recorded, int(meta.get("min_size", "1")), json.loads(meta["input"]), meta)

    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < 9:
        raise ValueError(f"{origin}: ONNX opset {opset} is too old to tap (need >= 9); upgrade it with "
                         "onnx.version_converter.convert_version(model, 17)")

    # what feeds the model, and its normalization
    if runtime:
        inp_name, channels = graph.input[0].name, 1
        input_info = json.loads(meta["input"])
    else:
        inp = _image_input(graph, origin)
        inp_name, channels = inp.name, inp.type.tensor_type.shape.dim[1].dim_value
        if mean is not None or std is not None:
            input_info = {"space": "gray",
                          "mean": [float(v) for v in np.atleast_1d(0.0 if mean is None else mean)],
                          "std": [float(v) for v in np.atleast_1d(1.0 if std is None else std)]}
        elif "input" in meta:
            input_info = json.loads(meta["input"])
        elif channels == 3:
            input_info = {"space": "gray", "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}
        else:
            input_info = {"space": "gray", "mean": [0.0], "std": [1.0]}
        if input_info.get("space") not in ("L", "gray"):
            raise ValueError(f"{origin}: unknown input space {input_info.get('space')!r} in metadata")
        for key in ("mean", "std"):
            n = len(np.atleast_1d(input_info[key]))
            if n not in (1, channels):
                raise ValueError(f"{key}: expected 1 or {channels} values for a {channels}-channel model, got {n}")
        if np.any(np.asarray(input_info["std"], np.float64) == 0):
            raise ValueError("std: must be non-zero")

    # which tensors to tap
    recorded_taps: dict[str, TapInfo] = {}
    if "taps" in meta:
        try:
            recorded_taps = {t["name"]: TapInfo(t["name"], int(t["channels"]), int(t["stride"]))
                             for t in json.loads(meta["taps"])}
        except (ValueError, KeyError, TypeError):
            recorded_taps = {}
    if taps is not None:
        if isinstance(taps, str):
            taps = [taps]
        tap_names = _named_taps(graph, list(taps), origin)
    elif recorded_taps:
        tap_names = list(recorded_taps)
    else:
        tap_names = _default_taps(graph)
        if not tap_names:
            raise ValueError(f"{origin}: the model has no Conv layer to tap; name the layers with taps=[...]")
    produced = {o for node in graph.node for o in node.output}
    for t in tap_names:
        if t not in produced:
            raise ValueError(f"{origin}: tap {t!r} is not produced by any node")

    # prune to what the taps need
    needed = set(tap_names)
    keep = []
    for node in reversed(graph.node):
        if any(o in needed for o in node.output):
            keep.append(node)
            needed.update(i for i in node.input if i)
            needed |= _subgraph_inputs(node)
    keep.reverse()
    used_inits = [i for i in graph.initializer if i.name in needed]
    used_sparse = [i for i in graph.sparse_initializer if i.values.name in needed]

    names = produced | {i.name for i in graph.initializer} | {i.name for i in graph.input}
    gray = "gray"
    while gray in names:
        gray += "_"
    if runtime:
        pre_nodes, pre_inits = [], []
        gray = inp_name
    else:
        pre_nodes, pre_inits = _preprocess_nodes(input_info, gray, inp_name, channels)
    new_graph = helper.make_graph(
        pre_nodes + keep, graph.name or "tapped",
        [helper.make_tensor_value_info(gray, TensorProto.FLOAT, ["N", 1, "H", "W"])],
        [helper.make_tensor_value_info(t, TensorProto.FLOAT, [None] * 4) for t in tap_names],
        initializer=pre_inits + used_inits, sparse_initializer=used_sparse,
    )
    new_model = helper.make_model(new_graph, opset_imports=list(model.opset_import),
                                  producer_name=model.producer_name, producer_version=model.producer_version)
    new_model.ir_version = model.ir_version
    new_model.functions.extend(model.functions)
    taps_known = None
    if all(t in recorded_taps for t in tap_names):
        taps_known = [recorded_taps[t] for t in tap_names]
    min_size = int(meta.get("min_size", "0") or 0)
    new_meta = {k: v for k, v in meta.items() if k not in ("taps", "input", "runtime", "min_size")}
    new_meta["runtime"] = "1"
    new_meta["input"] = json.dumps(input_info)
    if not runtime:
        new_meta["source_sha256"] = hashlib.sha256(bytes(data)).hexdigest()
        new_meta["source_input"] = inp_name
    return _Prepared(new_model.SerializeToString(), taps_known, min_size, input_info, new_meta)


def _finish(prep: _Prepared, taps: list[TapInfo], min_size: int) -> bytes:
    """Write the taps and minimum size into the runtime model's metadata; return the final bytes."""
    import onnx
    from onnx import helper

    model = onnx.load_model_from_string(prep.data)
    meta = dict(prep.meta)
    meta["taps"] = json.dumps([t._asdict() for t in taps])
    meta["min_size"] = str(min_size)
    del model.metadata_props[:]
    helper.set_model_props(model, {META_PREFIX + k: meta[k] for k in sorted(meta)})
    return model.SerializeToString()


# ----------------------------------------------------------------------------------------------- runner
class Classifier:
    """A CNN classifier whose conv-layer outputs ("taps") are the features of every pixel.

    Args:
        path: an ONNX file; ``None`` for the classifier shipped with the package.
        providers: execution providers for ONNX Runtime (names, aliases ``"cpu"``/``"cuda"``, or (name, options)
            pairs); ``None`` picks CUDA when it is usable here, else CPU, without printing anything.
        taps: tensor or node names to tap; ``None`` for the model's recorded taps (ours) or every Conv (foreign).
        threads: ONNX Runtime intra-op threads; ``None`` for its default (one per physical core).
        mean, std: input normalization of a foreign model, on gray values in [0, 1] (per channel for a
            3-channel model, which gets the gray plane replicated); default ImageNet's for a 3-channel model
            without hyperchroma metadata, none for a 1-channel one. For a model fed 0..255, pass
            ``mean=0, std=1/255``.

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
        self._init(p.read_bytes(), str(p), providers, taps, threads, mean, std)

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
    ) -> "Classifier":
        """A classifier from ONNX bytes, e.g. :attr:`model_bytes` of another one (then with the same
        :attr:`identity`)."""
        self = cls.__new__(cls)
        self._init(data, "<bytes>", providers, taps, threads, mean, std)
        return self

    # -------------------------------------------------------------------------------------------- set-up
    def _init(self, data: Any, origin: str, providers: Any, taps: Any, threads: Any, mean: Any, std: Any) -> None:
        if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 0):
            raise ValueError(f"threads: expected a non-negative int (0 or None: onnxruntime's default), got {threads!r}")
        self._origin = origin
        self._threads = threads
        self._providers_arg = providers
        self._lock = threading.Lock()
        self._shapes: dict[tuple[int, int], list[tuple[int, int, int]]] = {}
        prep = _prepare(data, origin, taps, mean, std)
        self._input_info = prep.input_info
        self._meta = prep.meta
        resolved = _resolve_providers(providers)
        if prep.taps is not None and "taps" in prep.meta:  # an unchanged runtime model
            taps_info, min_size = prep.taps, prep.min_size
            self._model_bytes = prep.data
        elif prep.taps is not None:  # taps known from our metadata: no probe needed
            taps_info = prep.taps
            min_size = max(prep.min_size, max(t.stride for t in taps_info))
            self._model_bytes = _finish(prep, taps_info, min_size)
        else:  # a foreign model: one probe run tells the taps' channels and strides
            taps_info, min_size = self._probe(self._make_session(prep.data, resolved), prep.meta)
            self._model_bytes = _finish(prep, taps_info, min_size)
        self._session = self._make_session(self._model_bytes, resolved)
        self._taps = list(taps_info)
        self._min_size = int(min_size)
        self._input_name = self._session.get_inputs()[0].name
        self._output_names = [o.name for o in self._session.get_outputs()]
        if self._output_names != [t.name for t in self._taps]:
            raise ValueError(f"{origin}: internal error: session outputs {self._output_names} != taps")
        self._identity = hashlib.sha256(self._model_bytes).hexdigest()
        self._run_options = _ort().RunOptions()
        self._run_options.log_severity_level = 3
        self._provider = self._session.get_providers()[0]

    def _make_session(self, data: bytes, providers: list[Any]) -> Any:
        ort = _ort()
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.inter_op_num_threads = 1
        if self._threads:
            so.intra_op_num_threads = self._threads
        so.log_severity_level = 3
        # no busy-waiting: the threads sleep between runs instead of fighting the core's (and the caller's) threads
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        so.add_session_config_entry("session.inter_op.allow_spinning", "0")
        try:
            if any((p[0] if isinstance(p, tuple) else p) == _CUDA for p in providers):
                with _quiet_ort():
                    return ort.InferenceSession(data, so, providers=providers)
            return ort.InferenceSession(data, so, providers=providers)
        except Exception as e:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise ValueError(f"{self._origin}: ONNX Runtime cannot load the model: {str(e).strip()[:800]}") from None

    def _probe(self, session: Any, meta: dict[str, str]) -> tuple[list[TapInfo], int]:
        """Channels and strides of a foreign model's taps, from one run on a (1, 1, S, S) zero image."""
        size = _PROBE_SIZE
        src = meta.get("source_input")
        try:
            x = np.zeros((1, 1, size, size), np.float32)
            outs = session.run(None, {session.get_inputs()[0].name: x})
        except Exception as e:  # noqa: BLE001
            raise ValueError(f"{self._origin}: the model fails on a {size}x{size} input"
                             f"{' ' + repr(src) if src else ''}: {str(e).strip()[:800]}") from None
        taps = []
        for o, arr in zip(session.get_outputs(), outs):
            if arr.ndim != 4 or arr.dtype != np.float32:
                raise ValueError(f"{self._origin}: tap {o.name!r} is not a float32 (N, C, h, w) map "
                                 f"(got {arr.dtype} of shape {arr.shape}); tap conv layers")
            stride = max(1, int(round(size / max(arr.shape[2], 1))))
            taps.append(TapInfo(o.name, int(arr.shape[1]), stride))
        return taps, max(t.stride for t in taps)

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
        """Smallest height and width :meth:`run` accepts."""
        return self._min_size

    @property
    def normalization(self) -> dict[str, Any]:
        """The input normalization built into the runtime model: ``{"space": "L"|"gray", "mean", "std"}``."""
        return dict(self._input_info)

    @property
    def metadata(self) -> dict[str, str]:
        """The runtime model's hyperchroma metadata (spec, taps, input, provenance... as stored)."""
        return dict(_meta_from_bytes(self._model_bytes))

    @property
    def threads(self) -> int | None:
        return self._threads

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
        if h < self._min_size or w < self._min_size:
            raise ValueError(f"image of {h}x{w} pixels is smaller than the classifier's minimum "
                             f"{self._min_size}x{self._min_size}")

    def run(self, gray: np.ndarray, out: list[np.ndarray] | None = None) -> list[np.ndarray]:
        """Tap maps of a gray image or a batch.

        Args:
            gray: float (H, W) or (N, H, W) sRGB gray values in [0, 1] (float32 avoids a converted copy).
            out: optional preallocated outputs (float32 C-contiguous, shapes as returned) to write into, so that
                repeated runs do not allocate; see :meth:`output_shapes`.

        Returns:
            One float32 C-contiguous array per tap, in :attr:`taps` order: (C_i, h_i, w_i) for an (H, W) input,
            (N, C_i, h_i, w_i) for a batch. ``h_i`` is about ``H / stride_i`` (pooling rounds down).

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
        x = np.ascontiguousarray(x, dtype=np.float32).reshape(n, 1, h, w)

        with self._lock:
            shapes = self._shapes.get((h, w))
        binding = self._session.io_binding()
        binding.bind_cpu_input(self._input_name, x)
        if shapes is None:
            # first run at this size: onnxruntime allocates the outputs and we learn their shapes
            for name in self._output_names:
                binding.bind_output(name, "cpu")
            self._run(binding, x.shape)
            outs = [np.ascontiguousarray(a, dtype=np.float32) for a in binding.copy_outputs_to_cpu()]
            with self._lock:
                if len(self._shapes) >= 64:
                    self._shapes.pop(next(iter(self._shapes)))
                self._shapes[(h, w)] = [(int(a.shape[1]), int(a.shape[2]), int(a.shape[3])) for a in outs]
            if out is not None:
                self._check_out(out, [a.shape[1:] if single else a.shape for a in outs])
                for dst, src in zip(out, outs):
                    dst.reshape(src.shape)[...] = src
                return list(out)
        else:
            # later runs: onnxruntime writes straight into the arrays returned (or the caller's `out`)
            full = [(n, *s) for s in shapes]
            if out is not None:
                self._check_out(out, [s[1:] if single else s for s in full])
                outs = list(out)
            else:
                outs = [np.empty(s, np.float32) for s in full]
            for name, arr, s in zip(self._output_names, outs, full):
                binding.bind_output(name, "cpu", 0, np.float32, list(s), arr.ctypes.data)
            self._run(binding, x.shape)
            if out is not None:
                return outs
        if single:
            return [a.reshape(a.shape[1:]) for a in outs]
        return outs

    def _check_out(self, out: Sequence[np.ndarray], shapes: Sequence[tuple[int, ...]]) -> None:
        if not isinstance(out, (list, tuple)) or len(out) != len(shapes):
            raise ValueError(f"out: expected a list of {len(shapes)} arrays, one per tap")
        for i, (a, s) in enumerate(zip(out, shapes)):
            s = tuple(s)
            if not isinstance(a, np.ndarray) or a.dtype != np.float32 or not a.flags.c_contiguous or not a.flags.writeable:
                raise ValueError(f"out[{i}]: expected a writeable C-contiguous float32 array")
            if a.shape != s:
                raise ValueError(f"out[{i}]: expected shape {s}, got {a.shape}")

    def _run(self, binding: Any, shape: tuple[int, ...]) -> None:
        try:
            self._session.run_with_iobinding(binding, self._run_options)
        except Exception as e:  # noqa: BLE001
            raise ValueError(f"{self._origin}: the classifier failed on input of shape {shape}: "
                             f"{str(e).strip()[:800]}") from None


def _meta_from_bytes(data: bytes) -> dict[str, str]:
    import onnx

    return _meta(onnx.load_model_from_string(data))
