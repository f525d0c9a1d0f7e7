"""Graph surgery: turn any ONNX CNN into the runtime model hyperchroma runs.

- **tapping**: the outputs become the taps (every ``Conv``, followed through a BatchNormalization and/or an
  activation that is its only consumer, or the tensors / nodes the user names);
- **pruning**: every node the taps do not depend on (e.g. the FC head) is dropped;
- **normalization**: the input becomes the gray image itself, (N, 1, H, W) float32 in [0, 1], with the
  model's own input normalization baked in front (Lab L for our models, replicated gray and mean/std for a
  foreign 3-channel model), then the model's own layout (NCHW or NHWC) and input type (float32 or float16);
- **types**: taps of another type (a float16 model's) are cast to float32 outputs;
- **external data**: weights kept beside the model (``model.onnx.data``, torch's dynamo exporter) are read
  relative to the model file and embedded, so the runtime model is one self-contained blob;
- the result's ``metadata_props`` record the taps and the normalization (:mod:`.metadata`).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .metadata import (
    GRAY_TAP,
    IMAGENET_MEAN,
    IMAGENET_STD,
    META_PREFIX,
    TapInfo,
    read_meta,
)

#: Conv-like ops whose output is a feature map to tap (``FusedConv``: ONNX Runtime's Conv + activation, in
#: models saved after its graph optimizations).
CONV_OPS = {"Conv", "FusedConv", "ConvInteger", "QLinearConv"}
#: A quantized conv's (ConvInteger's int32, QLinearConv's uint8) output is tapped after the dequantization that
#: follows it alone: these ops, up to DEQUANT_STEPS of them.
DEQUANT_OPS = {"Cast", "Mul", "Add", "DequantizeLinear"}
DEQUANT_STEPS = 4
FLOAT_TYPES = {1: "float32", 10: "float16", 11: "float64", 16: "bfloat16"}  # TensorProto elem types cast to float32
ACTIVATIONS = {"Relu", "LeakyRelu", "PRelu", "Clip", "Sigmoid", "Tanh", "Elu", "Selu", "HardSigmoid",
                "HardSwish", "Softplus", "Mish", "Gelu", "Celu", "ThresholdedRelu"}


def _external_files(model: Any) -> list[str]:
    """The files of a model's tensors stored as external data (``data_location`` EXTERNAL), in order."""
    from onnx import TensorProto
    from onnx.external_data_helper import _get_all_tensors

    files: list[str] = []
    for t in _get_all_tensors(model):
        if t.HasField("data_location") and t.data_location == TensorProto.EXTERNAL:
            loc = next((e.value for e in t.external_data if e.key == "location"), "?")
            if loc not in files:
                files.append(loc)
    return files


def _embed_external_data(model: Any, origin: str, base_dir: str | None) -> None:
    """Read the tensors a model keeps in external files (relative to ``base_dir``, the model file's folder)
    into the model itself."""
    files = _external_files(model)
    if not files:
        return
    if base_dir is None:
        raise ValueError(f"{origin}: the model keeps its weights in external file(s) {', '.join(files)}; "
                         "load it from its path (Classifier(path)) so they are found beside it")
    from onnx.external_data_helper import load_external_data_for_model

    for f in files:
        if not os.path.isfile(os.path.join(base_dir, f)):
            raise ValueError(f"{origin}: its weights file {f!r} is missing (expected beside the model, in {base_dir})")
    try:
        load_external_data_for_model(model, base_dir)
    except (OSError, ValueError, RuntimeError) as e:  # a traversal outside base_dir, a short file...
        raise ValueError(f"{origin}: cannot read its external weights ({', '.join(files)}): {e}") from None
    if model.ByteSize() >= 2**31 - 1:
        raise ValueError(f"{origin}: the model with its weights is over 2 GiB, more than one ONNX file can hold")


def _load_model(data: bytes, origin: str, base_dir: str | None = None) -> Any:
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
    _embed_external_data(model, origin, base_dir)
    # onnx.checker is stricter than ONNX Runtime (e.g. it requires declared output shapes): a model it refuses
    # still goes on, and ONNX Runtime's own loading (with a clear error of ours) decides whether it runs
    return model


@dataclass
class Prepared:
    data: bytes
    taps: list[TapInfo] | None  # None: to be probed
    min_size: int
    input_info: dict[str, Any]
    meta: dict[str, str]


@dataclass(frozen=True)
class InputSpec:
    """The model's image input: its name, channels, layout ("NCHW" or "NHWC"), element type (ONNX
    TensorProto enum) and static (height, width) when it declares one."""

    name: str
    channels: int
    layout: str
    elem_type: int
    static: tuple[int | None, int | None] | None  #: declared (height, width), either may be None (symbolic)


