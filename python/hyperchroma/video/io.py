"""colorize_video: decode with PyAV, colorize with the film engine, encode; audio, subtitles, timing and size kept.

Three threads overlap: the demuxer/decoder (which also copies or re-encodes the audio, and copies the subtitles),
the film engine (the calling thread) and the composer/encoder; the engine hands each frame to the encoder as soon
as it is colored (a keyframe releases a whole segment of held frames, which would otherwise reach the encoder only
once all of them were done, leaving one core idle meanwhile). The output is written to a hidden temporary file beside
``dst`` and renamed onto it only when everything succeeded, so a failure never leaves a partial file. A truncated
input, which FFmpeg decodes as far as it goes (only logging it), is told by what the demuxer delivered falling
short of what the container declares (:class:`_Delivered`), and refused.

A write that fails (a full disk, an I/O error, a folder whose permissions changed), in a frame's packets, in the
encoder's final flush, in the trailer or in the final rename, ends the run at once: each thread stops on its
own without waiting for the others, the temporary file is removed and the error names ``dst`` and the cause
(:func:`_write_error`), never the temporary file.
"""

from __future__ import annotations

import collections
import heapq
import io
import os
import queue
import sys
import tempfile
import threading
import time
from fractions import Fraction
from typing import Any, Dict, Iterator, Optional, Sequence

import av
import numpy as np

from .._fs import FILE_MODE
from . import keyframes as kf
from .film import FilmEngine, FilmOptions, compose

_END = object()
_QUEUE = 16  # frames in flight between two threads
REORDER = 16  # decoded frames whose timestamps are sorted among themselves (decode-order guesses; see decoder)


class VideoError(ValueError):
    """A video that cannot be read, or an output that cannot be written."""


class WriteError(VideoError):
    """The output could not be written (a full disk, an I/O error, permissions changed while running)."""


def _write_error(dst, e: BaseException) -> WriteError:
    """``cannot write DST: CAUSE`` in one line: the user's destination, never the hidden temporary file the
    system's message names (``[Errno 28] No space left on device: '.film.mp4.x1y2.part.mp4'``)."""
    why = getattr(e, "strerror", None) or str(e) or type(e).__name__
    return WriteError(f"cannot write {os.fspath(dst)}: {why}")


class _Abandoned(Exception):
    """Raised into the film engine by its result callback once the encoder has failed: no more work."""


def _error(src, e: BaseException) -> VideoError:
    return VideoError(f"{src}: not a readable video ({type(e).__name__}: {e})")


def open_input(src):
    """(container, video stream) of a readable video file, or VideoError."""
    path = os.fspath(src)
    if not os.path.isfile(path):
        raise VideoError(f"{path}: no such file")
    try:
        container = av.open(path)
    except (av.FFmpegError, OSError, UnicodeDecodeError) as e:
        raise _error(path, e) from None
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["no"]
        container.close()
        raise VideoError(f"{path}: has no video stream ({', '.join(kinds)} streams only)")
    return container, container.streams.video[0]


def _temp_beside(dst: str, container: Optional[str]) -> str:
    folder = os.path.dirname(os.path.abspath(dst)) or "."
    if not os.path.isdir(folder):
        raise VideoError(f"{dst}: output folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise VideoError(f"{dst}: output folder {folder} is not writable")
    name = os.path.basename(dst)
    ext = os.path.splitext(name)[1]
    if not ext and container is None:
        raise VideoError(f"{dst}: no file extension; pass container= (e.g. 'mp4')")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=f".part{ext}", dir=folder)
    except OSError as e:
        raise VideoError(f"{dst}: cannot write in {folder} ({e})") from None
    os.close(fd)
    return tmp


def _codec_name(stream) -> Optional[str]:
    """The codec's name; None for a stream without a codec context (an attachment, most data streams)."""
    cc = stream.codec_context
    return cc.name if cc is not None else None


def _can_copy(out, stream) -> bool:
    """Whether ``out`` takes the packets of ``stream`` as they are: its muxer lists the codec, and writes a header
    and a trailer with it (some list a codec they then refuse, as mov does Opus and FLAC; tried on an empty
    in-memory file)."""
    name = _codec_name(stream)
    if name is not None and name not in out.supported_codecs:
        return False
    probe = av.open(io.BytesIO(), "w", format=out.format.name)
    try:
        probe.add_stream_from_template(stream)
        probe.start_encoding()
    except (av.FFmpegError, ValueError, TypeError):
        try:
            probe.close()
        except Exception:  # noqa: BLE001 - a failed probe's trailer
            pass
        return False
    try:
        probe.close()
    except (av.FFmpegError, ValueError, TypeError):
        return False
    return True


