"""Files written whole or not at all: one atomic-write helper for models, PNGs, ONNX files and videos.

:func:`atomic_write` opens a temporary file beside the target; on success it is flushed, fsynced and renamed
over the target, so a crash or an error never leaves a partial file under the target's name.

Temporary files are named ``.hyperchroma-<pid>-<random><suffix>``. A SIGTERM during a write (in the main
thread) removes them before the process dies the way it would have; a process killed outright (SIGKILL, power
loss) leaves its temporary file behind, and the next write into that folder removes it (a process looks at a
folder at most every ``STALE_SECONDS / 2``): ours only (our prefix), once its writer's pid is dead or it is
older than :data:`STALE_SECONDS`.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import stat
import tempfile
import threading
import time
from typing import IO, Any, Dict, Iterator, List, Union

PathLike = Union[str, "os.PathLike[str]"]


def _file_mode() -> int:
    """Permissions a plain open() would give a new file (mkstemp's temporary files are 0600)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


FILE_MODE = _file_mode()


PREFIX = ".hyperchroma-"
STALE_SECONDS = 600.0  # a temporary file untouched this long is a dead writer's, whatever its pid says
# ".hyperchroma-<pid>-<mkstemp's 8 characters><suffix>", or the pid-less names of earlier versions
_TEMP_NAME = re.compile(r"\.hyperchroma-(?:(\d+)-)?[A-Za-z0-9_]+\.tmp(?:\.[A-Za-z0-9]+)?\Z")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, another user's
        return True
    return True


def remove_stale_temps(folder: str, now: float | None = None) -> List[str]:
    """Remove temporary files of ours in ``folder`` whose writer is gone; return their names.

    Only regular files named like ours, not our own process's, whose pid is dead or that are older than
    :data:`STALE_SECONDS`. Errors (a file vanishing, another user's file) are ignored.
    """
    removed: List[str] = []
    now = time.time() if now is None else now
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for e in entries:
        m = _TEMP_NAME.match(e.name)
        if not m:
            continue
        pid = int(m.group(1)) if m.group(1) else None
        if pid == os.getpid():
            continue  # a write of this process (another thread), never stale
        try:
            st = e.stat(follow_symlinks=False)
            if not stat.S_ISREG(st.st_mode):
                continue
            if now - st.st_mtime > STALE_SECONDS or (pid is not None and not _pid_alive(pid)):
                os.unlink(e.path)
                removed.append(e.name)
        except OSError:
            pass
    return removed


_swept: Dict[str, float] = {}  # folder -> when this process last removed stale temporary files there


def _sweep(folder: str) -> None:
    """remove_stale_temps(folder), at most once per STALE_SECONDS / 2 per folder: a batch writing thousands
    of files into one folder must not list it before every file."""
    now = time.monotonic()
    last = _swept.get(folder)
    if last is not None and now - last < STALE_SECONDS / 2:
        return
    if len(_swept) > 1024:
        _swept.clear()
    _swept[folder] = now
    remove_stale_temps(folder)


# Temporary files this process is writing (any thread), removed by the SIGTERM handler.
_active: List[str] = []
_main_depth = 0  # atomic writes open in the main thread


def _on_sigterm(signum: int, frame: Any) -> None:
    """SIGTERM with the default action pending: remove our temporary files, then die by the signal as the
    process would have without us (exit status -SIGTERM / 143)."""
    for tmp in list(_active):
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


@contextlib.contextmanager
def _cleanup_on_sigterm(tmp: str) -> Iterator[None]:
    """While the body runs, a SIGTERM removes ``tmp``.

    The handler is installed by the main thread's outermost write (signal handlers live there), only over
    the default action, and the default is restored when that write ends. A program's own SIGTERM handler
    is left alone: if it raises (SystemExit), the exception unwinds through :func:`atomic_write`, which
    removes the file; if it exits outright (``os._exit``), the next write into the folder removes it."""
    global _main_depth
    main = threading.current_thread() is threading.main_thread()
    installed = False
    if main and _main_depth == 0:
        with contextlib.suppress(ValueError, OSError):
            if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
                signal.signal(signal.SIGTERM, _on_sigterm)
                installed = True
    if main:
        _main_depth += 1
    _active.append(tmp)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            _active.remove(tmp)
        if main:
            _main_depth -= 1
        if installed and signal.getsignal(signal.SIGTERM) is _on_sigterm:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


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
    _sweep(folder)
    fd, tmp = _mkstemp(folder, suffix)
    try:
        with _cleanup_on_sigterm(tmp):
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


def _mkstemp(folder: str, suffix: str) -> tuple:
    """mkstemp with our prefix and pid; an OSError says which folder and why, never the temporary name."""
    try:
        return tempfile.mkstemp(prefix=f"{PREFIX}{os.getpid()}-", suffix=suffix, dir=folder)
    except OSError as e:
        why = (e.strerror or str(e)).lower()
        raise type(e)(f"cannot write into folder '{folder}': {why}") from None


def write_bytes(path: PathLike, data: bytes, *, make_parents: bool = False) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    with atomic_write(path, make_parents=make_parents) as f:
        f.write(data)
