"""The PyTorch module of a spec (PyTorch is imported only when a net is built)."""

from __future__ import annotations

from typing import Any

from .spec import DEFAULT_SPEC, parse_spec, spec_str, tap_layout, total_stride


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
    stride = total_stride(layers)
    if size < stride:
        raise ValueError(f"size {size} is smaller than the net's total stride {stride}")
    head_hw = size // stride

    class PaperNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.spec = spec_str(layers)
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

