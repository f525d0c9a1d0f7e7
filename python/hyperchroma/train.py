"""Training tool for the classifier CNN (PyTorch, optional extra ``[train]``) and its ONNX export.

The network follows the paper's formula (1)::

    IN -> [[CONV -> ACT]*N -> POOL]*M -> [FC -> ACT]*L

written as a comma-separated *spec*. Tokens:

===============  ==========================================================================================
``cK:N``         convolution, K x K kernel (K odd), N filters, stride 1, zero "same" padding
``relu``         activation after the previous conv or hidden FC (also ``tanh``, ``sigmoid``)
``pool``         2x2 max pooling, stride 2 (``pool:K`` for K x K, ``avgpool[:K]`` for average pooling)
``fc:N``         hidden fully connected layer of N units followed by ReLU
``fc``           the last fully connected layer: one output per class, softmax
===============  ==========================================================================================

The default spec is the paper's chosen net::

    c1:15,relu,c3:25,pool,c5:4,c5:4,pool,c7:4,c15:4,pool,fc

Its taps (the post-activation output of every conv layer) have 15+25+4+4+4+4 = 56 channels at strides
1, 1, 2, 2, 4, 4.

Labels come from a folder per class (``labels="folder"``, the paper's image classification) or, for images
without labels, from the images' own colors: ``"dominant"`` (each image's dominant Lab ab bin, predicted by
the FC head) or ``"pixel"`` (each pixel's ab bin, predicted from the hypercolumn by a 1x1 conv, so that the
taps themselves learn to predict color; the FC head is trained on the dominant bin at the same time).

Training stops when any of the paper's three conditions holds: the epoch's training loss reached
``target_loss``, it stopped decreasing for ``patience`` epochs, or ``epochs`` epochs ran.

The export is a plain ONNX graph written with :mod:`onnx.helper` from the trained weights (no exporter
dependency): input ``L`` of shape (N, 1, H, W) with dynamic N, H, W holding the normalized Lab lightness
``(L/100 - mean) / std``; outputs ``probs`` (N, classes), ``pixel_probs`` (N, classes, H, W) for the pixel
mode, and one output per tap, described in the model's ``metadata_props`` (see :data:`META_PREFIX`).
The FC head needs a fixed-size map, so the last map is bilinearly resized to the training size's map
(an identity at the training size); the taps do not depend on it.

PyTorch is imported only inside the functions that need it: importing this module is cheap.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import re
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence, Union

import numpy as np

__all__ = [
    "DEFAULT_SPEC",
    "Layer",
    "TrainResult",
    "parse_spec",
    "tap_layout",
    "build_net",
    "export_onnx",
    "train_classifier",
    "random_classifier",
    "skimage_photos",
]

DEFAULT_SPEC = "c1:15,relu,c3:25,pool,c5:4,c5:4,pool,c7:4,c15:4,pool,fc"
META_PREFIX = "hyperchroma."
OPSET = 17
IR_VERSION = 8  # ONNX Runtime >= 1.14 reads it; keeps the file loadable by older runtimes
ACTIVATIONS = ("relu", "tanh", "sigmoid")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")

PathLike = Union[str, "os.PathLike[str]"]


# ------------------------------------------------------------------------------------------- the spec
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


def _spec_str(layers: Sequence[Layer]) -> str:
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


def _total_stride(layers: Sequence[Layer]) -> int:
    return math.prod(layer.size for layer in layers if layer.kind == "pool")


# ---------------------------------------------------------------------------------- color helpers (numpy)
def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB uint8 or float [0,1] (..., 3) -> CIE Lab (D65) float32 (..., 3); L in [0,100]."""
    x = np.asarray(rgb)
    x = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)
    lin = np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)
    m = np.array([[0.4124564, 0.3575761, 0.1804375],
                  [0.2126729, 0.7151522, 0.0721750],
                  [0.0193339, 0.1191920, 0.9503041]], dtype=np.float32)
    xyz = lin @ m.T / np.array([0.95047, 1.0, 1.08883], dtype=np.float32)
    eps = 216.0 / 24389.0
    f = np.where(xyz > eps, np.cbrt(xyz), (24389.0 / 27.0 * xyz + 16.0) / 116.0)
    lab = np.stack([116.0 * f[..., 1] - 16.0, 500.0 * (f[..., 0] - f[..., 1]), 200.0 * (f[..., 1] - f[..., 2])], -1)
    return lab.astype(np.float32)


