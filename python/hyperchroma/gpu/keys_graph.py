"""Packed keys inside the ONNX graph: the classifier's taps upsampled, quantized and packed by ONNX nodes, so that
a device run returns only the keys (``words`` x 64 bits per pixel: 2 for the shipped classifier at 3 levels)
instead of the 56 float channels of the hypercolumn (about 28x less to copy off a GPU).

The nodes repeat the C++ kernel's arithmetic exactly (``core.hypercolumn_keys``, cpp/hypercolumns.hpp), so the
keys are identical, not merely close:

- bilinear upsampling as two separable blends with the kernel's own taps (source rows/columns by ``Gather``,
  weights computed in float64 and rounded to float32 as ``axis_taps`` does), vertical then horizontal, each
  ``a * w0 + b * w1`` in float32 (``Mul``, ``Mul``, ``Add``: no fused multiply-add on either side);
- a level is the number of thresholds at or below the value (``GreaterOrEqual``, summed; NaN counts none);
- channel ``c``'s level shifted to bit ``(c % fields_per_word) * bits`` of word ``c // fields_per_word``
  (``BitShift`` on uint64), the fields of a word summed (disjoint bits: the sum is the OR) in int64, whose bit
  pattern is the uint64 key (added one field at a time: ONNX Runtime's int64 ReduceSum loses low bits).

A graph is built for one model-size shape (the gather indices depend on it); :class:`BatchKeys` keeps one per
shape and runs batches padded to fixed sizes.
"""

from __future__ import annotations

from typing import Any, List, Sequence, Tuple

import numpy as np

KEYS_OUTPUT = "keys"


def axis_taps(src: int, dst: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, bool]:
    """(i0, i1, w0, w1, identity) of cpp/hypercolumns.hpp ``axis_taps``: half-pixel centres, edges clamped,
    weights computed in float64 then rounded to float32."""
    scale = float(src) / float(dst)
    i0 = np.empty(dst, np.int64)
    i1 = np.empty(dst, np.int64)
    w0 = np.empty(dst, np.float32)
    w1 = np.empty(dst, np.float32)
    for i in range(dst):
        s = (i + 0.5) * scale - 0.5
        if s < 0:
            s = 0.0
        a = int(s)
        f = s - a
        if a >= src - 1:
            a, f = src - 1, 0.0
        i0[i], i1[i] = a, min(a + 1, src - 1)
        w1[i], w0[i] = np.float32(f), np.float32(1.0 - f)
    return i0, i1, w0, w1, src == dst