def _dim(d: Any) -> int | None:
    return int(d.dim_value) if d.HasField("dim_value") and d.dim_value > 0 else None


def _image_input(graph: Any, origin: str) -> InputSpec:
    inits = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise ValueError(f"{origin}: expected one image input, the model has {len(inputs)} "
                         f"({', '.join(i.name for i in inputs) or 'none'})")
    inp = inputs[0]
    tt = inp.type.tensor_type
    if not inp.type.HasField("tensor_type") or not tt.HasField("shape"):
        raise ValueError(f"{origin}: the input {inp.name!r} has no tensor shape; expected (N, C, H, W) or (N, H, W, C)")
    if len(tt.shape.dim) != 4:
        raise ValueError(f"{origin}: expected a 4-D image input (N, C, H, W) or (N, H, W, C), the input {inp.name!r} "
                         f"has rank {len(tt.shape.dim)}")
    from onnx import TensorProto

    if tt.elem_type not in (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE):
        raise ValueError(f"{origin}: the input {inp.name!r} is {TensorProto.DataType.Name(tt.elem_type)}; only float32, "
                         "float16 and float64 image inputs are supported")
    d = [_dim(x) for x in tt.shape.dim]
    shown = "x".join(str(v) if v else (x.dim_param or "?") for v, x in zip(d, tt.shape.dim))
    first, last = d[1] in (1, 3), d[3] in (1, 3)
    if first and last:
        raise ValueError(f"{origin}: the input {inp.name!r} ({shown}) could be NCHW or NHWC; cannot tell its layout "
                         "(re-export it with a symbolic or larger height and width)")
    if first:
        layout, channels, hw = "NCHW", d[1], (d[2], d[3])
    elif last:
        layout, channels, hw = "NHWC", d[3], (d[1], d[2])
    else:
        raise ValueError(f"{origin}: expected 1 (gray) or 3 (RGB) input channels in an NCHW (N, C, H, W) or NHWC "
                         f"(N, H, W, C) layout, the input {inp.name!r} is {shown}")
    assert channels is not None
    static = (hw[0], hw[1]) if hw[0] or hw[1] else None
    return InputSpec(inp.name, channels, layout, int(tt.elem_type), static)


def _conv_taps(graph: Any) -> list[tuple[Any, str]]:
    """(Conv node, tensor to tap) for every Conv: its output, followed through a BatchNormalization and/or an
    activation that is its only consumer (a quantized conv's first through its dequantization)."""
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {o.name for o in graph.output}
    found: list[tuple[Any, str]] = []
    for node in graph.node:
        if node.op_type not in CONV_OPS:
            continue
        t = node.output[0]
        if node.op_type in ("ConvInteger", "QLinearConv"):
            for _ in range(DEQUANT_STEPS):
                users = consumers.get(t, [])
                if len(users) != 1 or users[0].op_type not in DEQUANT_OPS or t in outputs:
                    break
                t = users[0].output[0]
        for follow in ({"BatchNormalization"}, ACTIVATIONS):
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
            convs = ", ".join(n.name or n.output[0] for n in graph.node if n.op_type in CONV_OPS)
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


def _preprocess_nodes(input_info: dict[str, Any], src: str, dst: str, channels: int, layout: str = "NCHW",
                      elem_type: int = 1) -> tuple[list[Any], list[Any]]:
    """Nodes turning gray [0,1] (N,1,H,W) ``src`` into the model's normalized input ``dst`` (N,C,H,W), or
    (N,H,W,C) for an NHWC ``layout``, of the model's ``elem_type``."""
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
    last = dst if layout == "NCHW" and elem_type == 1 else p + "nchw"
    nodes.append(helper.make_node("Add", [p + "scaled", const("shift", b)], [last]))
    if layout == "NHWC":
        out = dst if elem_type == 1 else p + "nhwc"
        nodes.append(helper.make_node("Transpose", [last], [out], perm=[0, 2, 3, 1]))
        last = out
    if elem_type != 1:
        nodes.append(helper.make_node("Cast", [last], [dst], to=elem_type))
    for i, n in enumerate(nodes):
        n.name = f"{p}{i}_{n.op_type}"
    return nodes, inits


_MEAN_KEYS = ("mean", "image_mean", "norm_mean", "pixel_mean", "input_mean")
_STD_KEYS = ("std", "image_std", "norm_std", "pixel_std", "input_std")


