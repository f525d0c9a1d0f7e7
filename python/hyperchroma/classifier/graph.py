"""Graph surgery: turn any ONNX CNN into the runtime model hyperchroma runs.

- **tapping**: the outputs become the taps (every ``Conv``, followed through a BatchNormalization and/or an
  activation that is its only consumer, or the tensors / nodes the user names);
- **pruning**: every node the taps do not depend on (e.g. the FC head) is dropped;
- **normalization**: the input becomes the gray image itself, (N, 1, H, W) float32 in [0, 1], with the
  model's own input normalization baked in front (Lab L for our models, replicated gray and mean/std for a
  foreign 3-channel model);
- the result's ``metadata_props`` record the taps and the normalization (:mod:`.metadata`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .metadata import IMAGENET_MEAN, IMAGENET_STD, META_PREFIX, TapInfo, read_meta

ACTIVATIONS = {"Relu", "LeakyRelu", "PRelu", "Clip", "Sigmoid", "Tanh", "Elu", "Selu", "HardSigmoid",
                "HardSwish", "Softplus", "Mish", "Gelu", "Celu", "ThresholdedRelu"}


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


def prepare(data: bytes, origin: str, taps: Sequence[str] | None, mean: Any, std: Any) -> Prepared:
    """Build the runtime model's bytes from any ONNX CNN (or return a runtime model unchanged)."""
    from onnx import TensorProto, helper

    model = _load_model(data, origin)
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
        pre_nodes: list[Any] = []
        pre_inits: list[Any] = []
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
    return Prepared(new_model.SerializeToString(), taps_known, min_size, input_info, new_meta)


def finish(prep: Prepared, taps: list[TapInfo], min_size: int) -> bytes:
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