def key_layout(channels: int, levels: int) -> Tuple[int, int, int]:
    """(bits, fields_per_word, words) of cpp/keys.hpp ``KeyLayout``."""
    bits = 1
    while (1 << bits) < levels:
        bits += 1
    fpw = 64 // bits
    return bits, fpw, -(-channels // fpw)


def add_keys(model: Any, tap_names: Sequence[str], tap_shapes: Sequence[Tuple[int, int, int]],
             shape: Tuple[int, int], thresholds: np.ndarray) -> Any:
    """A copy of the ONNX ``model`` (the classifier's runtime graph, its outputs the taps ``tap_names`` of
    per-image shapes ``tap_shapes`` (C, h, w) at the model-size input ``shape`` (H, W)) whose only output is
    ``keys``: (N, H*W, words) int64, the bit patterns of ``core.hypercolumn_keys``' uint64 keys for
    ``thresholds`` (C, levels - 1) float32."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    thr = np.ascontiguousarray(thresholds, dtype=np.float32)
    H, W = (int(v) for v in shape)
    channels = sum(int(s[0]) for s in tap_shapes)
    if thr.ndim != 2 or thr.shape[0] != channels:
        raise ValueError(f"thresholds: expected ({channels}, levels - 1) for the taps' {channels} channels, "
                         f"got shape {thr.shape}")
    if len(tap_names) != len(tap_shapes):
        raise ValueError(f"{len(tap_names)} tap names for {len(tap_shapes)} tap shapes")
    levels = thr.shape[1] + 1
    bits, fpw, words = key_layout(channels, levels)
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    inits: List[Any] = []
    nodes: List[Any] = []

    def const(name: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def blend(x: str, taps: Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, bool], axis: int,
              tag: str) -> str:
        i0, i1, w0, w1, identity = taps
        if identity:
            return x
        wshape = [1, 1, -1, 1] if axis == 2 else [1, 1, 1, -1]
        r0, r1 = f"{tag}_r0", f"{tag}_r1"
        nodes.append(helper.make_node("Gather", [x, const(f"{tag}_i0", i0)], [r0], axis=axis))
        nodes.append(helper.make_node("Gather", [x, const(f"{tag}_i1", i1)], [r1], axis=axis))
        nodes.append(helper.make_node("Mul", [r0, const(f"{tag}_w0", w0.reshape(wshape))], [f"{tag}_m0"]))
        nodes.append(helper.make_node("Mul", [r1, const(f"{tag}_w1", w1.reshape(wshape))], [f"{tag}_m1"]))
        nodes.append(helper.make_node("Add", [f"{tag}_m0", f"{tag}_m1"], [f"{tag}_out"]))
        return f"{tag}_out"

    ups = []
    for i, (name, (c, h, w)) in enumerate(zip(tap_names, tap_shapes)):
        v = blend(name, axis_taps(int(h), H), 2, f"hk_t{i}_y")
        ups.append(blend(v, axis_taps(int(w), W), 3, f"hk_t{i}_x"))
    nodes.append(helper.make_node("Concat", ups, ["hk_hyper"], axis=1))  # (N, C, H, W)
    level = ""
    for j in range(levels - 1):
        ge, gi = f"hk_ge{j}", f"hk_gi{j}"
        t = const(f"hk_thr{j}", thr[:, j].reshape(1, -1, 1, 1))
        nodes.append(helper.make_node("GreaterOrEqual", ["hk_hyper", t], [ge]))
        nodes.append(helper.make_node("Cast", [ge], [gi], to=TensorProto.UINT64))
        if not level:
            level = gi
        else:
            nodes.append(helper.make_node("Add", [level, gi], [f"hk_lv{j}"]))
            level = f"hk_lv{j}"
    shifts = np.array([(c % fpw) * bits for c in range(channels)], np.uint64).reshape(1, -1, 1, 1)
    nodes.append(helper.make_node("BitShift", [level, const("hk_shift", shifts)], ["hk_fields_u"], direction="LEFT"))
    nodes.append(helper.make_node("Cast", ["hk_fields_u"], ["hk_fields"], to=TensorProto.INT64))
    # the fields of a word added one by one in int64 (ReduceSum of int64 goes through double in ONNX Runtime's
    # CPU kernel and loses the low bits of a 64-bit word; Sum has no integer types; BitwiseOr needs opset 18)
    fields = [f"hk_f{c}" for c in range(channels)]
    nodes.append(helper.make_node("Split", ["hk_fields"], fields, axis=1) if channels > 1
                 else helper.make_node("Identity", ["hk_fields"], fields))
    word_names = []
    for wd in range(words):
        c0, c1 = wd * fpw, min(channels, (wd + 1) * fpw)
        acc = fields[c0]
        for c in range(c0 + 1, c1):
            nodes.append(helper.make_node("Add", [acc, fields[c]], [f"hk_w{wd}_{c}"]))
            acc = f"hk_w{wd}_{c}"
        word_names.append(acc)
    nodes.append(helper.make_node("Concat", word_names, ["hk_words"], axis=1))  # (N, words, H, W)
    nodes.append(helper.make_node("Transpose", ["hk_words"], ["hk_words_t"], perm=[0, 2, 3, 1]))
    nodes.append(helper.make_node("Reshape", ["hk_words_t", const("hk_shape", np.array([0, H * W, words], np.int64))],
                                  [KEYS_OUTPUT]))
    g.node.extend(nodes)
    g.initializer.extend(inits)
    del g.output[:]
    g.output.extend([helper.make_tensor_value_info(KEYS_OUTPUT, TensorProto.INT64, ["N", H * W, words])])
    return m