class _Audio:
    """One input audio stream going out: packets copied, or decoded and re-encoded (to AAC, or to Opus where the
    container takes no AAC, as webm), keeping its start time."""

    def __init__(self, out, stream):
        self.src = stream
        self.copy = _can_copy(out, stream)
        if self.copy:
            self.dst = out.add_stream_from_template(stream)
            _copy_tags(stream, self.dst)
            self.mode = "copy"
            return
        sc = out.supported_codecs
        name = "aac" if "aac" in sc or "libopus" not in sc else "libopus"
        codec = av.Codec(name, "w")
        cc = stream.codec_context
        rate = cc.sample_rate or 48000
        if codec.audio_rates and rate not in codec.audio_rates:
            rate = min((r for r in codec.audio_rates if r >= rate), default=max(codec.audio_rates))
        n = (cc.layout.nb_channels if cc.layout else 0) or 2
        layout = cc.layout.name if cc.layout else ""
        if not layout or layout.endswith("channels"):  # no channel order (AVI's "1 channels"): n's default layout
            layout = f"{n}c"
        fmts = [f.name for f in codec.audio_formats or ()]
        fmt = next((f for f in ("fltp", "flt") if f in fmts), fmts[0] if fmts else "fltp")
        self.dst = out.add_stream(name, rate=rate)
        _copy_tags(stream, self.dst, encoded=True)
        self.dst.codec_context.layout = layout
        self.dst.codec_context.format = fmt
        self.rate, self.origin, self.written = rate, None, 0
        self.resampler = av.AudioResampler(format=fmt, layout=layout, rate=rate)
        self.fifo = av.AudioFifo()
        self.mode = "aac" if name == "aac" else "opus"
        print(f"hyperchroma: audio stream {stream.index} ({cc.name}) cannot go into this container as is; "
              f"re-encoding it to {'AAC' if name == 'aac' else 'Opus'}", file=sys.stderr)

    def packets(self, packet):
        if self.copy:
            if packet.dts is None:
                return []
            packet.stream = self.dst
            return [packet]
        out = []
        for frame in packet.decode():
            out += self._encode(frame)
        return out

    def _encode(self, frame):
        if self.origin is None:  # the first frame's start, in samples at the output rate: the stream's offset
            t = frame.pts * frame.time_base if frame.pts is not None and frame.time_base else 0
            self.origin = int(round(t * self.rate))
        for f in self.resampler.resample(frame):
            f.pts = None
            self.fifo.write(f)
        out = []
        size = self.dst.codec_context.frame_size or 1024
        while self.fifo.samples >= size:
            out += self._send(self.fifo.read(size))
        return out

    def _send(self, frame):
        frame.pts, frame.time_base = (self.origin or 0) + self.written, Fraction(1, self.rate)
        self.written += frame.samples
        return self.dst.encode(frame)

    def flush(self):
        if self.copy:
            return []
        out = []  # the decoder was drained by the demuxer's final empty packet
        for f in self.resampler.resample(None):
            f.pts = None
            self.fifo.write(f)
        if self.fifo.samples:
            out += self._send(self.fifo.read())
        return out + list(self.dst.encode(None))


class _Kept:
    """One input subtitle or attachment stream going out as it is: its packets copied with their timestamps (an
    attachment, as an MKV's fonts, has none: it goes out whole with the header), or, where the output container
    cannot hold its codec (subrip in MP4, mov_text in MKV, any subtitle in AVI), dropped, said once on stderr.
    A data stream (a timecode track, ...) is dropped, said so: a muxer's trial with an empty stream does not tell
    whether it takes one (mov writes the header and trailer of an empty copied timecode track, then fails the
    trailer of a real one for want of a frame rate, which would lose the whole film)."""

    def __init__(self, out, stream):
        self.src = stream
        copy = stream.type != "data" and _can_copy(out, stream)
        self.dst = out.add_stream_from_template(stream) if copy else None
        self.mode = "copy" if self.dst is not None else "dropped"
        if self.dst is not None:
            _copy_tags(stream, self.dst)
        # an empty mov_text cue (its 2-byte length, 0) fills a gap; the mov muxer writes its own for every gap
        self.gaps = _codec_name(stream) == "mov_text" and out.format.name in ("mp4", "mov")
        if self.dst is None:
            why = "is not copied (timecode and other data tracks)" if stream.type == "data" else \
                "cannot go into this container"
            print(f"hyperchroma: {stream.type} stream {stream.index} ({_codec_name(stream) or 'no codec'}) {why}; "
                  f"dropping it", file=sys.stderr)

    def packets(self, packet):
        if self.dst is None or (packet.pts is None and packet.dts is None):  # the demuxer's final empty packet
            return []
        if self.gaps and bytes(packet) == b"\0\0":
            return []
        if packet.dts is None:  # a sparse stream is never reordered
            packet.dts = packet.pts
        packet.stream = self.dst
        return [packet]


