"""ONNX export of a trained net, written with :mod:`onnx.helper` from its weights (no exporter dependency).

Input ``L`` of shape (N, 1, H, W) with dynamic N, H, W holding the normalized Lab lightness
``(L/100 - mean) / std``; outputs ``probs`` (N, classes), ``pixel_probs`` (N, classes, H, W) for the pixel
mode, and one output per tap, described in the model's ``metadata_props``. The FC head needs a fixed-size
map, so the last map is bilinearly resized to the training size's map (an identity at the training size);
the taps do not depend on it.
"""

from __future__ import annotations

import json
from typing import Any, Sequence

import numpy as np

from .._fs import PathLike, write_bytes
from .._version import __version__
from ..classifier.metadata import META_PREFIX
from .spec import tap_layout, total_stride

OPSET = 17
IR_VERSION = 8  # ONNX Runtime >= 1.14 reads it; keeps the file loadable by older runtimes


def _net_weights(net: Any) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy().astype(np.float32) for k, v in net.state_dict().items()}


def export_onnx(
    net: Any,
    path: PathLike | None = None,
    *,
    mean: float,
    std: float,
    classes: Sequence[Any] | None = None,
    labels: str = "folder",
    provenance: dict[str, Any] | None = None,
) -> bytes:
    """Write the network as ONNX (see the module docstring for inputs, outputs and metadata).

    ``net`` is a module from :func:`build_net`; ``mean``/``std`` the input normalization of L/100;
    ``classes`` the class names (folder labels) or ab bin centers (color labels). Returns the model bytes and
    writes them to ``path`` (atomically) when given.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    layers = net.layers
    weights = _net_weights(net)
    nodes: list[Any] = []
    inits: list[Any] = []

    def init(name: str, arr: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
        return name

    taps = tap_layout(layers)
    tap_names: list[str] = []
    h = "L"
    ci = fi = 0
    pending: str | None = None  # name of a conv output not yet recorded as a tap

    def flush() -> None:
        nonlocal pending
        if pending is not None:
            tap_names.append(pending)
            pending = None

    for layer in layers:
        if layer.kind == "conv":
            flush()
            ci += 1
            w = init(f"conv{ci}.weight", weights[f"convs.{ci - 1}.weight"])
            b = init(f"conv{ci}.bias", weights[f"convs.{ci - 1}.bias"])
            p = layer.size // 2
            out = f"conv{ci}"
            nodes.append(helper.make_node("Conv", [h, w, b], [out], name=f"Conv{ci}", kernel_shape=[layer.size] * 2,
                                          pads=[p] * 4, strides=[1, 1], dilations=[1, 1], group=1))
            h = pending = out
        elif layer.kind == "act":
            op = {"relu": "Relu", "tanh": "Tanh", "sigmoid": "Sigmoid"}[layer.op]
            if pending is not None:
                # rename: the tap is the post-activation tensor, called conv{i}; the raw conv output conv{i}_pre
                nodes[-1].output[0] = f"{pending}_pre"
                nodes.append(helper.make_node(op, [f"{pending}_pre"], [pending], name=f"{op}{ci}"))
                flush()
            else:
                out = f"fc{fi}_{layer.op}"
                nodes.append(helper.make_node(op, [h], [out], name=f"{op}_fc{fi}"))
                h = out
        elif layer.kind == "pool":
            flush()
            op = "MaxPool" if layer.op == "max" else "AveragePool"
            out = f"pool{len([n for n in nodes if n.op_type in ('MaxPool', 'AveragePool')]) + 1}"
            nodes.append(helper.make_node(op, [h], [out], name=out, kernel_shape=[layer.size] * 2,
                                          strides=[layer.size] * 2, pads=[0] * 4))
            h = out
        else:  # fc
            flush()
            if fi == 0:
                nodes.append(helper.make_node("Shape", [h], ["head_shape"], name="head_shape", start=0, end=2))
                init("head_hw", np.array([net.head_hw, net.head_hw], np.int64))
                nodes.append(helper.make_node("Concat", ["head_shape", "head_hw"], ["head_sizes"], name="head_sizes", axis=0))
                nodes.append(helper.make_node("Resize", [h, "", "", "head_sizes"], ["head_map"], name="head_resize",
                                              mode="linear", coordinate_transformation_mode="half_pixel"))
                nodes.append(helper.make_node("Flatten", ["head_map"], ["head_flat"], name="head_flatten", axis=1))
                h = "head_flat"
            fi += 1
            w = init(f"fc{fi}.weight", weights[f"fcs.{fi - 1}.weight"])
            b = init(f"fc{fi}.bias", weights[f"fcs.{fi - 1}.bias"])
            out = f"fc{fi}"
            nodes.append(helper.make_node("Gemm", [h, w, b], [out], name=f"Gemm{fi}", transB=1))
            h = out
    nodes.append(helper.make_node("Softmax", [h], ["probs"], name="Softmax", axis=1))
    assert len(tap_names) == len(taps) and tap_names == [t["name"] for t in taps]

    n_classes = net.classes
    outputs = [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", n_classes])]
    if net.pixel is not None:
        nodes.append(helper.make_node("Shape", ["L"], ["in_hw"], name="in_hw", start=2, end=4))
        for i, (t, info) in enumerate(zip(tap_names, taps)):
            if info["stride"] == 1:
                continue
            nodes.append(helper.make_node("Shape", [t], [f"{t}_nc"], name=f"{t}_nc", start=0, end=2))
            nodes.append(helper.make_node("Concat", [f"{t}_nc", "in_hw"], [f"{t}_sizes"], name=f"{t}_sizes", axis=0))
            nodes.append(helper.make_node("Resize", [t, "", "", f"{t}_sizes"], [f"{t}_up"], name=f"{t}_up",
                                          mode="linear", coordinate_transformation_mode="half_pixel"))
        hc_in = [t if info["stride"] == 1 else f"{t}_up" for t, info in zip(tap_names, taps)]
        nodes.append(helper.make_node("Concat", hc_in, ["hypercolumn"], name="hypercolumn", axis=1))
        w = init("pixel.weight", weights["pixel.weight"])
        b = init("pixel.bias", weights["pixel.bias"])
        nodes.append(helper.make_node("Conv", ["hypercolumn", w, b], ["pixel_logits"], name="pixel_conv",
                                      kernel_shape=[1, 1]))
        nodes.append(helper.make_node("Softmax", ["pixel_logits"], ["pixel_probs"], name="pixel_softmax", axis=1))
        outputs.append(helper.make_tensor_value_info("pixel_probs", TensorProto.FLOAT, ["N", n_classes, "H", "W"]))
    for tap in taps:
        outputs.append(helper.make_tensor_value_info(tap["name"], TensorProto.FLOAT, ["N", tap["channels"], None, None]))

    graph = helper.make_graph(
        nodes, "hyperchroma_classifier",
        [helper.make_tensor_value_info("L", TensorProto.FLOAT, ["N", 1, "H", "W"])], outputs, initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="hyperchroma.train", producer_version=__version__)
    model.ir_version = IR_VERSION
    model.doc_string = (f"hyperchroma classifier {net.spec}: input L (N,1,H,W) = (Lab L/100 - mean)/std; "
                        f"outputs probs, taps {', '.join(tap_names)}")
    meta = {
        "format": "1",
        "spec": net.spec,
        "taps": json.dumps(taps),
        "input": json.dumps({"space": "L", "mean": [float(mean)], "std": [float(std)]}),
        "min_size": str(total_stride(layers)),
        "train_size": str(net.size),
        "labels": labels,
        "classes": json.dumps(list(classes) if classes is not None else list(range(n_classes))),
        "outputs": json.dumps(["probs"] + (["pixel_probs"] if net.pixel is not None else [])),
    }
    if provenance:
        meta["provenance"] = json.dumps(provenance, sort_keys=True)
    helper.set_model_props(model, {META_PREFIX + k: v for k, v in meta.items()})
    onnx.checker.check_model(model, full_check=True)
    data = model.SerializeToString()
    if path is not None:
        write_bytes(path, data, make_parents=True)
    return data

