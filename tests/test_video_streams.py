"""colorize_video and what the container holds besides the picture, and what it declares: a truncated input refused
(one VideoError, no file at dst), an intact one of the same kind accepted; subtitle and attachment streams copied
packet for packet, or dropped, said once on stderr. On tiny synthetic videos made here with PyAV."""

import os
from fractions import Fraction

import numpy as np
import pytest

av = pytest.importorskip("av")
pytest.importorskip("cv2")

from hyperchroma.video import VideoError, colorize_video  # noqa: E402
from hyperchroma.video import io as vio  # noqa: E402
from test_video import FPS, H, W, decode, film, model_and_keys, mux_frames  # noqa: E402, F401 (a fixture)

N_LONG = 40  # 4 s at FPS: a cut to 80 % of the bytes loses most of a second


def left(tmp_path, *keep):
    return sorted(set(os.listdir(tmp_path)) - set(keep))


def has(codec):
    try:
        av.Codec(codec, "w")
        return True
    except Exception:  # noqa: BLE001 - an FFmpeg build without it
        return False


def write(path, frames, vcodec="libx264", audio="aac", options=None, fmt=None, subtitle=None, font=None):
    """A video of ``frames``; with ``audio`` (an encoder) a mono tone as long as the picture; with ``subtitle``
    (subrip, ass, mov_text) three cues; with ``font`` (bytes) an attachment. ``options``: the muxer's."""
    with av.open(path, "w", format=fmt, options=options or {}) as c:
        v = c.add_stream(vcodec, rate=FPS)
        v.width, v.height, v.pix_fmt = W, H, "yuv420p"
        a = None
        if audio:
            a = c.add_stream(audio, rate=24000)
            a.codec_context.layout = "mono"
        s = c.add_mux_stream(subtitle) if subtitle else None  # pre-encoded packets: no encoder to open
        if s is not None:
            s.time_base = Fraction(1, 1000)
            s.metadata["language"] = "fra"
        if font is not None:
            c.add_attachment("font.ttf", "application/x-truetype-font", font)
        mux_frames(c, v, frames)
        if a is not None:
            fmt_a = a.codec_context.format.name
            total = int(24000 * len(frames) / FPS)
            for i in range(0, total, 960):
                wave = 0.3 * np.sin(2 * np.pi * 440 * np.arange(i, i + 960) / 24000)
                if fmt_a.startswith("s16"):
                    af = av.AudioFrame.from_ndarray((wave * 32767).astype(np.int16)[None], format="s16", layout="mono")
                else:
                    af = av.AudioFrame.from_ndarray(wave.astype(np.float32)[None], format="fltp", layout="mono")
                af.sample_rate, af.pts, af.time_base = 24000, i, Fraction(1, 24000)
                for p in a.encode(af):
                    c.mux(p)
            for p in a.encode():
                c.mux(p)
        for k in range(3) if s is not None else ():
            text = f"cue {k}: ça va".encode()
            if subtitle == "mov_text":
                text = len(text).to_bytes(2, "big") + text
            p = av.Packet(text)
            p.stream, p.time_base = s, Fraction(1, 1000)
            p.pts = p.dts = 300 + 700 * k
            p.duration = 500
            c.mux(p)
    return path


def truncate(path, fraction=0.8):
    with open(path, "rb") as f:
        data = f.read()
    n = int(len(data) * fraction)
    if n % 188 == 0:  # an MPEG-TS cut on a packet's edge cannot be told from an intact file (see below)
        n -= 1
    with open(path, "wb") as f:
        f.write(data[:n])
    return path


def packets(path, kind):
    """(bytes, start s, duration s) of the packets of the first stream of ``kind``."""
    with av.open(path) as c:
        streams = getattr(c.streams, kind)
        if not streams:
            return []
        return [(bytes(p), float(p.pts * p.time_base), float(p.duration * p.time_base))
                for p in c.demux(streams[0]) if p.size]


