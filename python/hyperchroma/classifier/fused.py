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
    #: the convolutions after the fused one that run in C++ too (``core.pool_conv``, each with an optional 2x2
    #: max pool before it), in order; ``after`` then starts from the last one's output
    stages: tuple[Stage, ...] = ()

    @property
    def cut(self) -> str:
        """The tensor ``after`` starts from."""
        return self.stages[-1].name if self.stages else self.mid_name


@dataclass(frozen=True)
class Stage:
    """A (2x2 max pool +) convolution run by ``core.pool_conv``: its output's name and channels, weights
    (Cout, Cin, K, K), bias and leading pads."""

    name: str
    channels: int
    pool: bool
    weights: np.ndarray
    bias: np.ndarray
    pads: tuple[int, int]

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
        return _with_conv_stages(m, f, consumers, init, outputs, plain_conv) or f
    return None


def _with_conv_stages(m: Any, f: Fusion, consumers: dict[str, list[Any]], init: dict[str, Any], outputs: list[str],
                      plain_conv: Any) -> Fusion | None:
    """``f`` extended by the convolutions that follow its own, each optionally after a 2x2 stride-2 MaxPool whose
    map nothing else uses, while their input has no other consumer; None when not even one follows."""
    from onnx import numpy_helper

    stages: list[Stage] = []
    cur, channels = f.mid_name, f.mid_channels
    while True:
        users = consumers.get(cur, [])
        if len(users) != 1:
            break
        node, pool = users[0], False
        if node.op_type == "MaxPool" and node.domain in ("", "ai.onnx"):
            if (list(_attr(node, "kernel_shape", [])) != [2, 2] or list(_attr(node, "strides", [1, 1])) != [2, 2]
                    or any(_attr(node, "pads", [0, 0, 0, 0])) or _attr(node, "ceil_mode", 0) != 0
                    or list(_attr(node, "dilations", [1, 1])) != [1, 1] or len(node.output) != 1
                    or _attr(node, "auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET") or node.output[0] in outputs):
                break
            nxt = consumers.get(node.output[0], [])
            if len(nxt) != 1:
                break
            node, pool = nxt[0], True
        if not plain_conv(node) or node.input[0] == node.input[1]:
            break
        w = numpy_helper.to_array(init[node.input[1]])
        b = numpy_helper.to_array(init[node.input[2]]) if len(node.input) > 2 and node.input[2] else np.zeros(w.shape[0])
        if w.ndim != 4 or w.shape[1] != channels or w.shape[2] != w.shape[3] or w.shape[0] > MAX_CHANNELS:
            break
        if w.dtype.kind != "f" or b.shape != (w.shape[0],) or not (np.isfinite(w).all() and np.isfinite(b).all()):
            break
        K = int(w.shape[2])
        pads = list(_attr(node, "pads", [0, 0, 0, 0]))
        if len(pads) != 4 or pads[0] + pads[2] != K - 1 or pads[1] + pads[3] != K - 1:
            break
        stages.append(Stage(node.output[0], int(w.shape[0]), pool, np.ascontiguousarray(w, np.float32),
                            np.asarray(b, np.float32), (int(pads[0]), int(pads[1]))))
        cur, channels = node.output[0], int(w.shape[0])
    # keep the longest prefix after which every output is a stage's, the fused conv's, or computed from the cut
    names = {f.mid_name}
    from_mid = _downstream(m.graph, f.mid_name)
    consts = {i.name for i in m.graph.initializer}
    best = 0
    for k in range(1, len(stages) + 1):
        names.add(stages[k - 1].name)
        from_cut = _downstream(m.graph, stages[k - 1].name)
        if any(o in from_mid and o not in from_cut and o not in names for o in outputs):
            continue
        if any(stages[k - 1].name not in n.output and any(o in from_cut for o in n.output)
               and any(i and i not in from_cut and i not in consts for i in n.input) for n in m.graph.node):
            continue  # something after the cut needs more than its output
        best = k
    if best == 0:
        return None
    chosen = stages[:best]
    cut = chosen[-1].name
    from_cut = _downstream(m.graph, cut)
    after_outputs = [o for o in outputs if o in from_cut and o != cut]
    kinds = {s.name: "stage" for s in chosen}
    source = ["mid" if o == f.mid_name else kinds.get(o) or ("after" if o in from_cut else "before") for o in outputs]
    try:
        after = _extract(m, [cut], after_outputs) if after_outputs else None
    except Exception:  # noqa: BLE001
        return None
    return replace(f, after=after.SerializeToString() if after is not None else None, after_outputs=after_outputs,
                   source=source, stages=tuple(chosen))


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