#: Stream tags the muxer writes itself, from the packets (Matroska's statistics: mkvmerge's and FFmpeg's).
_STATISTICS = ("DURATION", "NUMBER_OF_FRAMES", "NUMBER_OF_BYTES", "BPS", "_STATISTICS_")


def _copy_tags(src, dst, encoded: bool = False) -> None:
    """The stream's tags (language, title, an attachment's file name, ...) and flags (default, forced, ...), which
    a new stream lacks, even one made from a template; not the statistics of its packets, nor (``encoded``:
    re-encoded) the name of its encoder."""
    for key, value in src.metadata.items():
        k = key.upper()
        if not k.startswith(_STATISTICS) and not (encoded and k == "ENCODER"):
            dst.metadata[key] = value
    dst.disposition = src.disposition


#: Seconds a stream may end short of its declared length without being called truncated, besides a thousandth of
#: that length and two of its longest packets or gaps between packets (an audio encoder's priming and padding; a
#: last frame without a duration of its own, held as long as a still of a variable-rate film).
_SLACK = 0.05


def _tag(stream, name: str) -> Optional[str]:
    """A Matroska statistics tag (DURATION, NUMBER_OF_FRAMES), also as mkvmerge names it with a language."""
    for key, value in stream.metadata.items():
        k = key.upper()
        if k == name or k.startswith(name + "-"):
            return value
    return None


def _declared(inp, stream):
    """(end in seconds, frames or None) that the container declares for ``stream`` apart from what the demuxer
    reads, or None where it declares nothing one can trust:
    MP4/MOV: the sample tables (FFmpeg keeps the stream's duration within their sum), or a fragmented file's
    header; Matroska/WebM: the per-track DURATION tag FFmpeg and mkvmerge write (within the segment's duration,
    which the muxer also writes last, so a stale tag counts for no more); AVI: the video header's length, in
    frame periods (dropped frames are periods without a packet, so no frame count). Elsewhere (MPEG-TS, FLV, Ogg,
    ...) FFmpeg's durations are estimated from the file itself, or its bit rate: nothing to hold it against."""
    fmt = inp.format.name.split(",")
    tb = stream.time_base
    if tb is None:
        return None
    # the end is the start plus the duration, or (a fragmented MP4's sidx) the duration itself: the earlier one
    start = min(stream.start_time or 0, 0)
    if "mov" in fmt:
        if stream.duration and stream.duration > 0:
            return float((start + stream.duration) * tb), stream.frames or None
    elif "matroska" in fmt:
        tag = _tag(stream, "DURATION")
        try:
            h, m, sec = tag.split(":") if tag else ("", "", "")
            end = int(h) * 3600 + int(m) * 60 + float(sec)
        except ValueError:
            return None
        if inp.duration:
            end = min(end, inp.duration / av.time_base)
        n = _tag(stream, "NUMBER_OF_FRAMES")
        return end, int(n) if n and n.isdigit() else None
    elif "avi" in fmt and stream.type == "video" and stream.frames:
        return float((start + stream.frames) * tb), None
    return None


