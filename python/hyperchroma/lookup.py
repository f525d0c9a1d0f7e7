"""The lookup chain, one function of keys: keys -> ab, status, distance.

For every key, in order:

1. **exact**: the key is in the table (and usable) -> its color, distance 0;
2. **one step** (``one_step``): the mean color of the stored keys exactly one quantization step away
   (distance 1, the nearest possible);
3. **nearest**: the best of the found keys of its image neighbours (``seed_radius``) and the sorted index's
   scan around its projection (``max_scan``, or ``exact``), pruned at the best neighbour's distance;
4. **gray**: nothing within ``max_distance`` -> ab = 0.

The per-pixel :class:`Status` values are disjoint from the core table's hit/miss/conflict codes, so the two
can never be confused.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Tuple

import numpy as np

from . import core
from .settings import ColorizeSettings
from .table import ColorTable


class Status(IntEnum):
    """How a pixel got its color (the values differ from ``core.STATUS_MISS/HIT/CONFLICT``)."""

    GRAY = 8  #: nothing close enough in the table: left gray
    EXACT = 9  #: the pixel's key is in the table
    NEAREST = 10  #: colored from the nearest stored key(s)


@dataclass(frozen=True)
class Lookup:
    """The lookup of n keys: ab (n, 2) float32, status (n,) uint8 (:class:`Status`), distance (n,) float32
    (0 for exact hits, the L2 distance in levels to the key(s) used, inf for gray)."""

    ab: np.ndarray
    status: np.ndarray
    distance: np.ndarray


def lookup(table: ColorTable, keys: np.ndarray, shape: Tuple[int, int], settings: ColorizeSettings,
           threads: int = 1) -> Lookup:
    """Colors of the (h*w, words) keys of an image of ``shape`` (h, w) through the whole chain."""
    h, w = shape
    n = len(keys)
    if n != h * w:
        raise ValueError(f"keys: expected {h * w} keys for a {h}x{w} image, got {n}")
    ab, hit = table.lookup(keys, threads=threads)
    exact = hit == core.STATUS_HIT
    found = exact.view(np.uint8)  # the seeds kernel's 0/1 mask
    status = np.where(exact, np.uint8(Status.EXACT), np.uint8(Status.GRAY))
    distance = np.where(exact, np.float32(0), np.float32(np.inf))
    miss = np.flatnonzero(found == 0)
    ab[miss] = 0
    if miss.size and settings.one_step and settings.max_distance >= 1:
        ab1, hits = table.lookup_one_step(keys[miss], threads=threads)
        near = hits > 0
        ab[miss[near]] = ab1[near]
        status[miss[near]] = Status.NEAREST
        distance[miss[near]] = 1.0
        miss = miss[~near]
    if miss.size:
        bounds = seed = None
        if settings.seed_radius > 0:
            seed_all, seed_d = core.neighbor_seeds(keys, found, h, w, table.channels, table.levels,
                                                   settings.seed_radius, threads=threads)
            seed, bounds = seed_all[miss], seed_d[miss]
        idx, dist = table.index.search(keys[miss], max_distance=settings.max_distance, max_scan=settings.max_scan,
                                       exact=settings.exact, threads=threads, bounds=bounds)
        from_index = idx >= 0
        colors = table.index.colors(idx)
        dist = np.where(from_index, dist, np.inf).astype(np.float32)
        if seed is not None and bounds is not None:
            from_seed = ~from_index & (seed >= 0) & (bounds <= settings.max_distance)
            colors[from_seed] = ab[seed[from_seed]]
            dist[from_seed] = bounds[from_seed]
            from_index |= from_seed
        colors[~from_index] = 0
        ab[miss] = colors
        status[miss] = np.where(from_index, np.uint8(Status.NEAREST), np.uint8(Status.GRAY))
        distance[miss] = dist
    return Lookup(ab, status, distance)
