"""The model file: one self-contained file holding the classifier, quantizer, table and settings.

Layout (little-endian)::

    offset 0   magic  b"HYPERCHR"                      8 bytes
           8   format major, minor                     2 x uint16
          12   header length H (JSON, UTF-8)           uint32
          16   file length                             uint64
          24   CRC-32 of bytes [32, file length)       uint32
          28   reserved (0)                            uint32
          32   header JSON: {"meta": {...}, "arrays": {name: {dtype, shape, offset, nbytes}}}
               arrays, each at a 64-byte aligned offset (load refuses any other offset)

Writing goes to a temporary file in the target folder, then an atomic rename: a crash never leaves a half
file under the target name. Reading checks magic, version, length and checksum before trusting any size,
and reads the file into memory: the arrays are read-only views of that private copy, so changing or
truncating the file later cannot touch a loaded model. ``load(path, mmap=True)`` maps the file instead
(zero-copy; then the file must not change while the arrays are in use).
"""

from __future__ import annotations

import json
import math
import mmap as _mmap
import os
import struct
import zlib
from typing import Any, Dict, Tuple, cast

import numpy as np

from ._fs import atomic_write

MAGIC = b"HYPERCHR"
FORMAT_MAJOR = 1
FORMAT_MINOR = 0
_FIXED = struct.Struct("<8sHHIQII")  # 32 bytes
_ALIGN = 64
_DTYPES = {"uint8", "uint16", "uint32", "uint64", "int32", "int64", "float32", "float64", "bool"}


class ModelFileError(ValueError):
    """A model file that is missing, truncated, corrupt, foreign or of an unsupported version."""


def _aligned(n: int) -> int:
    return (n + _ALIGN - 1) // _ALIGN * _ALIGN


def save(path: str | os.PathLike, meta: dict, arrays: Dict[str, np.ndarray]) -> None:
    """Write meta (JSON-able) and named arrays to `path` atomically."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ModelFileError(f"cannot save model to '{path}': folder '{directory}' does not exist")
    if os.path.isdir(path):
        raise ModelFileError(f"cannot save model to '{path}': it is a directory")
    # Lay out the arrays after a header whose size we fix by iterating (offsets change the JSON length).
    specs: Dict[str, Dict[str, Any]] = {}
    conts: Dict[str, np.ndarray] = {}
    for name, a in arrays.items():
        a = np.ascontiguousarray(a)
        if a.dtype.name not in _DTYPES:
            raise TypeError(f"model array '{name}' has unsupported dtype {a.dtype}")
        conts[name] = a
    header_len = 0
    for _ in range(4):
        offset = _aligned(_FIXED.size + header_len)
        specs = {}
        for name, a in conts.items():
            specs[name] = {"dtype": a.dtype.name, "shape": list(a.shape), "offset": offset, "nbytes": a.nbytes}
            offset = _aligned(offset + a.nbytes)
        header = json.dumps({"meta": meta, "arrays": specs}, sort_keys=True).encode()
        if len(header) <= header_len:
            break
        header_len = len(header) + 256  # slack so the next pass fits
    header = header.ljust(header_len, b" ")
    file_len = offset if conts else _FIXED.size + header_len

    with atomic_write(path) as f:
        f.write(b"\0" * _FIXED.size)
        f.write(header)
        crc = zlib.crc32(header)
        pos = _FIXED.size + header_len
        for name, a in conts.items():
            pad = specs[name]["offset"] - pos
            if pad:
                f.write(b"\0" * pad)
                crc = zlib.crc32(b"\0" * pad, crc)
            data = memoryview(cast(Any, a.reshape(-1).view(np.uint8)))
            f.write(data)
            crc = zlib.crc32(data, crc)
            pos = specs[name]["offset"] + a.nbytes
        if pos < file_len:
            f.write(b"\0" * (file_len - pos))
            crc = zlib.crc32(b"\0" * (file_len - pos), crc)
        f.seek(0)
        f.write(_FIXED.pack(MAGIC, FORMAT_MAJOR, FORMAT_MINOR, header_len, file_len, crc, 0))


def _read_aligned(f: Any, size: int) -> np.ndarray:
    """The file's bytes in a private, read-only, 64-byte aligned buffer (so the arrays keep their alignment)."""
    raw = np.empty(size + _ALIGN, np.uint8)
    start = -raw.ctypes.data % _ALIGN
    buf = raw[start:start + size]
    got = f.readinto(memoryview(cast(Any, buf)))
    if got != size:
        raise ModelFileError(f"'{f.name}' changed while it was read ({got} of {size} bytes)")
    buf.flags.writeable = False
    return buf