class _Delivered:
    """What the demuxer delivered of each video and audio stream (packets, end, longest packet, whether the
    last one was cut short), to hold against what the container declares: FFmpeg decodes a truncated file as far
    as it goes and only logs "partial file" or "File ended prematurely", so without this a file cut to 80 % of
    its bytes gave a shorter film, reported a success. Each stream is held against its own declaration (an
    audio track may end after the picture)."""

    def __init__(self, inp, streams) -> None:
        self.inp = inp
        self.streams = [s for s in streams if s.type in ("video", "audio")]
        self.count = {s.index: 0 for s in self.streams}
        self.end: Dict[int, int] = {}
        self.unit: Dict[int, int] = {}
        self.dts: Dict[int, int] = {}
        self.cut: Dict[int, bool] = {}

    def see(self, packet) -> None:
        i = packet.stream.index
        if i not in self.count:
            return
        t = packet.pts if packet.pts is not None else packet.dts
        if t is None and not packet.size:  # the demuxer's final empty packet
            return
        self.count[i] += 1
        self.cut[i] = packet.is_corrupt
        if t is not None:
            d = packet.duration or 0
            if packet.dts is not None:
                if i in self.dts:
                    d = max(d, packet.dts - self.dts[i])
                self.dts[i] = packet.dts
            self.end[i] = max(self.end.get(i, t), t + (packet.duration or 0))
            self.unit[i] = max(self.unit.get(i, 0), d)

    def check(self, src) -> None:
        """VideoError if a stream ends short of its declared length, or in a packet cut short (an MP4 sample
        that the file's end cuts; not in MPEG-TS, where a recording stopped mid-frame leaves its last PES
        packet short)."""
        for s in self.streams:
            kind = [t for t in self.streams if t.type == s.type]
            what = f"the {s.type} stream" + (f" {s.index}" if len(kind) > 1 else "")
            n, tb = self.count[s.index], s.time_base or Fraction(1)
            got = float(self.end[s.index] * tb) if s.index in self.end else 0.0
            packets = "frames" if s.type == "video" else "packets"
            if self.cut.get(s.index) and self.inp.format.name != "mpegts":
                raise VideoError(f"{src}: truncated or damaged: {what} ends at {got:.1f} s in a packet cut short "
                                 f"({n} {packets})")
            declared = _declared(self.inp, s)
            if declared is None:
                continue
            want, frames = declared
            unit = float(self.unit.get(s.index, 0) * tb)
            if s.type == "video" and (s.average_rate or s.guessed_rate):
                unit = max(unit, 1 / float(s.average_rate or s.guessed_rate))
            if got < want - (2 * unit + _SLACK + want / 1000):
                of = f"{n} of {frames}" if frames else f"{n}"
                digits = 1 if want - got >= 0.1 else 2 if want - got >= 0.01 else 3
                raise VideoError(f"{src}: truncated or damaged: {what} ends at {got:.{digits}f} s of its declared "
                                 f"{want:.{digits}f} s ({of} {packets})")


#: The packet sizes of MPEG transport streams (plain, M2TS with its 4-byte time code first, with 16 bytes of
#: Reed-Solomon parity last) and where the sync byte 0x47 lies in each.
_TS_PACKETS = ((188, 0), (192, 4), (204, 0))


def _check_whole(src, inp) -> None:
    """VideoError for an MPEG-TS file that ends inside a packet (its last four packets do not start where whole
    packets would): cut mid-packet. One cut on a packet's edge cannot be told from an intact file."""
    if inp.format.name != "mpegts":
        return
    path = os.fspath(src)
    size = os.path.getsize(path)
    span = 4 * max(p for p, _ in _TS_PACKETS)
    if size < span:
        return
    with open(path, "rb") as f:
        f.seek(size - span)
        tail = f.read(span)
    for p, at in _TS_PACKETS:
        if all(tail[span - k * p + at] == 0x47 for k in range(1, 5)):
            return
    raise VideoError(f"{path}: truncated or damaged: it ends inside a transport-stream packet")


#: Encoders that take a constant-quality ``crf``, and its largest value for each.
CRF_MAX = {"libx264": 51, "libx265": 51, "libvpx-vp9": 63, "libvpx": 63, "libaom-av1": 63, "libsvtav1": 63}


def quality_options(codec: str, crf: int) -> Dict[str, str]:
    """The encoder options of quality ``crf`` (constant quality: libvpx needs its bitrate 0 for that); none for
    an encoder without it (mpeg4, ffv1, ...: their own defaults). VideoError for a crf outside the encoder's
    range (:data:`CRF_MAX`)."""
    if codec not in CRF_MAX:
        return {}
    if not 0 <= crf <= CRF_MAX[codec]:
        raise VideoError(f"crf must be in 0..{CRF_MAX[codec]} for {codec}, got {crf}")
    return {"crf": str(crf), **({"b": "0"} if codec.startswith("libvpx") else {})}


def _pix_fmt_for(codec: str, even: bool) -> str:
    """The default encoded pixel format: yuv420p (yuv444p at odd sizes, which 4:2:0 cannot halve), else one the
    encoder takes (at odd sizes one with full-size chroma where it has one)."""
    want = "yuv420p" if even else "yuv444p"
    try:
        fmts = [f.name for f in av.Codec(codec, "w").video_formats or ()]
    except (av.FFmpegError, ValueError):
        fmts = []
    if not fmts or want in fmts:
        return want
    if not even:
        full = [f for f in fmts if all(c.width == 3 and c.height == 3 for c in av.VideoFormat(f, 3, 3).components)]
        fmts = full or fmts
    return fmts[0]