class AbBins:
    """A uniform grid of Lab ab bins of side ``step``; the classes are the bins kept (seen in training)."""

    LIMIT = 110.0

    def __init__(self, step: float = 20.0, centers: np.ndarray | None = None):
        if step <= 0:
            raise ValueError(f"ab step must be positive, got {step}")
        self.step = float(step)
        self.n = int(math.ceil(2 * self.LIMIT / self.step))
        self.centers = np.zeros((0, 2), np.float32) if centers is None else np.asarray(centers, np.float32)
        self._lut = np.zeros(0, np.int64)
        if centers is not None:
            self._build_lut()

    def grid_index(self, ab: np.ndarray) -> np.ndarray:
        q = np.clip(((ab + self.LIMIT) / self.step).astype(np.int64), 0, self.n - 1)
        return q[..., 0] * self.n + q[..., 1]

    def fit(self, abs_: Iterable[np.ndarray]) -> "AbBins":
        seen = np.zeros(self.n * self.n, bool)
        for ab in abs_:
            seen[np.unique(self.grid_index(ab))] = True
        idx = np.flatnonzero(seen)
        qa, qb = idx // self.n, idx % self.n
        self.centers = np.stack([(qa + 0.5) * self.step - self.LIMIT, (qb + 0.5) * self.step - self.LIMIT], 1)
        self.centers = self.centers.astype(np.float32)
        self._build_lut()
        return self

    def _build_lut(self) -> None:
        """Grid cell -> class: the kept bin itself, else the nearest kept bin center."""
        g = np.arange(self.n * self.n)
        cells = np.stack([(g // self.n + 0.5) * self.step - self.LIMIT, (g % self.n + 0.5) * self.step - self.LIMIT], 1)
        d = ((cells[:, None, :] - self.centers[None, :, :]) ** 2).sum(-1)
        self._lut = d.argmin(1)

    def classes(self, ab: np.ndarray) -> np.ndarray:
        return self._lut[self.grid_index(ab)]

    def dominant(self, ab: np.ndarray, min_chroma: float = 10.0, min_share: float = 0.05) -> int:
        """The image's dominant color class: the most frequent bin among its chromatic pixels (chroma >
        ``min_chroma``), or the bin of ab = (0, 0) when fewer than ``min_share`` of the pixels are chromatic."""
        flat = ab.reshape(-1, 2)
        chroma = np.hypot(flat[:, 0], flat[:, 1])
        chromatic = flat[chroma > min_chroma]
        if len(chromatic) < min_share * len(flat):
            return int(self.classes(np.zeros((1, 2), np.float32))[0])
        return int(np.bincount(self.classes(chromatic), minlength=len(self.centers)).argmax())


# ------------------------------------------------------------------------------------------ the network
def build_net(spec: str = DEFAULT_SPEC, classes: int = 2, *, size: int = 224, pixel_head: bool = False) -> Any:
    """Build the PyTorch module of a spec (imports torch).

    ``forward(x)`` takes (N, 1, H, W) normalized L and returns ``(logits, taps, pixel_logits)``: class logits
    (N, classes) (softmax is applied by the loss and in the export), the list of tap maps, and per-pixel class
    logits (N, classes, H, W) from a 1x1 conv over the hypercolumn when ``pixel_head`` (else ``None``).
    ``size`` is the training image size: the FC head sees the last map resized to ``size / total stride``.
    """
    import torch
    from torch import nn
    from torch.nn import functional as F

    layers = parse_spec(spec)
    if classes < 2:
        raise ValueError(f"a classifier needs at least 2 classes, got {classes}")
    stride = _total_stride(layers)
    if size < stride:
        raise ValueError(f"size {size} is smaller than the net's total stride {stride}")
    head_hw = size // stride

    class PaperNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.spec = _spec_str(layers)
            self.layers = layers
            self.classes = classes
            self.size = size
            self.head_hw = head_hw
            self.taps_info = tap_layout(layers)
            self.detach_head = False  # True: the FC head trains on the conv features without changing them
            self.convs = nn.ModuleList()
            self.fcs = nn.ModuleList()
            c = 1
            flat = None
            for layer in layers:
                if layer.kind == "conv":
                    self.convs.append(nn.Conv2d(c, layer.channels, layer.size, padding=layer.size // 2))
                    c = layer.channels
                elif layer.kind == "fc":
                    if flat is None:
                        flat = c * head_hw * head_hw
                    out = layer.channels or classes
                    self.fcs.append(nn.Linear(flat, out))
                    flat = out
            tap_channels = sum(t["channels"] for t in self.taps_info)
            self.pixel = nn.Conv2d(tap_channels, classes, 1) if pixel_head else None

        def forward(self, x: "torch.Tensor"):
            taps: list[torch.Tensor] = []
            ci = fi = 0
            pending = False  # a conv output not yet recorded as a tap (an activation may follow)
            h = x
            for layer in self.layers:
                if layer.kind == "conv":
                    if pending:
                        taps.append(h)
                    h = self.convs[ci](h)
                    ci += 1
                    pending = True
                    continue
                if layer.kind == "act":
                    h = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid}[layer.op](h)
                    if pending:
                        taps.append(h)
                        pending = False
                    continue
                if pending:
                    taps.append(h)
                    pending = False
                if layer.kind == "pool":
                    pool = F.max_pool2d if layer.op == "max" else F.avg_pool2d
                    h = pool(h, layer.size, layer.size)
                else:  # fc
                    if fi == 0:
                        if self.detach_head:
                            h = h.detach()
                        h = F.interpolate(h, size=(self.head_hw, self.head_hw), mode="bilinear", align_corners=False)
                        h = torch.flatten(h, 1)
                    h = self.fcs[fi](h)
                    fi += 1
            pixel = None
            if self.pixel is not None:
                size_hw = x.shape[-2:]
                hc = torch.cat([F.interpolate(t, size=size_hw, mode="bilinear", align_corners=False)
                                if t.shape[-2:] != size_hw else t for t in taps], 1)
                pixel = self.pixel(hc)
            return h, taps, pixel

    return PaperNet()


# ------------------------------------------------------------------------------------------- ONNX export
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
    for t in taps:
        outputs.append(helper.make_tensor_value_info(t["name"], TensorProto.FLOAT, ["N", t["channels"], None, None]))

    graph = helper.make_graph(
        nodes, "hyperchroma_classifier",
        [helper.make_tensor_value_info("L", TensorProto.FLOAT, ["N", 1, "H", "W"])], outputs, initializer=inits,
    )
    from . import __version__

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
        "min_size": str(_total_stride(layers)),
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
        _atomic_write(Path(path), data)
    return data


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


# ------------------------------------------------------------------------------------------------ data
ImageLike = Union[PathLike, np.ndarray, Any]  # a path, an (H,W[,3|4]) uint8 array or a PIL image


def skimage_photos() -> list[tuple[str, np.ndarray]]:
    """scikit-image's bundled color photos (no download): ``[(name, uint8 (H,W,3))]``. Needs scikit-image."""
    try:
        from skimage import data as skdata
    except ImportError:
        raise ImportError("the scikit-image photos need scikit-image: pip install scikit-image") from None
    out = []
    for name in ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry",
                 "retina", "stereo_motorcycle"):
        try:
            img = getattr(skdata, name)()
        except Exception:  # noqa: BLE001 - some scikit-image versions need a download for some images
            continue
        img = img[0] if isinstance(img, tuple) else img
        if img.ndim == 3 and img.shape[2] >= 3:
            out.append((f"skimage:{name}", np.ascontiguousarray(img[..., :3])))
    return out


def list_images(inputs: Iterable[PathLike]) -> list[Path]:
    """Files given, and image files found (recursively) in the directories given, each directory sorted by path."""
    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise ValueError(f"{p}: no image files ({', '.join(IMAGE_SUFFIXES)}) in this directory")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise ValueError(f"{p}: no such file or directory")
    return files


def _as_rgb(img: ImageLike) -> np.ndarray:
    """Decode (EXIF-transposed) or convert to uint8 (H, W, 3)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    if isinstance(img, (str, os.PathLike)):
        try:
            with Image.open(img) as im:
                return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
        except (UnidentifiedImageError, OSError) as e:
            raise ValueError(f"{img}: cannot read the image ({e})") from None
    if isinstance(img, Image.Image):
        return np.asarray(ImageOps.exif_transpose(img).convert("RGB"))
    a = np.asarray(img)
    if a.dtype != np.uint8:
        raise TypeError(f"images: expected uint8 arrays, paths or PIL images, got an array of {a.dtype}")
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, 2)
    if a.ndim != 3 or a.shape[2] not in (3, 4):
        raise ValueError(f"images: expected (H, W), (H, W, 3) or (H, W, 4) uint8, got shape {a.shape}")
    return np.ascontiguousarray(a[..., :3])


def _resize_short(rgb: np.ndarray, short: int) -> np.ndarray:
    from PIL import Image

    h, w = rgb.shape[:2]
    s = short / min(h, w)
    size = (max(short, round(w * s)), max(short, round(h * s)))
    return np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BILINEAR, reducing_gap=3.0))


@dataclasses.dataclass
class _Sample:
    name: str
    lab: np.ndarray  # (H, W, 3) float32, short side = the crop source size
    label: int = -1  # image class (folder or dominant color)


@dataclasses.dataclass
class TrainResult:
    """What :func:`train_classifier` did: its stop reason, history and final test accuracy."""

    path: Path | None
    model_bytes: bytes
    labels: str
    classes: list[Any]
    epochs_run: int
    stop_reason: str
    history: list[dict[str, float]]
    train_images: int
    test_images: int
    test_right: int
    test_wrong: int
    majority_baseline: float  # share of test images in the most common training class
    pixel_accuracy: float | None  # "pixel" labels: share of test pixels whose ab bin is predicted right
    pixel_baseline: float | None  # the same for always predicting the most common training bin
    seconds: float
    provenance: dict[str, Any]

    @property
    def test_accuracy(self) -> float:
        return self.test_right / self.test_images if self.test_images else float("nan")

    def summary(self) -> str:
        lines = [f"stopped after {self.epochs_run} epochs: {self.stop_reason}"]
        if self.test_images:
            t = self.test_images
            lines.append(f"test images: {self.test_right}/{t} classified right ({100 * self.test_right / t:.1f}%), "
                         f"{self.test_wrong}/{t} wrong ({100 * self.test_wrong / t:.1f}%); "
                         f"majority-class baseline {100 * self.majority_baseline:.1f}%")
        else:
            lines.append("no test images: no test accuracy")
        if self.pixel_accuracy is not None:
            lines.append(f"test pixels: {100 * self.pixel_accuracy:.1f}% in the right ab bin "
                         f"(most-common-bin baseline {100 * (self.pixel_baseline or 0):.1f}%)")
        return "\n".join(lines)


def _folder_samples(roots: Sequence[PathLike]) -> tuple[list[tuple[Path, str]], list[str]]:
    pairs: list[tuple[Path, str]] = []
    for root in roots:
        r = Path(root)
        if not r.is_dir():
            raise ValueError(f"{r}: folder labels need a directory with one subdirectory per class")
        subdirs = sorted(d for d in r.iterdir() if d.is_dir())
        if not subdirs:
            raise ValueError(f"{r}: no class subdirectories (folder labels: ROOT/CLASS/image.jpg)")
        for d in subdirs:
            files = sorted(f for f in d.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
            pairs += [(f, d.name) for f in files]
    classes = sorted({c for _, c in pairs})
    if len(classes) < 2:
        raise ValueError(f"folder labels need at least 2 classes with images, found {classes}")
    return pairs, classes


def train_classifier(
    images: Sequence[ImageLike] | PathLike,
    output: PathLike | None = None,
    *,
    labels: str = "pixel",
    test_images: Sequence[ImageLike] | PathLike | None = None,
    test_every: int = 0,
    test_fraction: float = 0.0,
    spec: str = DEFAULT_SPEC,
    size: int = 224,
    epochs: int = 30,
    batch_size: int = 8,
    lr: float = 2e-3,
    target_loss: float = 0.0,
    patience: int = 5,
    min_delta: float = 1e-3,
    ab_step: float = 20.0,
    rebalance: float = 0.5,
    seed: int = 0,
    threads: int | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    provenance: dict[str, Any] | None = None,
) -> TrainResult:
    """Train a formula-(1) CNN and export it to ONNX (see the module docstring).

    Args:
        images: training images (paths, directories, uint8 arrays, PIL images); for ``labels="folder"`` one or
            more root directories with a subdirectory per class.
        output: where to write the ONNX model (atomically); ``None`` to only return its bytes.
        labels: ``"folder"``, ``"dominant"`` (each image's dominant ab bin) or ``"pixel"`` (each pixel's ab bin).
        test_images: held-out images (same kinds as ``images``); else ``test_every``: every n-th training file,
            sorted by name (index % n == 0), is held out; else ``test_fraction`` of them at random (seeded).
        spec, size: the net and the square training crop size (the paper: 224).
        epochs, target_loss, patience, min_delta: the stopping rules (any one stops training): ``epochs`` epochs
            ran; the epoch's mean training loss fell to ``target_loss``; it did not improve by ``min_delta`` for
            ``patience`` epochs (0 disables).
        ab_step, rebalance: color labels: ab bin side, and how far pixel classes are reweighted toward uniform
            (Zhang et al. 2016's lambda; 0 = plain cross-entropy).
        threads: torch CPU threads (default: torch's; this sets torch's global thread count).
        progress: show a progress bar per epoch (on stderr).
        log: where the summary lines go (default: print to stderr when ``progress``).
    """
    import torch
    from torch.nn import functional as F

    t_start = time.perf_counter()
    if labels not in ("folder", "dominant", "pixel"):
        raise ValueError(f"labels: expected 'folder', 'dominant' or 'pixel', got {labels!r}")
    for name, v, lo in (("size", size, 1), ("epochs", epochs, 0), ("batch_size", batch_size, 1)):
        if not isinstance(v, int) or v < lo:
            raise ValueError(f"{name}: expected an int >= {lo}, got {v!r}")
    if not isinstance(test_every, int) or test_every < 0 or test_every == 1:
        raise ValueError(f"test_every: expected 0 (off) or an int >= 2, got {test_every!r}")
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction: expected 0 <= f < 1, got {test_fraction}")
    layers = parse_spec(spec)
    if size < _total_stride(layers):
        raise ValueError(f"size {size} is smaller than the net's total stride {_total_stride(layers)}")
    say = log if log is not None else ((lambda s: print(s, file=sys.stderr)) if progress else (lambda s: None))
    if threads:
        torch.set_num_threads(int(threads))
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    random.seed(seed)

    # ---- gather (name, image, class name) for train and test
    def expand(items: Any) -> list[Any]:
        if isinstance(items, (str, os.PathLike)):
            items = [items]
        out: list[Any] = []
        for it in items:
            if isinstance(it, (str, os.PathLike)):
                out += list_images([it])
            else:
                out.append(it)
        return out

    if labels == "folder":
        roots = [images] if isinstance(images, (str, os.PathLike)) else list(images)
        train_pairs, class_names = _folder_samples(roots)
        if test_images is not None:
            troots = [test_images] if isinstance(test_images, (str, os.PathLike)) else list(test_images)
            test_pairs, tclasses = _folder_samples(troots)
            unknown = set(tclasses) - set(class_names)
            if unknown:
                raise ValueError(f"test classes not in training: {sorted(unknown)}")
        else:
            test_pairs = []
    else:
        train_pairs = [(it, None) for it in expand(images)]
        test_pairs = [(it, None) for it in expand(test_images)] if test_images is not None else []
        class_names = []
    if test_images is None and (test_every or test_fraction):
        if test_every:  # files only (in-memory images always train), sorted by name
            files = [i for i, (it, _) in enumerate(train_pairs) if isinstance(it, (str, os.PathLike))]
            order = sorted(files, key=lambda i: (Path(train_pairs[i][0]).name, str(train_pairs[i][0])))
            held = {order[k] for k in range(len(order)) if k % test_every == 0}
        else:
            held = set(rng.permutation(len(train_pairs))[: int(round(test_fraction * len(train_pairs)))].tolist())
        test_pairs = [p for i, p in enumerate(train_pairs) if i in held]
        train_pairs = [p for i, p in enumerate(train_pairs) if i not in held]
    if not train_pairs:
        raise ValueError("no training images")

    crop_src = int(round(size * 256 / 224))

    def load(pairs: list[tuple[Any, Any]], short: int) -> list[_Sample]:
        out = []
        for i, (it, cls) in enumerate(pairs):
            name = it if isinstance(it, str) else (str(it) if isinstance(it, os.PathLike) else f"image[{i}]")
            rgb = _resize_short(_as_rgb(it), short)
            out.append(_Sample(str(name), srgb_to_lab(rgb), class_names.index(cls) if cls is not None else -1))
        return out

    say(f"loading {len(train_pairs)} training and {len(test_pairs)} test images")
    train = load(train_pairs, crop_src)
    test = load(test_pairs, size)

    # ---- normalization and color classes
    ls = np.concatenate([s.lab[..., 0].ravel() / 100.0 for s in train])
    mean, std = float(ls.mean()), float(max(ls.std(), 1e-3))
    bins: AbBins | None = None
    pixel_weights = None
    if labels != "folder":
        bins = AbBins(ab_step).fit(s.lab[..., 1:] for s in train)
        for s in train + test:
            s.label = bins.dominant(s.lab[..., 1:])
        class_names = [[round(float(a), 2), round(float(b), 2)] for a, b in bins.centers]
        counts = np.zeros(len(bins.centers))
        for s in train:
            counts += np.bincount(bins.classes(s.lab[..., 1:]).ravel(), minlength=len(counts))
        prior = counts / counts.sum()
        w = 1.0 / ((1 - rebalance) * prior + rebalance / len(prior))
        w /= (prior * w).sum()
        pixel_weights = torch.tensor(w, dtype=torch.float32)
        pixel_prior = prior
    n_classes = max(len(class_names), 2)
    counts_img = np.bincount([s.label for s in train], minlength=n_classes)
    say(f"{len(train)} training images, {len(test)} test images, {n_classes} classes ({labels} labels)")

    net = build_net(spec, n_classes, size=size, pixel_head=labels == "pixel")
    net.detach_head = labels == "pixel"
    opt = torch.optim.Adam(net.parameters(), lr=lr)

    def batch_tensors(samples: list[_Sample], train_mode: bool) -> tuple[Any, Any, Any]:
        xs, ys, ps = [], [], []
        for s in samples:
            h, w = s.lab.shape[:2]
            if train_mode:
                y0, x0 = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
            else:
                y0, x0 = (h - size) // 2, (w - size) // 2
            crop = s.lab[y0:y0 + size, x0:x0 + size]
            if train_mode and rng.random() < 0.5:
                crop = crop[:, ::-1]
            xs.append((crop[..., 0] / 100.0 - mean) / std)
            ys.append(s.label)
            if labels == "pixel":
                ps.append(bins.classes(crop[..., 1:]))  # type: ignore[union-attr]
        x = torch.from_numpy(np.stack(xs)[:, None].astype(np.float32))
        y = torch.tensor(ys, dtype=torch.long)
        p = torch.from_numpy(np.stack(ps)) if ps else None
        return x, y, p

    def loss_of(out: Any, y: Any, p: Any) -> Any:
        logits, taps, pixel = out
        if labels == "pixel":
            return F.cross_entropy(pixel, p, weight=pixel_weights)
        return F.cross_entropy(logits, y)

    from tqdm import tqdm

    history: list[dict[str, float]] = []
    best, since_best = math.inf, 0
    stop_reason = f"maximum of {epochs} epochs reached"
    epoch = 0
    for epoch in range(1, epochs + 1):
        net.train()
        order = rng.permutation(len(train))
        steps = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
        total, right, seen = 0.0, 0, 0
        bar = tqdm(steps, desc=f"epoch {epoch}/{epochs}", unit="batch", disable=not progress, leave=True,
                   file=sys.stderr, dynamic_ncols=True)
        for idx in bar:
            x, y, p = batch_tensors([train[i] for i in idx], True)
            out = net(x)
            loss = loss_of(out, y, p)
            opt.zero_grad(set_to_none=True)
            if labels == "pixel":  # the FC head learns the dominant color on the detached conv features
                (loss + F.cross_entropy(out[0], y)).backward()
            else:
                loss.backward()
            opt.step()
            total += loss.item() * len(idx)
            seen += len(idx)
            if labels == "pixel":
                right_px = (out[2].argmax(1) == p).float().mean().item()
                right += right_px * len(idx)
            else:
                right += int((out[0].argmax(1) == y).sum())
            bar.set_postfix(loss=f"{total / seen:.4f}", acc=f"{right / seen:.3f}")
        bar.close()
        ep_loss = total / seen
        history.append({"epoch": epoch, "loss": ep_loss, "train_accuracy": right / seen})
        if ep_loss <= target_loss:
            stop_reason = f"training loss {ep_loss:.4f} reached the target {target_loss}"
            break
        if ep_loss < best - min_delta:
            best, since_best = ep_loss, 0
        else:
            since_best += 1
            if patience and since_best >= patience:
                stop_reason = f"training loss stopped decreasing ({patience} epochs without a {min_delta} gain)"
                break
    epochs_run = epoch if epochs else 0
    if not epochs:
        stop_reason = "no training (0 epochs)"

    # ---- test
    net.eval()
    t_right = 0
    px_right = px_total = px_base = 0
    majority = int(np.argmax(counts_img))
    with torch.no_grad():
        for s in test:
            x, y, p = batch_tensors([s], False)
            logits, taps, pixel = net(x)
            t_right += int(logits.argmax(1).item() == s.label)
            if labels == "pixel":
                px_right += int((pixel.argmax(1) == p).sum())
                px_total += p.numel()
                px_base += int((p == int(np.argmax(pixel_prior))).sum())
    majority_share = (sum(s.label == majority for s in test) / len(test)) if test else float("nan")

    prov = {
        "tool": "hyperchroma.train", "spec": net.spec, "labels": labels, "seed": seed, "size": size,
        "epochs_run": epochs_run, "stop_reason": stop_reason, "train_images": len(train), "test_images": len(test),
        "test_accuracy": round(t_right / len(test), 4) if test else None,
        "pixel_accuracy": round(px_right / px_total, 4) if px_total else None,
        "final_train_loss": round(history[-1]["loss"], 5) if history else None,
        "torch": torch.__version__,
    }
    prov.update(provenance or {})
    data = export_onnx(net, output, mean=mean, std=std, classes=class_names or list(range(n_classes)),
                       labels=labels, provenance=prov)
    result = TrainResult(
        path=Path(output) if output is not None else None, model_bytes=data, labels=labels,
        classes=list(class_names), epochs_run=epochs_run, stop_reason=stop_reason, history=history,
        train_images=len(train), test_images=len(test), test_right=t_right, test_wrong=len(test) - t_right,
        majority_baseline=majority_share, pixel_accuracy=(px_right / px_total) if px_total else None,
        pixel_baseline=(px_base / px_total) if px_total else None, seconds=time.perf_counter() - t_start,
        provenance=prov,
    )
    say(result.summary())
    return result


def random_classifier(
    output: PathLike | None = None,
    *,
    spec: str = DEFAULT_SPEC,
    classes: int = 10,
    size: int = 224,
    seed: int = 0,
    mean: float = 0.5,
    std: float = 0.25,
    provenance: dict[str, Any] | None = None,
) -> bytes:
    """Export the randomly initialized net of ``spec`` (PyTorch's default init under ``torch.manual_seed(seed)``)
    with the input normalization ``(L/100 - mean) / std``; return the ONNX bytes (and write ``output``)."""
    import torch

    torch.manual_seed(seed)
    net = build_net(spec, classes, size=size)
    prov = {"tool": "hyperchroma.train", "spec": net.spec, "init": "random", "seed": seed, "torch": torch.__version__}
    prov.update(provenance or {})
    return export_onnx(net, output, mean=mean, std=std, classes=list(range(classes)), labels="none", provenance=prov)
