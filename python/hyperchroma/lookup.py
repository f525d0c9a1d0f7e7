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
from typing import Optional, Tuple

import numpy as np

from . import core
from .settings import ColorizeSettings
from .table import ColorTable
from .workspace import Workspace


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
    #: an image with edge bars: the lookup of its picture alone (this one is that pasted into the frame's grid,
    #: :func:`hyperchroma.pipeline.paste`); None otherwise
    content: Optional["Lookup"] = None


def lookup(table: ColorTable, keys: np.ndarray, shape: Tuple[int, int], settings: ColorizeSettings,
           threads: int = 1, ws: Optional[Workspace] = None) -> Lookup:
    """Colors of the (h*w, words) keys of an image of ``shape`` (h, w) through the whole chain: one C++ call
    (``core.lookup_chain``, per-thread scratch buffers), equal to :func:`lookup_py`, which states it. With
    ``ws`` the three arrays are ``ws``'s (see :mod:`hyperchroma.workspace`)."""
    h, w = shape
    if len(keys) != h * w:
        raise ValueError(f"keys: expected {h * w} keys for a {h}x{w} image, got {len(keys)}")
    n = h * w
    out = None if ws is None else (ws.get("ab", (n, 2), np.float32), ws.get("status", (n,), np.uint8),
                                   ws.get("distance", (n,), np.float32))
    ab, status, distance = core.lookup_chain(table.table, table.index, keys, h, w, one_step=settings.one_step,
                                             max_distance=settings.max_distance, max_scan=settings.max_scan,
                                             exact=settings.exact, seed_radius=settings.seed_radius, threads=threads,
                                             out=out)
    return Lookup(ab, status, distance)


def lookup_py(table: ColorTable, keys: np.ndarray, shape: Tuple[int, int], settings: ColorizeSettings,
              threads: int = 1) -> Lookup:
    """The chain of :func:`lookup` in Python over the core's kernels (the reference it is tested against).

    The fallback runs once per distinct missing key (``core.unique_keys``), not once per pixel: the one-step
    probes depend on the key only; the bounded sorted-index search of a key with a pixel's bound ``c`` (its
    image neighbours' distance, or ``max_distance``) returns the first-visited nearest entry of the key's
    ``max_scan`` candidates if its distance is at most ``c``, else nothing, so one search per key with the
    largest bound of its pixels answers every pixel (checked against the per-pixel chain in the tests). The
    exact search (``exact=True``) visits in an order that depends on the bound: it runs per pixel."""
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
    if not miss.size:
        return Lookup(ab, status, distance)
    ab[miss] = 0
    first, inverse = core.unique_keys(keys[miss])
    distinct = miss[first]  # a pixel (row of keys) per distinct missing key
    if settings.one_step and settings.max_distance >= 1:
        ab1, hits = table.lookup_one_step(keys[distinct], threads=threads)
        near = (hits > 0)[inverse]
        ab[miss[near]] = ab1[inverse[near]]
        status[miss[near]] = Status.NEAREST
        distance[miss[near]] = 1.0
        miss, inverse = miss[~near], inverse[~near]
    if miss.size:
        bounds = seed = None
        if settings.seed_radius > 0:
            seed, bounds = core.neighbor_seeds(keys, found, h, w, table.channels, table.levels,
                                               settings.seed_radius, threads=threads, pixels=miss)
        if settings.exact:
            idx, dist = table.index.search(keys[miss], max_distance=settings.max_distance,
                                           max_scan=settings.max_scan, exact=True, threads=threads, bounds=bounds)
        else:
            idx, dist = _search_distinct(table, keys, distinct, inverse, bounds, settings, threads)
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


def _search_distinct(table: ColorTable, keys: np.ndarray, distinct: np.ndarray, inverse: np.ndarray,
                     bounds: "np.ndarray | None", settings: ColorizeSettings,
                     threads: int) -> Tuple[np.ndarray, np.ndarray]:
    """The bounded search's (index, distance) for each pixel of ``inverse`` (positions in ``distinct``, the
    pixels of the distinct keys), searching each distinct key once; equal to a per-pixel search with
    ``bounds``. A pixel's cap is its bound where below ``max_distance`` (the kernel's rule, NaN ignored), else
    ``max_distance``; a key is searched with the largest cap of its pixels (NaN: ``max_distance``), and a
    pixel keeps the key's entry when the entry's distance is within its own cap, compared in float64 on the
    integer squared distance as the kernel does."""
    md = float(settings.max_distance)
    used, inv = np.unique(inverse, return_inverse=True)
    query = keys[distinct[used]]
    if bounds is None:
        idx_k, dist_k = table.index.search(query, max_distance=md, max_scan=settings.max_scan, threads=threads)
        return idx_k[inv], dist_k[inv]
    b64 = bounds.astype(np.float64)
    cap = np.where(b64 < md, b64, md)
    key_cap = np.full(len(used), -np.inf)
    np.maximum.at(key_cap, inv, cap)
    key_bounds = np.where(key_cap < md, key_cap, np.nan).astype(np.float32)  # exact: those caps were float32
    idx_k, dist_k = table.index.search(query, max_distance=md, max_scan=settings.max_scan, threads=threads,
                                       bounds=key_bounds)
    idx, dist = idx_k[inv], dist_k[inv]
    d2 = np.rint(dist.astype(np.float64) ** 2)  # the squared distance, an integer (inf where none)
    keep = (idx >= 0) & (np.sqrt(d2) <= cap)
    return np.where(keep, idx, -1), dist