#: FFmpeg's codes (AVColorSpace, AVColorRange, and "unspecified" for primaries and transfer).
_SPC_SMPTE170M, _RANGE_MPEG, _UNSPECIFIED = 6, 1, 2
#: YUV pixel formats of limited ("TV") range: what the frames' RGB -> YUV conversion (swscale's default) makes.
_LIMITED_YUV = {"yuv420p", "yuv422p", "yuv444p", "yuv420p10le", "yuv422p10le", "yuv444p10le", "nv12", "nv21",
                "yuv411p", "yuv410p"}


def _tag_colors(enc, src) -> None:
    """Tag the encoded stream with what it holds: the RGB frames go to YUV with the BT.601 matrix in limited
    range (swscale's default), so say so (an untagged HD file is read as BT.709 by most players: colors off by
    a few levels, up to 10 on saturated ones); the primaries and transfer describe the RGB, which is the
    source's, so they are the source's."""
    if enc.format is not None and enc.format.name in _LIMITED_YUV:
        enc.colorspace, enc.color_range = _SPC_SMPTE170M, _RANGE_MPEG
    for name in ("color_primaries", "color_trc"):
        value = getattr(src, name, _UNSPECIFIED)
        if value not in (None, _UNSPECIFIED):
            setattr(enc, name, value)


#: Pixel formats whose first plane is the luma (Y) at full size, one byte a pixel.
_Y_FIRST = {"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "yuv411p", "yuv410p", "nv12",
            "nv21", "yuva420p", "gray"}


def _luma_plane(frame) -> np.ndarray:
    """A frame's luma for matching: its Y plane as stored when it has one (no conversion: the signature is
    normalized, so the video range's offset and scale do not matter), else its gray conversion."""
    if frame.format.name in _Y_FIRST:
        plane = frame.planes[0]
        return np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, :plane.width]
    return frame.to_ndarray(format="gray")


#: 8-bit planar YUV formats whose chroma planes (1 and 2) are read as stored.
_YUV_PLANAR = {"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "yuv440p", "yuvj440p",
               "yuv411p", "yuv410p", "yuva420p", "yuva422p", "yuva444p"}
#: A chroma sample this far from neutral (8-bit U or V levels, of +-112 in limited range; about 14 RGB levels)
#: is colored: a gray film's codec noise stays within a few levels. A frame is in color when at least
#: COLOR_SHARE of its chroma samples are.
CHROMA_LEVELS = 10
COLOR_SHARE = 0.02
COLOR_SAMPLES = 12  # frames looked at, spread over the declared frame count


def _plane(plane) -> np.ndarray:
    return np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, :plane.width]


def frame_in_color(frame) -> bool:
    """Whether a decoded frame carries color: at least :data:`COLOR_SHARE` of its chroma samples (every other
    one of every other row) lie more than :data:`CHROMA_LEVELS` from neutral. Read from the U and V planes as
    stored where the frame has them (no conversion), else from its YUV 4:4:4 conversion; a gray pixel format is
    never in color."""
    name = frame.format.name
    if name.startswith(("gray", "ya", "mono")):
        return False
    if name not in _YUV_PLANAR:
        frame = frame.reformat(format="yuv444p")
    u, v = (_plane(frame.planes[i])[::2, ::2] for i in (1, 2))
    far = (np.abs(u.astype(np.int16) - 128) > CHROMA_LEVELS) | (np.abs(v.astype(np.int16) - 128) > CHROMA_LEVELS)
    return bool(far.size) and float(far.mean()) >= COLOR_SHARE


def color_samples(declared: int) -> frozenset:
    """The frame indices looked at for color: :data:`COLOR_SAMPLES` spread over ``declared`` frames (the
    container's count, or its duration times the rate), and past it (none declared, or the film runs longer)
    the powers of two. The film is called in color when at least half of those looked at are."""
    at = {0}
    if declared > 0:
        at |= {int(round(k * (declared - 1) / (COLOR_SAMPLES - 1))) for k in range(COLOR_SAMPLES)}
    k = 1
    while k < 1 << 40:
        if k >= declared:
            at.add(k)
        k <<= 1
    return frozenset(at)


def _frames_expected(inp, vs, rate) -> int:
    """The frame count the container declares, else its duration times the frame rate (Matroska declares no
    count), else 0."""
    if vs.frames:
        return int(vs.frames)
    seconds = float(vs.duration * vs.time_base) if vs.duration and vs.time_base else \
        (inp.duration / av.time_base if inp.duration else 0.0)
    return max(0, int(round(seconds * float(rate)))) if rate else 0


