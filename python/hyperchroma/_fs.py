"""Files written whole or not at all: one atomic-write helper for models, PNGs, ONNX files and videos.

:func:`atomic_write` opens a temporary file beside the target; on success it is flushed, fsynced and renamed
over the target, so a crash or an error never leaves a partial file under the target's name.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import IO, Iterator, Union

PathLike = Union[str, "os.PathLike[str]"]


def _file_mode() -> int:
    """Permissions a plain open() would give a new file (mkstemp's temporary files are 0600)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


FILE_MODE = _file_mode()


@contextlib.contextmanager
def atomic_write(path: PathLike, *, make_parents: bool = False, suffix: str = ".tmp") -> Iterator[IO[bytes]]:
    """Open a temporary file beside ``path`` for binary writing; on success fsync it and rename it to ``path``.

    On any error the temporary file is removed: ``path`` is either untouched or complete, never partial.
    ``make_parents`` creates missing parent folders first. ``suffix`` is the temporary file's suffix (a
    video muxer picks its container from it, e.g. ``".tmp.mp4"``).
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise ValueError(f"cannot write '{path}': it is a directory")
    folder = os.path.dirname(os.path.abspath(path))
    if make_parents:
        os.makedirs(folder, exist_ok=True)
    elif not os.path.isdir(folder):
        raise ValueError(f"cannot write '{path}': folder '{folder}' does not exist")
    fd, tmp = tempfile.mkstemp(prefix=".hyperchroma-", suffix=suffix, dir=folder)
    try:
        with os.fdopen(fd, "w+b") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_bytes(path: PathLike, data: bytes, *, make_parents: bool = False) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    with atomic_write(path, make_parents=make_parents) as f:
        f.write(data)
