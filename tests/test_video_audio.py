"""colorize_video's audio (copied, or re-encoded with its start time kept) and the output errors a user can cause,
on tiny synthetic videos made here with PyAV."""

import os
from fractions import Fraction

import numpy as np
import pytest

av = pytest.importorskip("av")
pytest.importorskip("cv2")

from hyperchroma.video import VideoError, colorize_video  # noqa: E402
from test_video import FPS, decode, film, model_and_keys, mux_frames, write_video  # noqa: E402, F401 (a fixture)


def write_film(path, frames, vcodec="libx264", pix_fmt="yuv420p", audio=None, rate=8000, start=0.0, seconds=1.2,
               tone_from=0.0):
    """A video of ``frames`` (any size) and, with ``audio`` (an encoder name), a mono track of ``seconds`` starting
    ``start`` s after the video: silence, then from ``tone_from`` s into the track a 300 Hz tone."""
    h, w = frames[0].shape[:2]
    with av.open(path, "w") as c:
        v = c.add_stream(vcodec, rate=FPS)
        v.width, v.height, v.pix_fmt = w, h, pix_fmt
        a = None
        if audio:
            a = c.add_stream(audio, rate=rate)
            a.codec_context.layout = "mono"
        mux_frames(c, v, frames)
        if a is not None:
            fmt = a.codec_context.format.name
            n, t0, total = 400, int(round(start * rate)), int(seconds * rate)
            for k in range(0, total, n):
                s = np.arange(k, k + n)
                wave = np.where(s >= tone_from * rate, 0.5 * np.sin(2 * np.pi * 300 * s / rate), 0.0)
                if fmt.startswith("u8"):
                    data = (128 + 100 * wave).astype(np.uint8)[None]
                else:
                    data = (wave * 32767).astype(np.int16)[None]
                af = av.AudioFrame.from_ndarray(data, format=fmt, layout="mono")
                af.sample_rate, af.pts, af.time_base = rate, t0 + k, Fraction(1, rate)
                for p in a.encode(af):
                    c.mux(p)
            for p in a.encode():
                c.mux(p)
    return path