#: (file name, video encoder, audio encoder, muxer options): each container that declares its length, or (MPEG-TS)
#: whose packets show a cut.
KINDS = {
    "mkv": ("in.mkv", "libx264", "aac", None),
    "webm": ("in.webm", "libvpx-vp9", "libopus", None),
    "avi": ("in.avi", "mpeg4", "mp2", None),
    "ts": ("in.ts", "libx264", "mp2", None),
    "mp4_faststart": ("in.mp4", "libx264", "aac", {"movflags": "+faststart"}),
    "mp4_fragmented": ("in.mp4", "libx264", "aac", {"movflags": "frag_keyframe+empty_moov"}),
    "mov_faststart": ("in.mov", "libx264", "aac", {"movflags": "+faststart"}),
}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_truncated_input_refused_intact_one_accepted(tmp_path, model_and_keys, kind, monkeypatch):
    """A file cut to 80 % of its bytes decoded as far as it went and gave a shorter film, reported a success."""
    name, vcodec, acodec, options = KINDS[kind]
    if not (has(vcodec) and has(acodec)):
        pytest.skip(f"no {vcodec} or {acodec} encoder in this FFmpeg")
    m, keys, _ = model_and_keys
    frames = film(N_LONG)
    src = write(str(tmp_path / name), frames, vcodec=vcodec, audio=acodec, options=options)
    dst = str(tmp_path / "out.mkv")
    stats = colorize_video(m, src, dst, keyframes=keys, progress=False)  # intact: accepted, whole
    assert stats["frames"] == N_LONG and len(decode(dst)[0]) == N_LONG
    os.remove(dst)
    truncate(src)

    def push(self, gray):  # the locating pass refuses it before any frame is colorized
        raise AssertionError("a truncated file reached the colorizing")

    with monkeypatch.context() as mp:
        mp.setattr(vio.FilmEngine, "push", push)
        with pytest.raises(VideoError) as e:
            colorize_video(m, src, dst, keyframes=keys, progress=False)
    msg = str(e.value)
    assert isinstance(e.value, ValueError) and msg.startswith(f"{src}: truncated or damaged: ") and "\n" not in msg
    assert left(tmp_path) == [name]  # no output, no temporary file
    with pytest.raises(VideoError, match="truncated or damaged"):  # without a locating pass: at the decoding's end
        colorize_video(m, src, dst, keyframes=keys, progress=False, locate=False)
    assert left(tmp_path) == [name]


def test_truncation_message_says_what_was_found(tmp_path, model_and_keys):
    """Cut on a sample's edge (no packet cut short): 10 of 40 frames left out, told from the sample tables."""
    m, keys, _ = model_and_keys
    src = write(str(tmp_path / "in.mov"), film(N_LONG), vcodec="mpeg4", audio=None, options={"movflags": "+faststart"})
    with av.open(src) as c:
        ends = sorted(p.pos + p.size for p in c.demux(video=0) if p.size)
    with open(src, "rb") as f:
        data = f.read()
    with open(src, "wb") as f:
        f.write(data[:ends[29]])
    with pytest.raises(VideoError) as e:
        colorize_video(m, src, str(tmp_path / "out.mp4"), keyframes=keys, progress=False)
    assert str(e.value) == (f"{src}: truncated or damaged: the video stream ends at 3.0 s of its declared 4.0 s "
                            f"(30 of 40 frames)")
    assert left(tmp_path) == ["in.mov"]


