"""Per-thread reusable arrays of the latency path, so that ``model.colorize`` allocates only its output.

A :class:`Workspace` holds one array per name, reshaped (reallocated) only when a call asks for another shape or
dtype: a stream of same-size images reuses the same memory call after call. :func:`for_thread` gives the calling
thread's own (``threading.local``), so the worker threads of ``colorize_batch`` never share one.

The arrays are scratch: the stages write into them and read them back within one call, and anything a caller
keeps (the RGB output, a ``details=True`` result) is never one of them. Stages take ``ws=None`` to allocate as
before, which every caller that keeps intermediate arrays (the film engine, the fit, the reference chain) does.
"""

from __future__ import annotations

import threading
from typing import Dict, Optional, Tuple

import numpy as np


class Workspace:
    """Named scratch arrays of one thread."""

    __slots__ = ("_arrays",)

    def __init__(self) -> None:
        self._arrays: Dict[str, np.ndarray] = {}

    def get(self, name: str, shape: Tuple[int, ...], dtype: "np.dtype | type") -> np.ndarray:
        """The array ``name`` with ``shape`` and ``dtype`` (C-contiguous, contents undefined): the same memory as
        the last request of that name when shape and dtype are the same."""
        a = self._arrays.get(name)
        if a is None or a.shape != tuple(shape) or a.dtype != dtype:
            a = self._arrays[name] = np.empty(shape, dtype)
        return a

    @property
    def nbytes(self) -> int:
        """Bytes held (what this thread keeps between calls)."""
        return sum(a.nbytes for a in self._arrays.values())


def take(ws: Optional[Workspace], name: str, shape: Tuple[int, ...], dtype: "np.dtype | type") -> Optional[np.ndarray]:
    """``ws.get(...)``, or None (a kernel's ``out=None``: allocate) without a workspace."""
    return None if ws is None else ws.get(name, shape, dtype)


_local = threading.local()


def for_thread() -> Workspace:
    """The calling thread's workspace (created on first use, freed with the thread)."""
    ws = getattr(_local, "ws", None)
    if ws is None:
        ws = _local.ws = Workspace()
    return ws
