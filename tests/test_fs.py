"""Atomic writes leave no temporary files behind: not on errors, not on SIGTERM, and not after a SIGKILL
(the next write into the folder removes a dead writer's temporary file, and only ours)."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from hyperchroma import _fs

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and pids")

_WRITER = textwrap.dedent("""
    import sys, time
    from hyperchroma._fs import atomic_write
    with atomic_write(sys.argv[1]) as f:
        chunk = b"x" * (1 << 20)
        f.write(chunk)
        print("writing", flush=True)
        while True:  # a big write that never ends: the parent stops it
            f.write(chunk)
            f.seek(0)
            time.sleep(0.01)
""")


def _env():
    env = dict(os.environ)
    pkg = os.path.dirname(os.path.dirname(_fs.__file__))
    env["PYTHONPATH"] = pkg + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _start_writer(target):
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(target)], stdout=subprocess.PIPE, env=_env())
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == b"writing"
    return proc


def test_sigterm_during_a_write_leaves_nothing(tmp_path):
    target = tmp_path / "big.bin"
    proc = _start_writer(target)
    assert [n for n in os.listdir(tmp_path) if n.startswith(".hyperchroma-")]  # the write is under way
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == -signal.SIGTERM  # it still dies by the signal, as it would have
    proc.stdout.close()
    assert os.listdir(tmp_path) == []


def test_sigterm_handler_is_installed_only_while_writing(tmp_path):
    before = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        with _fs.atomic_write(tmp_path / "a.bin") as f:
            assert signal.getsignal(signal.SIGTERM) is _fs._on_sigterm
            with _fs.atomic_write(tmp_path / "c.bin") as g:  # nested: still ours, restored once at the end
                g.write(b"2")
            assert signal.getsignal(signal.SIGTERM) is _fs._on_sigterm
            f.write(b"1")
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
        with pytest.raises(RuntimeError):
            with _fs.atomic_write(tmp_path / "b.bin"):
                raise RuntimeError("boom")
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
        assert sorted(os.listdir(tmp_path)) == ["a.bin", "c.bin"]
    finally:
        signal.signal(signal.SIGTERM, before)


def test_a_programs_own_sigterm_handler_is_kept_and_its_exit_cleans_up(tmp_path):
    def handler(signum, frame):
        raise SystemExit(3)

    before = signal.signal(signal.SIGTERM, handler)
    try:
        with pytest.raises(SystemExit):
            with _fs.atomic_write(tmp_path / "a.bin") as f:
                assert signal.getsignal(signal.SIGTERM) is handler
                f.write(b"1")
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)  # the handler runs (and raises) before this ends
        assert os.listdir(tmp_path) == []
        assert signal.getsignal(signal.SIGTERM) is handler
    finally:
        signal.signal(signal.SIGTERM, before)


def test_a_killed_writers_temp_file_is_removed_by_the_next_write(tmp_path):
    target = tmp_path / "big.bin"
    proc = _start_writer(target)
    proc.kill()  # SIGKILL: no handler runs, the temporary file stays
    proc.wait(timeout=60)
    proc.stdout.close()
    left = [n for n in os.listdir(tmp_path) if n.startswith(".hyperchroma-")]
    assert len(left) == 1 and f"-{proc.pid}-" in left[0]
    _fs.write_bytes(tmp_path / "other.bin", b"next")
    assert os.listdir(tmp_path) == ["other.bin"]


def test_only_our_stale_temp_files_are_removed(tmp_path):
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        names = {
            f".hyperchroma-{live.pid}-abcd1234.tmp": True,       # a live writer's, fresh: kept
            f".hyperchroma-{dead.pid}-abcd1234.tmp.mp4": False,  # its writer is dead: removed
            f".hyperchroma-{live.pid}-old12345.tmp": False,      # untouched for an hour: removed
            ".hyperchroma-k2j4h5g6.tmp": True,                   # an earlier version's, fresh: kept
            ".hyperchroma-q9w8e7r6.tmp": False,                  # an earlier version's, old: removed
            "notes.tmp": True, ".hyperchroma-notes.txt": True,   # not ours
        }
        for n in names:
            (tmp_path / n).write_bytes(b"partial")
        hour_ago = time.time() - 3600
        for n in (f".hyperchroma-{live.pid}-old12345.tmp", ".hyperchroma-q9w8e7r6.tmp", "notes.tmp"):
            os.utime(tmp_path / n, (hour_ago, hour_ago))
        (tmp_path / f".hyperchroma-{dead.pid}-dir12345.tmp").mkdir()  # not a regular file: kept
        _fs.write_bytes(tmp_path / "out.bin", b"data")
        kept = {n for n, keep in names.items() if keep} | {"out.bin", f".hyperchroma-{dead.pid}-dir12345.tmp"}
        assert set(os.listdir(tmp_path)) == kept
    finally:
        live.kill()
        live.wait()


def test_unwritable_folder_message_names_the_folder_not_the_temp_file(tmp_path, monkeypatch):
    def denied(*a, **k):
        raise PermissionError(13, "Permission denied", str(tmp_path / ".hyperchroma-123-abcdefgh.tmp"))

    monkeypatch.setattr(_fs.tempfile, "mkstemp", denied)
    with pytest.raises(PermissionError) as e:
        _fs.write_bytes(tmp_path / "x.bin", b"1")
    msg = str(e.value)
    assert str(tmp_path) in msg and "permission denied" in msg
    assert ".hyperchroma-" not in msg and "Errno" not in msg


def test_a_folder_is_swept_once_not_before_every_write(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(_fs, "remove_stale_temps", lambda folder, now=None: calls.append(folder) or [])
    for i in range(20):
        _fs.write_bytes(tmp_path / f"{i}.bin", b"x")
    assert calls == [os.path.abspath(tmp_path)]