def load(path: str | os.PathLike, mmap: bool = False) -> Tuple[dict, Dict[str, np.ndarray]]:
    """Read a model file: (meta, arrays), the arrays read-only views of the file's bytes read into memory
    (``mmap=True``: of a memory map of the file, zero-copy)."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size < _FIXED.size:
                raise ModelFileError(f"'{path}' is not a hyperchroma model (too short: {size} bytes)")
            buf: Any = _mmap.mmap(f.fileno(), 0, access=_mmap.ACCESS_READ) if mmap else _read_aligned(f, size)
            size = len(buf)
    except FileNotFoundError:
        raise ModelFileError(f"cannot load model '{path}': no such file") from None
    except IsADirectoryError:
        raise ModelFileError(f"cannot load model '{path}': it is a directory") from None
    except PermissionError as e:
        raise ModelFileError(f"cannot load model '{path}': {e.strerror}") from None
    magic, major, minor, header_len, file_len, crc, _ = _FIXED.unpack_from(buf, 0)
    if magic != MAGIC:
        raise ModelFileError(f"'{path}' is not a hyperchroma model (bad magic)")
    if major != FORMAT_MAJOR:
        raise ModelFileError(
            f"'{path}' is model format {major}.{minor}; this hyperchroma reads format {FORMAT_MAJOR}.x"
        )
    if file_len != size:
        raise ModelFileError(f"'{path}' is truncated or padded: header says {file_len} bytes, file has {size}")
    if _FIXED.size + header_len > size:
        raise ModelFileError(f"'{path}' is corrupt: its header length ({header_len} bytes) is too large for a "
                             f"file of {size} bytes")
    if zlib.crc32(memoryview(buf)[_FIXED.size:]) != crc:
        raise ModelFileError(f"'{path}' is corrupt (checksum mismatch)")
    try:
        header = json.loads(bytes(buf[_FIXED.size:_FIXED.size + header_len]).decode())
        meta, specs = header["meta"], header["arrays"]
        if not isinstance(meta, dict) or not isinstance(specs, dict):
            raise ValueError("meta and arrays must be objects")
        arrays = {}
        for name, s in specs.items():
            if s["dtype"] not in _DTYPES:
                raise ValueError(f"array '{name}' has unsupported dtype {s['dtype']}")
            dt = np.dtype(s["dtype"])
            shape = tuple(int(d) for d in s["shape"])
            if any(d < 0 for d in shape) or int(s["nbytes"]) < 0:
                raise ValueError(f"array '{name}' has a negative size")
            n = math.prod(shape)
            off = int(s["offset"])
            if n * dt.itemsize != int(s["nbytes"]) or off < _FIXED.size + header_len or off + s["nbytes"] > size:
                raise ValueError(f"array '{name}' lies outside the file")
            if off % _ALIGN:  # save() aligns every array; a misaligned one would be read through a bad pointer
                raise ValueError(f"array '{name}' is not {_ALIGN}-byte aligned (offset {off})")
            arrays[name] = np.frombuffer(buf, dtype=dt, count=n, offset=off).reshape(shape)
    except (ValueError, KeyError, TypeError, AttributeError, OverflowError, RecursionError, MemoryError) as e:
        # UnicodeDecodeError and json's JSONDecodeError are ValueErrors
        raise ModelFileError(f"'{path}' has a malformed header ({type(e).__name__}: {str(e)[:200]})") from None
    return meta, arrays