def _meta_numbers(model: Any, keys: Sequence[str]) -> list[float] | None:
    """Numbers of the first of ``keys`` in a foreign model's ``metadata_props`` (any case; JSON or separated by
    commas/spaces), None when it has none."""
    props = {p.key.lower(): p.value for p in model.metadata_props}
    for k in keys:
        if k in props:
            text = props[k].strip().strip("[]()")
            try:
                return [float(v) for v in text.replace(",", " ").split()]
            except ValueError:
                return None
    return None


def metadata_normalization(model: Any, channels: int) -> dict[str, Any] | None:
    """The input normalization a foreign model's metadata states (``mean``/``std`` props, e.g. what an exporter
    records), on gray values in [0, 1]: values given on a 0..255 scale are divided by 255."""
    mean, std = _meta_numbers(model, _MEAN_KEYS), _meta_numbers(model, _STD_KEYS)
    if mean is None and std is None:
        return None
    mean = mean if mean else [0.0]
    std = std if std else [1.0]
    if max(abs(v) for v in mean + std) > 1.5:  # a 0..255 scale
        mean, std = [v / 255.0 for v in mean], [v / 255.0 for v in std]
    return {"space": "gray", "mean": mean, "std": std}


def tensor_types(model: Any) -> dict[str, int]:
    """Element types (ONNX enum) of the model's tensors that shape inference (or the graph) declares."""
    import onnx

    types: dict[str, int] = {}
    try:
        inferred = onnx.shape_inference.infer_shapes(model, check_type=False, strict_mode=False)
        infos = list(inferred.graph.value_info) + list(inferred.graph.output) + list(inferred.graph.input)
    except Exception:  # noqa: BLE001 - inference is a hint: models it cannot follow keep the float32 default
        infos = list(model.graph.value_info) + list(model.graph.output)
    for v in infos:
        if v.type.HasField("tensor_type") and v.type.tensor_type.elem_type:
            types[v.name] = int(v.type.tensor_type.elem_type)
    return types


def prepare(data: bytes, origin: str, taps: Sequence[str] | None, mean: Any, std: Any,
            base_dir: str | None = None) -> Prepared:
    """Build the runtime model's bytes from any ONNX CNN (or return a runtime model unchanged); ``base_dir``
    is the model file's folder, where its external data files are."""
    from onnx import TensorProto, helper

    model = _load_model(data, origin, base_dir)
    graph = model.graph
    meta = read_meta(model)
    runtime = meta.get("runtime") == "1"

    if runtime:
        if mean is not None or std is not None:
            raise ValueError(f"{origin}: this is a prepared runtime model with its normalization built in; "
                             "mean/std cannot be changed (tap the original model instead)")
        recorded = [TapInfo(**t) for t in json.loads(meta["taps"])]
        if taps is None or list(taps) == [t.name for t in recorded]:
            if [o.name for o in graph.output] != [t.name for t in recorded]:
                raise ValueError(f"{origin}: runtime model outputs do not match its recorded taps")
            return Prepared(bytes(data), recorded, int(meta.get("min_size", "1")), json.loads(meta["input"]), meta)

    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < 9:
        raise ValueError(f"{origin}: ONNX opset {opset} is too old to tap (need >= 9); upgrade it with "
                         "onnx.version_converter.convert_version(model, 17)")

    # what feeds the model, and its normalization
    if runtime:
        inp_name, channels = graph.input[0].name, 1
        input_info = json.loads(meta["input"])
    else:
        spec = _image_input(graph, origin)
        inp_name, channels = spec.name, spec.channels
        from_meta = metadata_normalization(model, channels)
        if mean is not None or std is not None:
            input_info = {"space": "gray",
                          "mean": [float(v) for v in np.atleast_1d(0.0 if mean is None else mean)],
                          "std": [float(v) for v in np.atleast_1d(1.0 if std is None else std)]}
        elif "input" in meta:
            input_info = json.loads(meta["input"])
        elif from_meta is not None:
            input_info = from_meta
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
        pre_nodes: list[Any] = []
        pre_inits: list[Any] = []
        gray = inp_name
    else:
        pre_nodes, pre_inits = _preprocess_nodes(input_info, gray, inp_name, channels, spec.layout, spec.elem_type)
    keep += _cast_taps(model, keep, tap_names, origin, names)
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
    new_meta = {k: v for k, v in meta.items() if k not in ("taps", "input", "runtime", "min_size", "tap_choice")}
    new_meta["runtime"] = "1"
    new_meta["input"] = json.dumps(input_info)
    if not runtime:
        new_meta["source_sha256"] = hashlib.sha256(bytes(data)).hexdigest()
        new_meta["source_input"] = inp_name
        new_meta["source_layout"] = spec.layout
        new_meta["source_type"] = FLOAT_TYPES.get(spec.elem_type, str(spec.elem_type))
        if spec.static:
            new_meta["source_size"] = json.dumps(list(spec.static))
    return Prepared(new_model.SerializeToString(), taps_known, min_size, input_info, new_meta)