def audio_of(path):
    """(codec name, channels, samples decoded, time of the first sample louder than 0.1) of the first audio
    stream."""
    with av.open(path) as c:
        a = c.streams.audio[0]
        samples, onset = 0, None
        for fr in c.decode(a):
            x = fr.to_ndarray()
            x = x[0, ::x.size // fr.samples] if x.shape[0] == 1 else x[0]  # the first channel, packed or planar
            x = (x - 128.0) / 128 if x.dtype == np.uint8 else x / (32768.0 if x.dtype == np.int16 else 1)
            loud = np.nonzero(np.abs(x) > 0.1)[0]
            if onset is None and len(loud):
                onset = fr.time + loud[0] / fr.sample_rate
            samples += fr.samples
        return a.codec_context.name, a.codec_context.layout.nb_channels, samples, onset


def left(tmp_path, *keep):
    return sorted(set(os.listdir(tmp_path)) - set(keep))


def test_avi_8bit_mono_audio_reencoded_to_aac(tmp_path, model_and_keys):
    """AVI gives its PCM a layout without a channel order ("1 channels"): the AAC encoder gets mono."""
    m, keys, frames = model_and_keys
    src = write_film(str(tmp_path / "in.avi"), frames[:12], vcodec="mpeg4", audio="pcm_u8", tone_from=0.3)
    with av.open(src) as c:
        assert c.streams.audio[0].codec_context.layout.name.endswith("channels")
    dst = str(tmp_path / "out.mp4")
    stats = colorize_video(m, src, dst, keyframes=keys, progress=False)
    assert stats["audio"] == [{"stream": 1, "codec": "pcm_u8", "mode": "aac"}]
    name, channels, samples, onset = audio_of(dst)
    assert (name, channels) == ("aac", 1) and samples >= 0.9 * 1.2 * 8000
    assert abs(onset - audio_of(src)[3]) < 0.03
    assert len(decode(dst)[0]) == 12
    assert left(tmp_path) == ["in.avi", "out.mp4"]


def test_reencoded_audio_keeps_its_start_offset(tmp_path, model_and_keys):
    """A track that starts 0.5 s after the video (pcm_alaw, which mp4 cannot hold) starts there re-encoded too."""
    m, keys, frames = model_and_keys
    src = write_film(str(tmp_path / "in.mov"), frames[:12], audio="pcm_alaw", start=0.5, seconds=0.8)
    assert abs(audio_of(src)[3] - 0.5) < 0.01
    dst = str(tmp_path / "out.mp4")
    stats = colorize_video(m, src, dst, keyframes=keys, progress=False)
    assert stats["audio"][0]["mode"] == "aac"
    _, times = decode(dst)
    name, _, samples, onset = audio_of(dst)
    assert name == "aac" and samples >= 0.9 * 0.8 * 8000
    assert abs((onset - times[0]) - 0.5) < 0.03  # sound starts half a second into the picture, as in the input


@pytest.mark.parametrize("acodec", ["libopus", "flac"])
def test_audio_mov_lists_but_refuses_is_reencoded(tmp_path, model_and_keys, acodec, capsys):
    """mov's muxer lists Opus and FLAC yet refuses them in its header: those tracks are re-encoded to AAC."""
    m, keys, frames = model_and_keys
    src = write_video(str(tmp_path / "in.mkv"), frames[:12], audio=acodec)
    dst = str(tmp_path / "out")
    stats = colorize_video(m, src, dst, keyframes=keys, progress=False, container="mov")
    assert stats["audio"][0]["mode"] == "aac"
    assert "re-encoding it to AAC" in capsys.readouterr().err
    name, _, samples, _ = audio_of(dst)
    assert name == "aac" and samples > 0.9 * 24000 * 12 / FPS
    assert len(decode(dst)[0]) == 12
    assert left(tmp_path) == ["in.mkv", "out"]


def test_webm_gets_its_audio_as_opus(tmp_path, model_and_keys, capsys):
    """webm takes no AAC: an AAC track is re-encoded to Opus (said so on stderr); an Opus one is copied."""
    if "libvpx-vp9" not in av.codecs_available or "libopus" not in av.codecs_available:
        pytest.skip("no VP9 or Opus encoder in this FFmpeg")
    m, keys, frames = model_and_keys
    src = write_video(str(tmp_path / "in.mp4"), frames[:12], audio="aac")
    dst = str(tmp_path / "out.webm")
    stats = colorize_video(m, src, dst, keyframes=keys, progress=False, codec="libvpx-vp9")
    assert stats["audio"] == [{"stream": 1, "codec": "aac", "mode": "opus"}]
    assert "re-encoding it to Opus" in capsys.readouterr().err
    name, _, samples, _ = audio_of(dst)
    assert name in ("opus", "libopus") and samples > 0.9 * 48000 * 12 / FPS
    assert len(decode(dst)[0]) == 12
    src2 = write_video(str(tmp_path / "in.mkv"), frames[:12], audio="libopus")
    stats = colorize_video(m, src2, str(tmp_path / "out2.webm"), keyframes=keys, progress=False, codec="libvpx-vp9")
    assert stats["audio"][0]["mode"] == "copy"
    assert left(tmp_path) == ["in.mkv", "in.mp4", "out.webm", "out2.webm"]


def test_encoder_setup_errors_name_the_encoder_and_odd_sizes_get_a_format_it_takes(tmp_path, model_and_keys):
    m, keys, frames = model_and_keys
    odd = [f[:47, :63] for f in frames[:12]]
    src = write_film(str(tmp_path / "in.mkv"), odd, pix_fmt="yuv444p", audio="flac", rate=24000)
    dst = str(tmp_path / "out.avi")
    colorize_video(m, src, dst, keyframes=keys, progress=False, codec="mpeg4")  # mpeg4 has no yuv444p
    got, _ = decode(dst)
    assert len(got) == 12 and got[0].shape == (47, 63, 3)
    os.remove(dst)
    for codec, pix_fmt in (("mpeg4", "yuv444p"), ("mjpeg", None)):  # one it lacks; one it refuses as limited range
        with pytest.raises(VideoError) as e:
            colorize_video(m, src, dst, keyframes=keys, progress=False, codec=codec, pix_fmt=pix_fmt)
        msg = str(e.value)
        assert msg.startswith(f"cannot encode with {codec!r} at 63x47 ") and "in.mkv" not in msg, msg
        assert "\n" not in msg
    assert left(tmp_path) == ["in.mkv"]


def test_dst_an_existing_folder(tmp_path, model_and_keys):
    m, keys, frames = model_and_keys
    src = write_video(str(tmp_path / "in.mp4"), frames[:6])
    dst = tmp_path / "out.mp4"
    dst.mkdir()
    with pytest.raises(VideoError, match="out.mp4: is a directory"):
        colorize_video(m, src, str(dst), keyframes=keys, progress=False)
    assert left(tmp_path) == ["in.mp4", "out.mp4"] and os.listdir(dst) == []


def test_dst_the_source_itself_is_refused(tmp_path, model_and_keys):
    m, keys, frames = model_and_keys
    src = write_video(str(tmp_path / "in.mp4"), frames[:6])
    with open(src, "rb") as f:
        before = f.read()
    os.symlink(src, tmp_path / "link.mp4")
    for dst in (src, str(tmp_path / "." / "in.mp4"), str(tmp_path / "link.mp4")):
        with pytest.raises(VideoError, match="is the input video itself"):
            colorize_video(m, src, dst, keyframes=keys, progress=False)
    with open(src, "rb") as f:
        assert f.read() == before
    assert left(tmp_path) == ["in.mp4", "link.mp4"]


@pytest.mark.parametrize("codec", ["libvpx-vp9", "libx264"])
def test_crf_sets_the_quality_of_every_encoder_that_has_one(tmp_path, model_and_keys, codec):
    """--crf reached x264 and x265 only: VP9 at crf 4 and at crf 60 wrote the same file."""
    try:
        av.Codec(codec, "w")
    except Exception:  # noqa: BLE001 - an FFmpeg build without it
        pytest.skip(f"no {codec} encoder")
    m, keys, frames = model_and_keys
    src = write_video(str(tmp_path / "in.mp4"), frames[:8], audio=None)
    ext = ".webm" if codec == "libvpx-vp9" else ".mp4"
    sizes = []
    for crf in (4, 50):
        dst = str(tmp_path / f"out{crf}{ext}")
        colorize_video(m, src, dst, keyframes=keys, codec=codec, crf=crf, progress=False)
        sizes.append(os.path.getsize(dst))
    assert sizes[0] > 1.5 * sizes[1]
    with pytest.raises(VideoError, match="crf must be in 0..51"):
        colorize_video(m, src, str(tmp_path / "bad.mp4"), keyframes=keys, codec="libx264", crf=60, progress=False)
    assert not (tmp_path / "bad.mp4").exists()


def test_audio_language_and_title_kept_copied_and_reencoded(tmp_path, model_and_keys):
    """A track's tags (its language above all) were lost with the new stream, copied or re-encoded (FLAC, which
    webm cannot hold, to Opus)."""
    m, keys, frames = model_and_keys
    src = str(tmp_path / "in.mkv")
    with av.open(src, "w") as c:
        v = c.add_stream("libx264", rate=FPS)
        v.width, v.height, v.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        a = c.add_stream("flac", rate=24000)
        a.codec_context.layout = "mono"
        a.metadata.update({"language": "deu", "title": "Kommentar"})
        mux_frames(c, v, frames[:10])
        for i in range(0, 24000, 1000):
            af = av.AudioFrame.from_ndarray(np.zeros((1, 1000), np.int16), format="s16", layout="mono")
            af.sample_rate, af.pts, af.time_base = 24000, i, Fraction(1, 24000)
            for p in a.encode(af):
                c.mux(p)
        for p in a.encode():
            c.mux(p)
    webm = "libvpx-vp9" in av.codecs_available and "libopus" in av.codecs_available
    for dst, codec, mode in ((str(tmp_path / "out.mkv"), "libx264", "copy"),
                             *([(str(tmp_path / "out.webm"), "libvpx-vp9", "opus")] if webm else [])):
        stats = colorize_video(m, src, dst, keyframes=keys, progress=False, codec=codec)
        assert stats["audio"][0]["mode"] == mode
        with av.open(dst) as c:
            tags = c.streams.audio[0].metadata
            assert tags.get("language") == "deu", tags
            if mode == "copy":
                assert tags.get("title") == "Kommentar"
