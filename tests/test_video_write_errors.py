"""colorize_video when the output cannot be written (a full disk, an I/O error, permissions lost mid-run), at every
point: a frame's packets, an audio packet, the encoder's final flush, the trailer, the final rename. The run ends at
once with one error naming the destination and the cause, never the hidden temporary file, and leaves no file.
The failures are injected (a wrapper around the output container PyAV opens), so these runs are fast and
deterministic; a real full disk (a small tmpfs) gives the same errors (see the helper session's report)."""

import errno
import os
import sys
import time

import pytest

av = pytest.importorskip("av")
pytest.importorskip("cv2")

from hyperchroma.cli import main  # noqa: E402
from hyperchroma.video import VideoError, colorize_video  # noqa: E402
from hyperchroma.video import io as vio  # noqa: E402
from test_video import film, model_and_keys, write_video  # noqa: E402, F401 (a fixture)

FULL = "No space left on device"
PROMPT = 20.0  # seconds: the runs below take well under one; the bug waited 60 s for an end marker


def in_flush() -> bool:
    """Whether the caller runs in colorize_video's encoder thread after the engine's last frame (its final
    flush): the last item the encoder took from its queue was the end marker."""
    f = sys._getframe(1)
    while f is not None:
        if f.f_code.co_name == "encoder":
            return f.f_locals.get("item") is vio._END
        f = f.f_back
    return False


class _Failing:
    """The output container, whose writes fail as a full disk's do (PyAV's OSError, naming the file written)
    once ``fail(packet)`` says so; ``trailer``: its close writes the file, then fails."""

    def __init__(self, real, fail=None, trailer=False):
        self._real, self._fail, self._trailer = real, fail, trailer
        self.failed = []  # (packet's stream type, in the final flush) of the failed write

    def __getattr__(self, name):
        return getattr(self._real, name)

    def _full(self):
        return av.error.OSError(errno.ENOSPC, FULL, self._real.name)

    def mux(self, packet):
        if self._fail is not None and not self.failed and self._fail(packet):
            self.failed.append((packet.stream.type, in_flush()))
            raise self._full()
        self._real.mux(packet)

    def close(self):
        self._real.close()
        if self._trailer:
            self.failed.append(("trailer", False))
            raise self._full()


def failing_output(monkeypatch, **kw):
    """av.open gives colorize_video's output (the temporary ``.part`` file) a :class:`_Failing` wrapper."""
    real_open = av.open
    made = []

    def fake_open(file, mode="r", *a, **k):
        c = real_open(file, mode, *a, **k)
        if mode == "w" and isinstance(file, str) and ".part" in os.path.basename(file):
            c = _Failing(c, **kw)
            made.append(c)
        return c

    monkeypatch.setattr(vio.av, "open", fake_open)
    return made


def nth(kind, n):
    """fail(packet) for the n-th packet (1-based) of streams of type ``kind``."""
    seen = [0]

    def fail(packet):
        if packet.stream.type != kind:
            return False
        seen[0] += 1
        return seen[0] >= n
    return fail


def video_in_flush(packet):
    return packet.stream.type == "video" and in_flush()


def run_failing(m, keys, src, dst, **kw):
    t0 = time.perf_counter()
    with pytest.raises(VideoError) as e:
        colorize_video(m, src, dst, keyframes=keys, progress=False, **kw)
    return str(e.value), time.perf_counter() - t0


@pytest.mark.parametrize("where", ["mid-film", "flush", "audio", "header", "trailer"])
def test_write_error_ends_the_run_at_once_naming_the_destination(tmp_path, model_and_keys, monkeypatch, where):
    m, keys, frames = model_and_keys
    src = write_video(str(tmp_path / "in.mp4"), frames)
    dst = str(tmp_path / "out.mp4")
    kw = {}
    if where == "mid-film":  # x264 ultrafast has no look-ahead: packets come out as the frames go in
        made, kw = failing_output(monkeypatch, fail=nth("video", 3)), {"preset": "ultrafast"}
    elif where == "flush":  # x264's default look-ahead holds this whole small film for its final flush
        made = failing_output(monkeypatch, fail=video_in_flush)
    elif where == "audio":  # copied by the decoder thread: a write error, not a damaged input
        made = failing_output(monkeypatch, fail=nth("audio", 2))
    elif where == "header":  # written with the first packet
        made = failing_output(monkeypatch, fail=lambda p: True)
    else:
        made = failing_output(monkeypatch, trailer=True)
    message, took = run_failing(m, keys, src, dst, **kw)
    assert message == f"cannot write {dst}: {FULL}"
    assert took < PROMPT, f"the run took {took:.1f} s to fail"
    assert len(made) == 1 and len(made[0].failed) == 1
    kind, flushing = made[0].failed[0]
    assert kind == {"mid-film": "video", "flush": "video", "audio": "audio", "trailer": "trailer"}.get(where, kind)
    assert flushing == (where == "flush")  # the failure was injected where the test says
    assert sorted(os.listdir(tmp_path)) == ["in.mp4"]  # neither the output nor the temporary file


def test_write_error_stops_the_engine_too(tmp_path, model_and_keys, monkeypatch):
    """After the encoder's failure the engine colorizes no more than the frames already under way (the queues'
    depth), not the rest of the film."""
    m, keys, frames = model_and_keys
    n = 300
    src = write_video(str(tmp_path / "in.mp4"), [frames[t % len(frames)] for t in range(n)], audio=None)
    pushed = [0]
    real = vio.FilmEngine.push

    def push(self, gray):
        pushed[0] += 1
        return real(self, gray)

    monkeypatch.setattr(vio.FilmEngine, "push", push)
    failing_output(monkeypatch, fail=nth("video", 3))
    message, took = run_failing(m, keys, src, str(tmp_path / "out.mkv"), preset="ultrafast")
    assert message.endswith(FULL) and took < PROMPT
    assert pushed[0] < n // 2, pushed[0]
    assert sorted(os.listdir(tmp_path)) == ["in.mp4"]


def test_lost_permission_at_the_final_rename(tmp_path, model_and_keys, monkeypatch):
    m, keys, frames = model_and_keys
    src = write_video(str(tmp_path / "in.mp4"), frames[:8])
    dst = str(tmp_path / "out.mp4")
    real = os.replace

    def replace(a, b, *k, **kw):
        if ".part" in os.path.basename(os.fspath(a)):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(a))
        return real(a, b, *k, **kw)

    monkeypatch.setattr(vio.os, "replace", replace)
    message, _ = run_failing(m, keys, src, dst)
    assert message == f"cannot write {dst}: Permission denied"
    assert sorted(os.listdir(tmp_path)) == ["in.mp4"]


def test_cli_write_error_one_line_exit_1(tmp_path, model_and_keys, monkeypatch, capsys):
    m, keys, frames = model_and_keys
    model = tmp_path / "m.hyc"
    m.save(str(model))
    src = write_video(str(tmp_path / "film.avi"), frames)
    out = tmp_path / "out"
    failing_output(monkeypatch, fail=video_in_flush)
    t0 = time.perf_counter()
    assert main(["colorize", src, "-m", str(model), "-o", str(out), "-q"]) == 1
    assert time.perf_counter() - t0 < PROMPT
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"hyperchroma colorize: error: cannot write {os.path.join(str(out), 'film.mp4')}: {FULL}"]
    assert os.listdir(out) == []
