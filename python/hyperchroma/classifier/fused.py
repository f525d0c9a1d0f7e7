"""The first two convolutions of a one-channel CNN in one C++ pass, on the CPU (``core.pwl_conv``).

The shipped classifier starts with a 1x1 convolution of its one input channel (1 -> 15), a ReLU, then a 3x3
convolution (15 -> 25), the bulk of its compute, then a 2x2 max pool and a 5x5 convolution (25 -> 4) that ONNX
Runtime runs slowly (its kernels want 8 or more output channels). Each ReLU'd channel ``relu(w_k * l + b_k)`` is linear in the
input value ``l`` between the breakpoints ``-b_k / w_k``, so the 3x3 convolution's contribution of a neighbour
is ``A[tap, s] * l + B[tap, s]`` with ``s`` the segment of ``l``: 2 flops per output channel and kernel tap
instead of 2 * 15. :func:`plan` finds that pattern in a runtime graph and splits the graph around the second
convolution: ONNX Runtime runs the part before it (the input normalization, the 1x1 map and its tap) and the
part after it; ``core.pwl_conv`` computes the second convolution in between, and ``core.pool_conv`` the pool
and the convolution after it when the graph goes on that way (the pooled map used by nothing else). The taps
equal the whole graph's up to float rounding (the sums are regrouped, as between ONNX Runtime's own kernels);
the tests compare them.

Only for the CPU provider (a GPU runs the whole graph) and only for an exact match of the pattern:
Conv (1x1, one input channel, no padding, stride 1) -> Relu -> Conv (KxK, group 1, stride 1, dilation 1, the
output the size of its input), weights and biases constant, the ReLU's output used by nothing but the second
convolution and the graph outputs.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

#: Breakpoints + 1 the C++ kernel takes at most, and output channels (padded to 8).
MAX_SEGMENTS = 256
MAX_CHANNELS = 64


@dataclass(frozen=True)
class Fusion:
    """A split runtime graph: ``before`` (input -> the 1x1 conv's input ``l_name`` and the taps it computes),
    the fused convolution's tables (``breaks``, ``A``, ``B``, ``bias``, ``pads``), and ``after`` (the second
    convolution's output ``mid_name`` -> the remaining taps). ``source[i]`` tells where output ``i`` of the
    whole graph comes from: ``"before"``, ``"mid"`` or ``"after"``."""

    before: bytes
    after: bytes | None
    l_name: str
    mid_name: str
    mid_channels: int
    before_outputs: list[str]
    after_outputs: list[str]
    source: list[str]
    breaks: np.ndarray
    A: np.ndarray
    B: np.ndarray
    bias: np.ndarray
    pads: tuple[int, int]
    #: the 2x2 max pool + conv after the fused one (``core.pool_conv``), when the graph goes on that way: its
    #: output's name and channels, weights, bias and leading pads; ``after`` then starts from its output
    pool_name: str | None = None
    pool_channels: int = 0
    pool_weights: np.ndarray | None = None
    pool_bias: np.ndarray | None = None
    pool_pads: tuple[int, int] = (0, 0)


def _attr(node: Any, name: str, default: Any) -> Any:
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def tables(w1: np.ndarray, b1: np.ndarray, w2: np.ndarray, b2: np.ndarray) -> tuple[np.ndarray, ...]:
    """The piecewise-linear tables of conv_KxK(relu(w1 * l + b1)) + b2 (w1, b1: (C1,); w2: (Cout, C1, K, K)):
    breaks (S-1,) ascending float32, A and B (K, K, S, Cpad) float32 (Cpad: Cout rounded up to 8), bias (Cout,).
    Segment s holds the values l with exactly s breaks below (a break itself is in the segment below it, where
    its channel contributes w * l + b = 0 either way)."""
    w1 = np.asarray(w1, np.float64).reshape(-1)
    b1 = np.asarray(b1, np.float64).reshape(-1)
    w2 = np.asarray(w2, np.float64)
    cout, _, K, _ = w2.shape
    nz = w1 != 0
    with np.errstate(over="ignore", invalid="ignore"):  # a breakpoint beyond float32: +-inf, still in order
        breaks = np.unique((-b1[nz] / w1[nz]).astype(np.float32))
    S = len(breaks) + 1
    b64 = breaks.astype(np.float64)
    # a value inside each segment: tells which channels are active there
    if S == 1:
        probes = np.zeros(1)
    else:
        inner = (b64[:-1] + b64[1:]) / 2
        probes = np.concatenate([[b64[0] - 1 - abs(b64[0])], inner, [b64[-1] + 1 + abs(b64[-1])]])
    active = (np.outer(probes, w1) + b1) > 0  # (S, C1)
    cpad = -(-cout // 8) * 8
    A = np.zeros((K, K, S, cpad))
    B = np.zeros((K, K, S, cpad))
    wt = np.transpose(w2, (2, 3, 1, 0))  # (K, K, C1, Cout)
    for s in range(S):
        m = active[s].astype(np.float64)
        A[:, :, s, :cout] = np.einsum("yxkc,k->yxc", wt, m * w1)
        B[:, :, s, :cout] = np.einsum("yxkc,k->yxc", wt, m * b1)
    return (breaks.astype(np.float32), A.astype(np.float32), B.astype(np.float32),
            np.asarray(b2, np.float32).reshape(cout))


def plan(data: bytes) -> Fusion | None:
    """The split of the runtime graph ``data`` around its first 1x1 conv + ReLU + KxK conv, or None when the
    graph does not start that way (see the module docstring)."""
    import onnx
    from onnx import numpy_helper

    try:
        m = onnx.load_from_string(data)
    except Exception:  # noqa: BLE001 - not our pattern then
        return None
    g = m.graph
    init = {i.name: i for i in g.initializer}
    consumers: dict[str, list[Any]] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    outputs = [o.name for o in g.output]

    def plain_conv(n: Any) -> bool:
        return (n.op_type == "Conv" and n.domain in ("", "ai.onnx") and _attr(n, "group", 1) == 1
                and list(_attr(n, "strides", [1, 1])) == [1, 1] and list(_attr(n, "dilations", [1, 1])) == [1, 1]
                and _attr(n, "auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET") and len(n.input) >= 2
                and n.input[1] in init and (len(n.input) < 3 or n.input[2] == "" or n.input[2] in init))

    for c1 in g.node:
        if not plain_conv(c1):
            continue
        w1 = numpy_helper.to_array(init[c1.input[1]])
        if w1.ndim != 4 or w1.shape[1:] != (1, 1, 1) or any(_attr(c1, "pads", [0, 0, 0, 0])):
            continue
        relus = consumers.get(c1.output[0], [])
        if len(relus) != 1 or relus[0].op_type != "Relu" or c1.output[0] in outputs:
            continue
        t1 = relus[0].output[0]
        users = consumers.get(t1, [])
        if len(users) != 1 or not plain_conv(users[0]) or users[0].input[0] != t1:
            continue
        c2 = users[0]
        w2 = numpy_helper.to_array(init[c2.input[1]])
        if w2.ndim != 4 or w2.shape[1] != w1.shape[0] or w2.shape[2] != w2.shape[3]:
            continue
        K = int(w2.shape[2])
        pads = list(_attr(c2, "pads", [0, 0, 0, 0]))
        if len(pads) != 4 or pads[0] + pads[2] != K - 1 or pads[1] + pads[3] != K - 1:
            continue
        if w2.shape[0] > MAX_CHANNELS or w1.shape[0] + 1 > MAX_SEGMENTS:
            continue
        b1 = numpy_helper.to_array(init[c1.input[2]]) if len(c1.input) > 2 and c1.input[2] else np.zeros(w1.shape[0])
        b2 = numpy_helper.to_array(init[c2.input[2]]) if len(c2.input) > 2 and c2.input[2] else np.zeros(w2.shape[0])
        params = (w1, b1, w2, b2)
        if any(p.dtype.kind != "f" for p in params) or not all(np.isfinite(p).all() for p in params):
            return None  # only float weights, all finite (a damaged model runs whole and fails there if it must)
        if b1.shape != (w1.shape[0],) or b2.shape != (w2.shape[0],):
            return None
        breaks, A, B, bias = tables(w1.reshape(-1), b1, w2, b2)
        if not (np.isfinite(breaks).all() and np.isfinite(A).all() and np.isfinite(B).all()):
            return None  # breakpoints or sums beyond float32
        f = _split(m, c1.input[0], c2.output[0], int(w2.shape[0]), outputs, breaks, A, B, bias,
                   (int(pads[0]), int(pads[1])))
        if f is None:
            return None
        return _with_pool_conv(m, f, consumers, init, outputs, plain_conv) or f
    return None


def _with_pool_conv(m: Any, f: Fusion, consumers: dict[str, list[Any]], init: dict[str, Any], outputs: list[str],
                    plain_conv: Any) -> Fusion | None:
    """``f`` extended by the 2x2 stride-2 MaxPool + conv that follow its convolution (the pooled map used by
    nothing else), or None when the graph does not go on that way."""
    from onnx import numpy_helper

    pools = consumers.get(f.mid_name, [])
    if len(pools) != 1 or pools[0].op_type != "MaxPool" or pools[0].domain not in ("", "ai.onnx"):
        return None
    pool = pools[0]
    if (list(_attr(pool, "kernel_shape", [])) != [2, 2] or list(_attr(pool, "strides", [1, 1])) != [2, 2]
            or any(_attr(pool, "pads", [0, 0, 0, 0])) or _attr(pool, "ceil_mode", 0) != 0
            or list(_attr(pool, "dilations", [1, 1])) != [1, 1] or len(pool.output) != 1
            or _attr(pool, "auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET")):
        return None
    t = pool.output[0]
    users = consumers.get(t, [])
    if t in outputs or len(users) != 1 or not plain_conv(users[0]) or users[0].input[0] != t:
        return None
    c3 = users[0]
    w3 = numpy_helper.to_array(init[c3.input[1]])
    b3 = numpy_helper.to_array(init[c3.input[2]]) if len(c3.input) > 2 and c3.input[2] else np.zeros(w3.shape[0])
    if w3.ndim != 4 or w3.shape[1] != f.mid_channels or w3.shape[2] != w3.shape[3] or w3.shape[0] > MAX_CHANNELS:
        return None
    if w3.dtype.kind != "f" or b3.shape != (w3.shape[0],) or not (np.isfinite(w3).all() and np.isfinite(b3).all()):
        return None
    K = int(w3.shape[2])
    pads = list(_attr(c3, "pads", [0, 0, 0, 0]))
    if len(pads) != 4 or pads[0] + pads[2] != K - 1 or pads[1] + pads[3] != K - 1:
        return None
    mid2 = c3.output[0]
    from_mid = _downstream(m.graph, f.mid_name)
    from_mid2 = _downstream(m.graph, mid2)
    if any(o in from_mid and o not in from_mid2 and o != f.mid_name for o in outputs):
        return None
    consts = {i.name for i in m.graph.initializer}
    for n in m.graph.node:  # nothing after that conv needs more than its output
        after_node = mid2 not in n.output and any(o in from_mid2 for o in n.output)
        if after_node and any(i and i not in from_mid2 and i not in consts for i in n.input):
            return None
    after_outputs = [o for o in outputs if o in from_mid2 and o != mid2]
    source = ["mid" if o == f.mid_name else "pool" if o == mid2 else "after" if o in from_mid2 else "before"
              for o in outputs]
    try:
        after = _extract(m, [mid2], after_outputs) if after_outputs else None
    except Exception:  # noqa: BLE001
        return None
    return replace(f, after=after.SerializeToString() if after is not None else None, after_outputs=after_outputs,
                   source=source, pool_name=mid2, pool_channels=int(w3.shape[0]),
                   pool_weights=np.ascontiguousarray(w3, np.float32), pool_bias=np.asarray(b3, np.float32),
                   pool_pads=(int(pads[0]), int(pads[1])))


def _downstream(g: Any, start: str) -> set[str]:
    """Every tensor computed from ``start`` (``start`` included)."""
    reached = {start}
    for n in g.node:  # ONNX graphs are topologically sorted
        if any(i in reached for i in n.input):
            reached.update(n.output)
    return reached


def _split(m: Any, l_name: str, mid: str, mid_channels: int, outputs: list[str], breaks: np.ndarray, A: np.ndarray,
           B: np.ndarray, bias: np.ndarray, pads: tuple[int, int]) -> Fusion | None:
    from_mid = _downstream(m.graph, mid)
    consts = {i.name for i in m.graph.initializer}
    for n in m.graph.node:  # the part after the fused conv must need nothing but its output (no skip connections)
        after_node = mid not in n.output and any(o in from_mid for o in n.output)
        if after_node and any(i and i not in from_mid and i not in consts for i in n.input):
            return None
    before_outputs = [o for o in outputs if o not in from_mid]
    after_outputs = [o for o in outputs if o in from_mid and o != mid]
    source = ["mid" if o == mid else "after" if o in from_mid else "before" for o in outputs]
    inputs = [i.name for i in m.graph.input if i.name not in consts]
    try:
        before = _extract(m, inputs, [l_name] + before_outputs)
        after = _extract(m, [mid], after_outputs) if after_outputs else None
    except Exception:  # noqa: BLE001 - a graph we cannot split cleanly runs whole
        return None
    return Fusion(before.SerializeToString(), after.SerializeToString() if after is not None else None, l_name, mid,
                  mid_channels, before_outputs, after_outputs, source, breaks, A, B, bias, pads)


def _extract(m: Any, inputs: list[str], outputs: list[str]) -> Any:
    """The sub-model of ``m`` computing ``outputs`` from ``inputs`` (float tensors of rank 4, or the graph's own
    input declarations) and the initializers; the nodes keep their order."""
    from onnx import TensorProto, checker, helper

    g = m.graph
    declared = {v.name: v for v in list(g.input) + list(g.output) + list(g.value_info)}
    need = set(outputs)
    keep = []
    for n in reversed(g.node):
        if any(o in need for o in n.output):
            keep.append(n)
            need.update(i for i in n.input if i and i not in inputs)
    keep.reverse()
    used = {i for n in keep for i in n.input}
    inits = [t for t in g.initializer if t.name in used]

    def info(name: str) -> Any:
        v = declared.get(name)
        if v is not None and v.type.HasField("tensor_type") and v.type.tensor_type.HasField("shape"):
            return v
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", None, None, None])

    sub = helper.make_graph(keep, g.name + "_part", [info(i) for i in inputs], [info(o) for o in outputs], inits)
    part = helper.make_model(sub, opset_imports=list(m.opset_import), ir_version=m.ir_version)
    checker.check_model(part)
    return part
