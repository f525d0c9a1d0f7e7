"""The color table: the hash table of key -> ab colors and the sorted index over its usable entries, kept
together so that they never drift apart.

A :class:`ColorTable` is *open* while fitting (``insert``) and *finalized* for colorizing: ``finalize`` drops
the fitting-only data (the "vote" policy's per-bin counts), shrinks the table and builds the sorted index
from the very entries the table holds. A table loaded from a file is built finalized from one set of entry
arrays, which feed both the hash table and the index.

Open tables fitted on parts of the training data :meth:`ColorTable.merge` exactly: every policy's stored
color, count and conflict flag is a function of the set of colors a key was given (exact sums and counts,
vote bin counts, color extremes), so merging the parts and finalizing gives the table fitted on all the
data at once, entry for entry (in the same order when consecutive parts are merged in order). Tables
pickle with their fitting data, so partial tables can be shipped between processes.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import numpy as np

from . import core
from .settings import FitSettings


class ColorTable:
    """Key -> color storage for one quantizer (``channels`` x ``levels``) and one conflict policy."""

    def __init__(self, table: "core.Table", weights: np.ndarray, index: Optional["core.SortedIndex"] = None):
        self._table = table
        self._weights = np.ascontiguousarray(weights, dtype=np.float32)
        self._index = index

    # ------------------------------------------------------------------------------------------ building
    @classmethod
    def empty(cls, channels: int, levels: int, weights: np.ndarray, settings: FitSettings) -> "ColorTable":
        """An open table for fitting under ``settings.policy``."""
        table = core.Table(channels, levels, settings.policy, settings.tolerance, vote_bin=settings.bin_width)
        return cls(table, weights)

    @classmethod
    def from_entries(cls, entries: Dict[str, np.ndarray], weights: np.ndarray, levels: int,
                     settings: FitSettings) -> "ColorTable":
        """A finalized table from saved entries (``keys``, ``ab``, ``counts``, ``conflicting``)."""
        keys = np.ascontiguousarray(entries["keys"])
        ab = np.ascontiguousarray(entries["ab"], dtype=np.float32)
        conflicting = np.ascontiguousarray(entries["conflicting"], dtype=bool)
        channels = int(np.asarray(weights).shape[0])
        table = core.Table.from_entries(channels, levels, settings.policy, settings.tolerance, keys, ab,
                                        np.ascontiguousarray(entries["counts"]), conflicting,
                                        vote_bin=settings.bin_width)
        out = cls(table, weights)
        out._index = out._build_index(keys, ab, conflicting)
        return out

    def insert(self, keys: np.ndarray, ab: np.ndarray) -> None:
        """Add training pairs (open tables only)."""
        if self._index is not None:
            raise ValueError("this color table is finalized; fit a new one to add colors")
        self._table.insert(keys, ab)

    def merge(self, other: "ColorTable") -> None:
        """Add every color fitted into ``other`` (an open table for the same quantizer and settings) to this
        open table, as if it had been inserted here; ``other``'s new keys are appended in its order and
        ``other`` is not changed. Associative and commutative: see the module docs."""
        if not isinstance(other, ColorTable):
            raise TypeError(f"merge takes a ColorTable, got {type(other).__name__}")
        if self._index is not None or other._index is not None:
            raise ValueError("only open color tables merge exactly; merge before finalize()")
        if not np.array_equal(self._weights, other._weights):
            raise ValueError("the color tables were made for different quantizers (their weights differ)")
        self._table.merge(other._table)

    def __getstate__(self) -> Dict[str, Any]:
        return {"table": self._table, "weights": self._weights, "finalized": self._index is not None}

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self._table = state["table"]
        self._weights = state["weights"]
        self._index = None
        if state["finalized"]:
            e = self.entries()
            self._index = self._build_index(e["keys"], e["ab"], e["conflicting"])

    def finalize(self) -> None:
        """End fitting: settle "vote" colors, free fitting-only memory, build the sorted index."""
        if self._index is not None:
            return
        self._table.finalize()
        self._table.shrink_to_fit()
        e = self._table.entries()
        self._index = self._build_index(e["keys"], e["ab"], np.asarray(e["conflicting"], dtype=bool))

    def _build_index(self, keys: np.ndarray, ab: np.ndarray, conflicting: np.ndarray) -> "core.SortedIndex":
        usable = ~conflicting
        return core.SortedIndex(np.ascontiguousarray(keys[usable]), np.ascontiguousarray(ab[usable]),
                                self._weights, self.channels, self.levels)

    # ----------------------------------------------------------------------------------------- queries
    @property
    def finalized(self) -> bool:
        return self._index is not None

    @property
    def index(self) -> "core.SortedIndex":
        """The sorted index over the usable entries (finalized tables only)."""
        if self._index is None:
            raise ValueError("the color table is still open: call finalize() first")
        return self._index

    @property
    def table(self) -> "core.Table":
        """The underlying hash table (``core.Table``)."""
        return self._table

    @property
    def channels(self) -> int:
        return int(self._table.channels)

    @property
    def levels(self) -> int:
        return int(self._table.levels)

    @property
    def policy(self) -> str:
        return str(self._table.policy)

    @property
    def weights(self) -> np.ndarray:
        return self._weights

    def lookup(self, keys: np.ndarray, threads: int = 1) -> Tuple[np.ndarray, np.ndarray]:
        """(ab (n, 2), core status (n,)) of exact keys."""
        return self._table.lookup(keys, threads=threads)

    def lookup_one_step(self, keys: np.ndarray, threads: int = 1) -> Tuple[np.ndarray, np.ndarray]:
        """(mean ab of the stored keys one level step away, how many were found) per key."""
        return self._table.lookup_one_step(keys, threads=threads)

    def entries(self) -> Dict[str, np.ndarray]:
        """All entries in insertion order: ``keys``, ``ab``, ``counts``, ``conflicting``."""
        e = self._table.entries()
        e["conflicting"] = np.asarray(e["conflicting"], dtype=bool)
        return e

    def memory_bytes(self) -> int:
        """Bytes held by the hash table (with its one-step neighbour index once a one-step lookup built it) and,
        once finalized, the sorted index."""
        return int(self._table.memory_bytes()) + (int(self._index.memory_bytes()) if self._index is not None else 0)

    def __len__(self) -> int:
        return len(self._table)

    def __repr__(self) -> str:
        state = "finalized" if self.finalized else "open"
        return (f"ColorTable(entries={len(self)}, channels={self.channels}, levels={self.levels}, "
                f"policy={self.policy!r}, {state})")