def _locate(src, engine: FilmEngine, progress: bool = False) -> Dict[int, int]:
    """Keyframe placements {frame: keyframe} from a decode-only pass over the whole video stream (with a
    progress bar of its own when ``progress``: on a long film this pass takes minutes). A truncated file is
    refused here, before the colorizing (its audio is demuxed too, for that, not decoded)."""
    inp, vs = open_input(src)
    vs.thread_type = "AUTO"
    rows = []
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=vs.frames or None, unit="frame", desc="locating keyframes", file=sys.stderr)
    try:
        delivered = _Delivered(inp, [vs, *inp.streams.audio])
        for packet in inp.demux(vs, *inp.streams.audio):
            delivered.see(packet)
            if packet.stream.index != vs.index:
                continue
            for frame in packet.decode():
                rows.append(kf.scores(engine.key_sigs, engine.signature_of(_luma_plane(frame))))
                if bar is not None:
                    bar.update(1)
        delivered.check(src)
    except (av.FFmpegError, OSError) as e:
        raise VideoError(f"{src}: damaged or truncated ({type(e).__name__}: {e})") from None
    finally:
        inp.close()
        if bar is not None:
            bar.close()
    if not rows:
        return {}
    o = engine.opt
    return kf.locate(np.stack(rows), o.match_threshold, o.lookahead)


def colorize_video(model, src, dst, keyframes: Sequence[np.ndarray] = (), codec: str = "libx264", crf: int = 18,
                   container: Optional[str] = None, progress: bool = True, preset: Optional[str] = None,
                   pix_fmt: Optional[str] = None, locate: bool = True, _composed: Optional[Iterator[np.ndarray]] = None,
                   **opts) -> Dict[str, Any]:
    """Colorize the video file ``src`` into ``dst``; returns a stats dict.

    Every audio stream is kept (packets copied where the output container takes the codec, else re-encoded to
    AAC, or to Opus where the container takes no AAC, said once on stderr; its start time kept); so are subtitle
    and attachment streams where the container takes their codec (packets copied, timestamps and all; else
    dropped, said once on stderr: subrip in MP4, which has only mov_text); data streams (timecode tracks) are
    dropped, said once on stderr; the frame count,
    timestamps, frame rate, size and rotation are kept. ``container``: output format name (default: from dst's
    extension). ``preset``: the encoder's speed preset (x264: ultrafast..veryslow; its default when None).
    ``pix_fmt``: the encoded pixel format (default yuv420p, yuv444p for odd sizes; else one the codec takes).
    ``locate``: find the keyframes in a first, decode-only pass over the whole file (each goes to its best match;
    no waiting for look-ahead), else on the fly in one pass.
    ``opts``: :class:`FilmOptions` fields. ``_composed`` (internal, :mod:`hyperchroma.distributed`): the
    colorized RGB frames, one per decoded frame in order, made elsewhere; then this only encodes them with the
    source's timestamps and audio, exactly as it encodes its own.
    Raises VideoError (a ValueError) for a bad input (a truncated one too: a stream ending short of what its
    container declares, or in a packet cut short; told in the locating pass, before any colorizing, where there is
    one), an unwritable output (dst a folder, or src itself) or an encoder that cannot take the video; then no
    file is left at dst. A write that fails while running (a full disk, an I/O error, lost permissions; in the
    frames, the encoder's final flush, the trailer or the final rename) raises :class:`WriteError` (a
    VideoError) at once, ``cannot write DST: CAUSE``, and leaves no file either.
    The stats' ``input_color`` is True when the input's frames carry color (a few frames looked at, spread over
    the film: :func:`frame_in_color`); their colors are replaced all the same, only the luminance is used.
    """
    options = FilmOptions(**opts).check()
    if os.path.isdir(dst):
        raise VideoError(f"{os.fspath(dst)}: is a directory")
    if os.path.exists(dst) and os.path.exists(src) and os.path.samefile(src, dst):
        raise VideoError(f"{os.fspath(dst)}: is the input video itself; write the output elsewhere")
    inp, vs = open_input(src)
    tmp = None
    try:
        _check_whole(src, inp)
        tmp = _temp_beside(os.fspath(dst), container)
        try:
            out = av.open(tmp, "w", format=container)
        except (av.FFmpegError, OSError, ValueError) as e:
            raise VideoError(f"{dst}: cannot write this container ({e})") from None
        try:
            stats = _run(model, inp, vs, out, keyframes, codec, crf, preset, pix_fmt, progress, options, src,
                         locate, _composed, dst)
        except BaseException:
            try:
                out.close()
            except Exception:  # noqa: BLE001 - the trailer of a file that is removed anyway
                pass
            raise
        try:
            out.close()  # the trailer, and the muxer's last buffered packets
        except (av.FFmpegError, OSError) as e:
            raise _write_error(dst, e) from None
        try:
            os.chmod(tmp, FILE_MODE)  # mkstemp's 0600, else: the permissions a plain open() would give
            os.replace(tmp, dst)
        except OSError as e:
            raise _write_error(dst, e) from None
        tmp = None
        return stats
    finally:
        inp.close()
        if tmp is not None:
            try:
                os.remove(tmp)
            except FileNotFoundError:
                pass
            except OSError as e:  # the folder's permissions gone too: say it, without hiding the run's error
                print(f"hyperchroma: could not remove the temporary file {tmp} ({e.strerror or e})",
                      file=sys.stderr)