def _cast_taps(model: Any, keep: list[Any], tap_names: Sequence[str], origin: str, names: set[str]) -> list[Any]:
    """Cast nodes for the taps that are not float32 (a float16 model's), renaming each such tap's producer output
    so that the float32 cast keeps the tap's name; nodes of ``keep`` are edited in place."""
    from onnx import TensorProto, helper

    graph = model.graph
    others = [i for i in graph.initializer if i.data_type not in (0, TensorProto.FLOAT)]
    inp = [i for i in graph.input if i.name not in {t.name for t in graph.initializer}]
    if not others and all(i.type.tensor_type.elem_type == TensorProto.FLOAT for i in inp):
        return []  # a float32 model: every tap is float32 (the probe checks it)
    types = tensor_types(model)
    casts: list[Any] = []
    for t in tap_names:
        elem = types.get(t, TensorProto.FLOAT)
        if elem == TensorProto.FLOAT:
            continue
        if elem not in FLOAT_TYPES:
            raise ValueError(f"{origin}: tap {t!r} is {TensorProto.DataType.Name(elem)}, not a float feature map")
        raw = t + "__hyperchroma_raw"
        while raw in names:
            raw += "_"
        for node in keep:
            for i, o in enumerate(node.output):
                if o == t:
                    node.output[i] = raw
            for i, x in enumerate(node.input):
                if x == t:
                    node.input[i] = raw
        casts.append(helper.make_node("Cast", [raw], [t], to=TensorProto.FLOAT, name=f"hyperchroma_cast_{len(casts)}"))
    return casts


def add_gray_tap(model: Any) -> None:
    """Add the output :data:`GRAY_TAP` to a runtime model: its gray input g (N,1,H,W) at stride 1, g minus its
    5x5 mean and the 5x5 standard deviation (N,3,H,W), with windows cut at the borders (no zero padding)."""
    from onnx import TensorProto, helper

    graph = model.graph
    g = graph.input[0].name
    p = GRAY_TAP + "_"
    pool: dict[str, Any] = {"kernel_shape": [5, 5], "strides": [1, 1], "pads": [2, 2, 2, 2], "count_include_pad": 0}
    nodes = [
        helper.make_node("AveragePool", [g], [p + "mean"], **pool),
        helper.make_node("Mul", [g, g], [p + "sq"]),
        helper.make_node("AveragePool", [p + "sq"], [p + "sq_mean"], **pool),
        helper.make_node("Mul", [p + "mean", p + "mean"], [p + "mean_sq"]),
        helper.make_node("Sub", [p + "sq_mean", p + "mean_sq"], [p + "var0"]),
        helper.make_node("Relu", [p + "var0"], [p + "var"]),
        helper.make_node("Sqrt", [p + "var"], [p + "std"]),
        helper.make_node("Sub", [g, p + "mean"], [p + "contrast"]),
        helper.make_node("Concat", [g, p + "contrast", p + "std"], [GRAY_TAP], axis=1),
    ]
    for i, n in enumerate(nodes):
        n.name = f"{p}{i}_{n.op_type}"
    graph.node.extend(nodes)
    graph.output.append(helper.make_tensor_value_info(GRAY_TAP, TensorProto.FLOAT, [None] * 4))


def finish(prep: Prepared, taps: list[TapInfo], min_size: int, geometry: str | None = None,
           choice: str | None = None) -> bytes:
    """Write the taps and minimum size (and a foreign model's input geometry and tap choice, JSON) into the
    runtime model's metadata; return the final bytes. A last tap named :data:`GRAY_TAP` that the graph does
    not output yet is added (:func:`add_gray_tap`)."""
    import onnx
    from onnx import helper

    model = onnx.load_model_from_string(prep.data)
    if taps and taps[-1].name == GRAY_TAP and GRAY_TAP not in [o.name for o in model.graph.output]:
        add_gray_tap(model)
    meta = dict(prep.meta)
    meta["taps"] = json.dumps([t._asdict() for t in taps])
    meta["min_size"] = str(min_size)
    if geometry is not None:
        meta["geometry"] = geometry
    if choice is not None:
        meta["tap_choice"] = choice
    del model.metadata_props[:]
    helper.set_model_props(model, {META_PREFIX + k: meta[k] for k in sorted(meta)})
    return model.SerializeToString()

