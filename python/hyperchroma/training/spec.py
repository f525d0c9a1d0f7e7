"""The classifier's architecture as a spec string: the paper's formula (1)::

    IN -> [[CONV -> ACT]*N -> POOL]*M -> [FC -> ACT]*L

written as comma-separated tokens:

===============  ==========================================================================================
``cK:N``         convolution, K x K kernel (K odd), N filters, stride 1, zero "same" padding
``relu``         activation after the previous conv or hidden FC (also ``tanh``, ``sigmoid``)
``pool``         2x2 max pooling, stride 2 (``pool:K`` for K x K, ``avgpool[:K]`` for average pooling)
``fc:N``         hidden fully connected layer of N units followed by ReLU
``fc``           the last fully connected layer: one output per class, softmax
===============  ==========================================================================================

The default spec is the paper's chosen net ``c1:15,relu,c3:25,pool,c5:4,c5:4,pool,c7:4,c15:4,pool,fc``: its
taps (the post-activation output of every conv layer) have 15+25+4+4+4+4 = 56 channels at strides
1, 1, 2, 2, 4, 4.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, Sequence

DEFAULT_SPEC = "c1:15,relu,c3:25,pool,c5:4,c5:4,pool,c7:4,c15:4,pool,fc"
ACTIVATIONS = ("relu", "tanh", "sigmoid")


@dataclasses.dataclass(frozen=True)
class Layer:
    """One token of a spec: ``kind`` is ``"conv"``, ``"act"``, ``"pool"`` or ``"fc"``.

    ``size`` is the conv kernel or pool window, ``channels`` the conv filters or hidden FC units (0 for the
    last FC, whose size is the number of classes), ``op`` the activation (``relu``...) or pool type
    (``max``/``avg``).
    """

    kind: str
    size: int = 0
    channels: int = 0
    op: str = ""

    def token(self) -> str:
        if self.kind == "conv":
            return f"c{self.size}:{self.channels}"
        if self.kind == "act":
            return self.op
        if self.kind == "pool":
            name = "pool" if self.op == "max" else "avgpool"
            return name if self.size == 2 else f"{name}:{self.size}"
        return f"fc:{self.channels}" if self.channels else "fc"


_TOKEN = re.compile(r"^(?:c(\d+):(\d+)|(relu|tanh|sigmoid)|(pool|avgpool)(?::(\d+))?|fc(?::(\d+))?)$")


def parse_spec(spec: str) -> tuple[Layer, ...]:
    """Parse a formula-(1) spec such as :data:`DEFAULT_SPEC`; raise ``ValueError`` naming the bad token."""
    if not isinstance(spec, str):
        raise TypeError(f"spec: expected a string like {DEFAULT_SPEC!r}, got {type(spec).__name__}")
    tokens = [t.strip().lower() for t in spec.split(",")]
    layers: list[Layer] = []
    for i, tok in enumerate(tokens):
        m = _TOKEN.match(tok)
        if not m:
            raise ValueError(
                f"spec token {i + 1} {tok!r} not understood: use cK:N (conv), relu/tanh/sigmoid, pool[:K], "
                f"avgpool[:K], fc:N (hidden) or fc (last), e.g. {DEFAULT_SPEC!r}"
            )
        if m.group(1):
            k, n = int(m.group(1)), int(m.group(2))
            if k < 1 or k % 2 == 0:
                raise ValueError(f"spec token {tok!r}: the kernel must be odd (same padding), got {k}")
            if n < 1:
                raise ValueError(f"spec token {tok!r}: a conv needs at least 1 filter")
            layers.append(Layer("conv", k, n))
        elif m.group(3):
            layers.append(Layer("act", op=m.group(3)))
        elif m.group(4):
            k = int(m.group(5) or 2)
            if k < 2:
                raise ValueError(f"spec token {tok!r}: the pool window must be at least 2")
            layers.append(Layer("pool", k, op="max" if m.group(4) == "pool" else "avg"))
        else:
            n = int(m.group(6)) if m.group(6) else 0
            if m.group(6) is not None and n < 1:
                raise ValueError(f"spec token {tok!r}: a hidden FC layer needs at least 1 unit")
            layers.append(Layer("fc", channels=n))
    # formula (1): IN -> [[CONV -> ACT]*N -> POOL]*M -> [FC -> ACT]*L, the last ACT being the softmax
    if not layers or layers[0].kind != "conv":
        raise ValueError(f"spec {spec!r}: must start with a conv layer (cK:N)")
    if layers[-1].kind != "fc" or layers[-1].channels:
        raise ValueError(f"spec {spec!r}: must end with the classifying layer 'fc' (softmax over the classes)")
    first_fc = next(i for i, layer in enumerate(layers) if layer.kind == "fc")
    for i, layer in enumerate(layers):
        prev = layers[i - 1] if i else None
        if i > first_fc and layer.kind in ("conv", "pool"):
            raise ValueError(f"spec {spec!r}: {layer.token()!r} after an fc layer (formula (1) ends with FC layers)")
        if layer.kind == "fc" and not layer.channels and i != len(layers) - 1:
            raise ValueError(f"spec {spec!r}: only the last layer may be a plain 'fc'; hidden ones are fc:N")
        if layer.kind == "act" and (prev is None or prev.kind not in ("conv", "fc")):
            raise ValueError(f"spec {spec!r}: an activation must follow a conv or a hidden fc:N, not "
                             f"{prev.token() if prev else 'nothing'!r}")
    # a hidden FC without an explicit activation gets the formula's ReLU
    out: list[Layer] = []
    for i, layer in enumerate(layers):
        out.append(layer)
        if layer.kind == "fc" and layer.channels and layers[i + 1].kind != "act":
            out.append(Layer("act", op="relu"))
    layers = out
    return tuple(layers)


def spec_str(layers: Sequence[Layer]) -> str:
    return ",".join(layer.token() for layer in layers)


def tap_layout(spec: str | Sequence[Layer]) -> list[dict[str, Any]]:
    """The taps of a spec in order: ``[{"name", "channels", "stride"}]`` (post-activation conv outputs)."""
    layers = parse_spec(spec) if isinstance(spec, str) else tuple(spec)
    taps, stride, n = [], 1, 0
    for layer in layers:
        if layer.kind == "conv":
            n += 1
            taps.append({"name": f"conv{n}", "channels": layer.channels, "stride": stride})
        elif layer.kind == "pool":
            stride *= layer.size
    return taps


def total_stride(layers: Sequence[Layer]) -> int:
    return math.prod(layer.size for layer in layers if layer.kind == "pool")