def _run(model, inp, vs, out, keyframes, codec, crf, preset, pix_fmt, progress, options, src, locate,
         composed=None, dst=None) -> Dict[str, Any]:
    cc = vs.codec_context
    W, H = cc.width, cc.height
    if not W or not H:
        raise VideoError(f"{src}: video stream has no size")
    rate = vs.average_rate or vs.guessed_rate or Fraction(25)
    tb = vs.time_base or Fraction(1, int(round(float(rate))))
    even = W % 2 == 0 and H % 2 == 0
    enc_opts = quality_options(codec, crf)
    if preset:
        enc_opts["preset"] = preset
    try:
        ov = out.add_stream(codec, rate=rate, options=enc_opts)
    except (av.FFmpegError, ValueError) as e:
        raise VideoError(f"cannot encode with {codec!r} ({e})") from None
    ov.width, ov.height = W, H
    ov.pix_fmt = pix_fmt or _pix_fmt_for(codec, even)
    ov.time_base = tb
    ov.codec_context.time_base = tb
    _tag_colors(ov.codec_context, cc)
    try:  # opened here, not by the first write (maybe an audio packet's, from the decoder thread)
        ov.codec_context.open()
    except (av.FFmpegError, ValueError) as e:
        raise VideoError(f"cannot encode with {codec!r} at {W}x{H} {ov.pix_fmt} ({e})") from None
    audios = [_Audio(out, a) for a in inp.streams.audio]
    kept = [_Kept(out, t) for t in inp.streams if t.type in ("subtitle", "data", "attachment")]
    by_index: Dict[int, Any] = {t.src.index: t for t in [*audios, *kept]}
    copied = [k.src for k in kept if k.dst is not None and k.src.type != "attachment"]  # attachments: no packets
    demuxed = [vs, *[a.src for a in audios], *copied]
    lock = threading.Lock()
    q_in: "queue.Queue" = queue.Queue(_QUEUE)
    q_out: "queue.Queue" = queue.Queue(_QUEUE)
    stop = threading.Event()
    pts_of: Dict[int, int] = {}

    def put(q, item):
        while not stop.is_set():
            try:
                q.put(item, timeout=0.2)
                return
            except queue.Full:
                pass

    errors: list = []

    def emit(r):
        if errors:  # the encoder failed (a write error): the engine stops here, not at the end of the film
            raise _Abandoned
        put(q_out, (r, pts_of.pop(r[0])))

    # each result goes to the encoder as it is made (a keyframe releases a whole segment at once)
    engine = FilmEngine(model, keyframes, options, on_result=emit)
    t0 = time.perf_counter()
    if locate and len(keyframes) and composed is None:
        engine.start((H, W))
        engine.set_placements(_locate(src, engine, progress))
    locate_s = time.perf_counter() - t0
    info: Dict[str, Any] = {"rotation": 0}
    looked: list = []  # for each sampled frame, whether it is in color
    step = max(1, int(round(1 / (float(rate) * float(tb))))) if rate else 1

    def mux(packets):
        if packets:
            with lock:
                try:
                    for p in packets:
                        out.mux(p)
                except (av.FFmpegError, OSError) as e:  # the header's write too, made by the first packet
                    raise _write_error(dst if dst is not None else out.name, e) from None

    def decoder():
        # Frames come in display order; their timestamps normally rise with them. Where a container stores none
        # of its own (H.264 with B-frames in AVI), FFmpeg's guesses come in decode order (0.04, 0.16, 0.12, ...):
        # the timestamps of the last REORDER frames are sorted, so each frame gets the smallest one still
        # unused (rising timestamps pass through unchanged).
        held: "collections.deque" = collections.deque()
        stamps: list = []
        last = raw = None

        def release():
            nonlocal last
            gray = held.popleft()
            pts = heapq.heappop(stamps)
            if last is not None and pts <= last:
                pts = last + 1
            last = pts
            put(q_in, (gray, pts))

        try:
            n = 0
            samples = color_samples(_frames_expected(inp, vs, rate))
            delivered = _Delivered(inp, demuxed)
            for packet in inp.demux(*demuxed):
                if stop.is_set():
                    return
                delivered.see(packet)  # before a copied packet is handed to its output stream
                a = by_index.get(packet.stream.index)
                if a is not None:
                    mux(a.packets(packet))
                    continue
                for frame in packet.decode():
                    if n == 0:
                        info["rotation"] = int(getattr(frame, "rotation", 0) or 0)
                    if n in samples:
                        looked.append(frame_in_color(frame))
                    raw = frame.pts if frame.pts is not None else (0 if raw is None else raw + step)
                    held.append(frame.to_ndarray(format="gray"))
                    heapq.heappush(stamps, raw)
                    if len(held) > REORDER:
                        release()
                    n += 1
            delivered.check(src)
            while held:
                release()
            for a in audios:
                mux(a.flush())
        except (av.FFmpegError, OSError) as e:
            errors.append(VideoError(f"{src}: damaged or truncated ({type(e).__name__}: {e})"))
        except BaseException as e:  # noqa: BLE001 - handed to the caller
            errors.append(e)
        finally:
            put(q_in, _END)

    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=vs.frames or None, unit="frame", desc="colorizing", file=sys.stderr)

    def encoder():
        ended = False
        try:
            while True:
                item = q_out.get()
                if item is _END:
                    ended = True
                    break
                result, pts = item
                rgb = result if isinstance(result, np.ndarray) else compose(engine.source, result)
                frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
                frame.pts, frame.time_base = pts, tb
                mux(ov.encode(frame))
                if bar is not None:
                    bar.update(1)
            mux(ov.encode(None))
        except BaseException as e:  # noqa: BLE001
            errors.append(e)
            stop.set()
            # drain so the engine never blocks, up to the one _END it sends; none comes after it (a failure in
            # the final flush, after the _END: waiting for another hung the run until the join gave up)
            while not ended and q_out.get() is not _END:
                pass

    first = True
    threads = [threading.Thread(target=decoder, daemon=True), threading.Thread(target=encoder, daemon=True)]
    for t in threads:
        t.start()
    n_composed = 0
    try:
        while True:
            try:
                item = q_in.get(timeout=0.2)
            except queue.Empty:  # an encoder error stops the decoder, whose _END may then never come
                if errors:
                    break
                continue
            if item is _END or errors:
                break
            gray, pts = item
            if first:
                first = False
                if info["rotation"]:
                    ov.set_display_rotation(info["rotation"])
            if composed is not None:
                rgb = next(composed, None)
                if rgb is None or rgb.shape != (H, W, 3):
                    raise VideoError(f"{src}: the colorized frames do not match the video's")
                put(q_out, (rgb, pts))
                n_composed += 1
                continue
            pts_of[engine._n] = pts
            engine.push(gray)  # its results go out through on_result
        if not errors and composed is None:
            engine.finish()
    except _Abandoned:  # the encoder's error, raised below
        pass
    except BaseException:
        stop.set()
        raise
    finally:
        q_out.put(_END)  # the encoder consumes until _END (it drains after an error of its own)
        stop.set()  # a decoder still running (early exit) stops at its next packet
        for t in threads:
            t.join(timeout=60)
        if bar is not None:
            bar.close()
    if errors:
        raise errors[0]
    if engine._n == 0 and n_composed == 0:
        raise VideoError(f"{src}: the video stream has no frames")
    stats: Dict[str, Any] = engine.stats() if composed is None else {"frames": n_composed}
    stats.update({"seconds": time.perf_counter() - t0, "locate_seconds": locate_s, "width": W, "height": H,
                  "rate": float(rate), "rotation": info["rotation"],
                  # a color film's colors are replaced (only its luminance is used): the CLI says so
                  "input_color": bool(looked) and 2 * sum(looked) >= len(looked),
                  "audio": [{"stream": a.src.index, "codec": a.src.codec_context.name, "mode": a.mode} for a in audios],
                  "subtitles": [{"stream": k.src.index, "codec": _codec_name(k.src), "mode": k.mode}
                                for k in kept if k.src.type == "subtitle"],
                  "other": [{"stream": k.src.index, "type": k.src.type, "codec": _codec_name(k.src), "mode": k.mode}
                            for k in kept if k.src.type != "subtitle"]})
    return stats