def test_mpegts_cut_on_a_packet_edge_is_not_told(tmp_path, model_and_keys):
    """MPEG-TS declares no length; a cut inside one of its 188-byte packets is told, one on a packet's edge is not
    (what is left is a whole, shorter stream): documented here, not hidden."""
    m, keys, _ = model_and_keys
    src = write(str(tmp_path / "in.ts"), film(N_LONG), audio=None)
    with open(src, "rb") as f:
        data = f.read()
    assert len(data) % 188 == 0
    with open(src, "wb") as f:
        f.write(data[:len(data) * 4 // 5 // 188 * 188])
    stats = colorize_video(m, src, str(tmp_path / "out.mkv"), keyframes=keys, progress=False)
    assert 0 < stats["frames"] < N_LONG


def test_audio_longer_than_the_picture_is_not_a_truncation(tmp_path, model_and_keys):
    """Each stream is held against its own declared length: a track running 2 s past the picture is intact."""
    m, keys, frames = model_and_keys
    src = str(tmp_path / "in.mp4")
    with av.open(src, "w") as c:
        v = c.add_stream("libx264", rate=FPS)
        v.width, v.height, v.pix_fmt = W, H, "yuv420p"
        a = c.add_stream("aac", rate=24000)
        a.codec_context.layout = "mono"
        mux_frames(c, v, frames[:10])
        for i in range(0, 24000 * 3, 1024):
            af = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            af.sample_rate, af.pts, af.time_base = 24000, i, Fraction(1, 24000)
            for p in a.encode(af):
                c.mux(p)
        for p in a.encode():
            c.mux(p)
    stats = colorize_video(m, src, str(tmp_path / "out.mp4"), keyframes=keys, progress=False)
    assert stats["frames"] == 10 and stats["audio"][0]["mode"] == "copy"


def test_subtitles_and_fonts_copied_mkv_to_mkv(tmp_path, model_and_keys, capsys):
    """Subtitle streams were dropped: they are copied packet for packet with their timestamps, their language kept,
    an attachment (a font) with them; the picture's frames and timestamps are as without them."""
    m, keys, frames = model_and_keys
    font = bytes(range(256)) * 4
    src = write(str(tmp_path / "in.mkv"), frames[:20], subtitle="subrip", font=font)
    dst = str(tmp_path / "out.mkv")
    stats = colorize_video(m, src, dst, keyframes=keys, progress=False)
    assert [(s["stream"], s["mode"]) for s in stats["subtitles"]] == [(2, "copy")]
    assert stats["subtitles"][0]["codec"] in ("subrip", "srt")
    assert stats["other"] == [{"stream": 3, "type": "attachment", "codec": None, "mode": "copy"}]
    assert "subtitle" not in capsys.readouterr().err
    want = packets(src, "subtitles")
    assert len(want) == 3 and want[0] == ("cue 0: ça va".encode(), 0.3, 0.5)
    assert packets(dst, "subtitles") == want
    with av.open(dst) as c:
        assert c.streams.subtitles[0].metadata.get("language") == "fra"
        att = [s for s in c.streams if s.type == "attachment"]
        assert len(att) == 1 and att[0].data == font and att[0].metadata.get("filename") == "font.ttf"
    got, times = decode(dst)
    assert len(got) == 20 and times == decode(src)[1]
    assert left(tmp_path) == ["in.mkv", "out.mkv"]


def test_mov_text_copied_mp4_to_mp4_and_ass_mkv_to_mkv(tmp_path, model_and_keys):
    m, keys, frames = model_and_keys
    for name, sub, out in (("in.mp4", "mov_text", "out.mp4"), ("in.mkv", "ass", "out.mkv")):
        src = write(str(tmp_path / name), frames[:20], audio=None, subtitle=sub)
        dst = str(tmp_path / out)
        stats = colorize_video(m, src, dst, keyframes=keys, progress=False)
        assert [s["mode"] for s in stats["subtitles"]] == ["copy"]
        want = packets(src, "subtitles")
        assert len([p for p in want if len(p[0]) > 2]) == 3  # mp4 adds empty cues for the gaps; copied too
        assert packets(dst, "subtitles") == want
        assert len(decode(dst)[0]) == 20


def test_subtitle_the_container_cannot_hold_dropped_said_once(tmp_path, model_and_keys, capsys):
    """subrip into MP4 (which has only mov_text), and the font with it: dropped, each said once on stderr."""
    m, keys, frames = model_and_keys
    src = write(str(tmp_path / "in.mkv"), frames[:20], subtitle="subrip", font=b"font")
    dst = str(tmp_path / "out.mp4")
    stats = colorize_video(m, src, dst, keyframes=keys, progress=False)
    assert [s["mode"] for s in stats["subtitles"]] == ["dropped"]
    assert [s["mode"] for s in stats["other"]] == ["dropped"]
    err = capsys.readouterr().err
    assert err.count("subtitle stream 2 (") == 1 and "cannot go into this container; dropping it" in err
    assert err.count("attachment stream 3 (") == 1
    with av.open(dst) as c:
        assert [s.type for s in c.streams] == ["video", "audio"]
    assert len(decode(dst)[0]) == 20
    assert left(tmp_path) == ["in.mkv", "out.mp4"]


def test_timecode_track_dropped_said_once(tmp_path, model_and_keys, capsys):
    """A copied timecode track made mov's trailer fail (no frame rate), which would lose the whole film: dropped."""
    m, keys, frames = model_and_keys
    src = str(tmp_path / "in.mov")
    with av.open(src, "w") as c:
        v = c.add_stream("libx264", rate=FPS)
        v.width, v.height, v.pix_fmt = W, H, "yuv420p"
        v.metadata["timecode"] = "01:00:00:00"
        mux_frames(c, v, frames[:10])
    with av.open(src) as c:
        if not c.streams.data:
            pytest.skip("this FFmpeg writes no timecode track")
    dst = str(tmp_path / "out.mov")
    stats = colorize_video(m, src, dst, keyframes=keys, progress=False)
    assert stats["other"] == [{"stream": 1, "type": "data", "codec": None, "mode": "dropped"}]
    assert capsys.readouterr().err.count("data stream 1 (") == 1
    assert len(decode(dst)[0]) == 10


def test_truncated_file_with_subtitles_refused_no_file(tmp_path, model_and_keys):
    m, keys, _ = model_and_keys
    src = truncate(write(str(tmp_path / "in.mkv"), film(N_LONG), subtitle="subrip", font=b"font"))
    with pytest.raises(VideoError, match="truncated or damaged"):
        colorize_video(m, src, str(tmp_path / "out.mkv"), keyframes=keys, progress=False)
    assert left(tmp_path) == ["in.mkv"]
