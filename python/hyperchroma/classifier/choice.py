"""Which of a foreign CNN's conv outputs are tapped by default, and why.

Every conv output is a candidate (:func:`.graph._default_taps`); one probe run on a fixed gray image tells
what each carries. A candidate is left out when it cannot help the keys:

- a 1x1 map at the probe size (a squeeze-excitation gate, a globally pooled feature): nothing per pixel,
  and it would only raise the minimum image size to the probe size;
- constant over the probe image (dead channels only);
- a duplicate of a tap already kept (same shape and values: the same activation reached twice);
- over the channel cap (:data:`hyperchroma.settings.DEFAULT_TAP_CHANNELS`): thousands of channels only make
  sampling and the projection's PCA slow; the earliest taps of the resolution with the most channels go
  first, so every resolution keeps its deepest tap.

:class:`TapChoice` records each candidate's fate; the runtime model keeps the list (``hyperchroma info``
prints it).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from .metadata import TapInfo


class TapChoice(NamedTuple):
    """One candidate tap: ``name``, ``channels``, ``stride``, whether it was ``chosen`` and the ``reason``."""

    name: str
    channels: int
    stride: int
    chosen: bool
    reason: str


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=1e-5, atol=1e-6))


def choose_taps(taps: Sequence[TapInfo], maps: Sequence[np.ndarray], probe_size: int,
                max_channels: int) -> list[TapChoice]:
    """The fate of every candidate (in order) from its probe map ``maps[i]`` (C, h, w); ``max_channels`` caps
    the chosen taps' channels in total (0: no cap)."""
    reasons: list[str | None] = [None] * len(taps)
    kept: list[int] = []
    by_key: dict[tuple, list[int]] = {}
    for i, (t, m) in enumerate(zip(taps, maps)):
        if m.shape[-1] <= 1 and m.shape[-2] <= 1 and probe_size > 1:
            reasons[i] = f"a 1x1 map at {probe_size}x{probe_size} (a gate or pooled feature): nothing per pixel"
            continue
        if float(np.ptp(m)) == 0.0:
            reasons[i] = "constant on the probe image"
            continue
        key = (m.shape, round(float(m.mean()), 4), round(float(m.std()), 4))
        twin = next((j for j in by_key.get(key, []) if _same(maps[j], m)), None)
        if twin is not None:
            reasons[i] = f"the same values as {taps[twin].name}"
            continue
        by_key.setdefault(key, []).append(i)
        kept.append(i)
    if max_channels > 0:
        total = sum(taps[i].channels for i in kept)
        while total > max_channels:
            groups: dict[int, list[int]] = {}
            for i in kept:
                groups.setdefault(taps[i].stride, []).append(i)
            multi = [g for g in groups.values() if len(g) > 1]
            if not multi:
                break  # one tap per resolution: keep them all, whatever their channels
            group = max(multi, key=lambda g: sum(taps[i].channels for i in g))
            drop = group[0]
            kept.remove(drop)
            total -= taps[drop].channels
            reasons[drop] = (f"over the {max_channels}-channel cap (stride {taps[drop].stride} keeps its "
                             "deeper taps)")
    out = []
    for i, t in enumerate(taps):
        chosen = i in kept
        out.append(TapChoice(t.name, t.channels, t.stride, chosen,
                             "a conv output with per-pixel maps" if chosen else str(reasons[i])))
    return out


def named_choice(taps: Sequence[TapInfo]) -> list[TapChoice]:
    return [TapChoice(t.name, t.channels, t.stride, True, "named by the user") for t in taps]


def to_json(choice: Sequence[TapChoice]) -> str:
    return json.dumps([c._asdict() for c in choice])


def from_json(text: str | None) -> list[TapChoice]:
    if not text:
        return []
    try:
        return [TapChoice(str(c["name"]), int(c["channels"]), int(c["stride"]), bool(c["chosen"]), str(c["reason"]))
                for c in json.loads(text)]
    except (ValueError, TypeError, KeyError):
        return []
