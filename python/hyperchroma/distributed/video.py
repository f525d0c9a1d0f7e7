"""A film on a Dask cluster, split at its cuts: the same frames as :meth:`Model.colorize_video` on one machine.

The film engine (:mod:`hyperchroma.video.film`) carries nothing across a cut (a new shot starts with no
tracks, no table state and an empty window) but into a shot that continues one of the last few (shot and
reverse shot: :func:`hyperchroma.video.film.continues`, decided from the frames at the two sides of the cut
alone), so runs of shots colorized separately are colorized exactly as in one pass, provided the cuts, the
keyframe placements and those returns are the ones the one pass would find, and no segment boundary falls
between a shot and its return:

1. ``_count``: the frames, decode only (the header's count can be wrong);
2. ``_scan`` over chunks of frames, in parallel: each frame's cut decision (the engine's own test on the frame
   and the one before it, which depends on nothing else) and its keyframe-matching scores; the driver
   locates the keyframes from all the scores as the one-pass run does (:func:`hyperchroma.video.keyframes.locate`);
3. ``_segment``: consecutive shots (the returns found by :func:`hyperchroma.video.film.returns_of` from the
   frames at the cuts, which the scan brings back at model size, kept inside one segment), about ``frames / (2 x worker threads)`` frames per segment, each colorized
   by the engine with its keyframe placements, its RGB frames written losslessly (FFV1) to a work folder beside
   the output;
4. ``_join``: the source re-read for its timestamps and audio and the segments' frames encoded in order, by
   the one-machine encoder (:func:`hyperchroma.video.io.colorize_video`), so codec, timestamps, rotation and
   audio are handled exactly as there. The work folder is removed at the end.

A task reaches its first frame by seeking to the key frame before it, and only when the frame found there
has the pts and the checksum the first pass recorded for it; else it decodes from the start of the file. So
every task sees the frames the one pass sees.
"""

from __future__ import annotations

import os
import queue
import shutil
import threading
import zlib
from typing import Any, Dict, Generator, Iterator, List, Optional, Tuple

import numpy as np

from .._fs import atomic_write

#: Frames per scan chunk and per segment at least (a segment ends at the first cut past this many frames).
MIN_FRAMES = 50


Anchor = Tuple[int, int]  # (pts, crc32 of the gray frame) of the first frame a task decodes


def _frames(src: str, start: int, stop: int, anchor: Optional[Anchor] = None) -> Iterator[np.ndarray]:
    """The gray frames [start, stop) of src, what colorize_video's decoder gives: from a seek to the key frame
    before ``anchor``'s timestamp when the first frame found there is the anchor's (same pts and checksum),
    else decoded from the start of the file."""
    if anchor is not None and start > 0:
        seeked = _seek(src, stop - start, anchor)
        if seeked is not None:
            yield from seeked
            return
    yield from _decode(src, start, stop)


def _decode(src: str, start: int, stop: int) -> Iterator[np.ndarray]:
    for i, (gray, _) in enumerate(_decoded(src)):
        if i >= stop:
            break
        if i >= start:
            yield gray


Decoded = Generator[Tuple[np.ndarray, Optional[int]], None, None]


def _decoded(src: str, seek_pts: Optional[int] = None) -> Decoded:
    """(gray, pts) of the frames of src in display order, from the key frame before ``seek_pts`` if given."""
    import av

    from ..video.io import VideoError, open_input

    inp, vs = open_input(src)
    vs.thread_type = "AUTO"
    try:
        if seek_pts is not None:
            inp.seek(int(seek_pts), stream=vs, backward=True, any_frame=False)
        for frame in inp.decode(vs):
            yield frame.to_ndarray(format="gray"), frame.pts
    except (av.FFmpegError, OSError) as e:
        raise VideoError(f"{src}: damaged or truncated ({type(e).__name__}: {e})") from None
    finally:
        inp.close()


def _crc(gray: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(gray).data)


def _seek(src: str, count: int, anchor: Anchor) -> Optional[Iterator[np.ndarray]]:
    """``count`` frames from the anchor frame on, reached by seeking; None when the seek does not land on it."""
    pts, crc = anchor
    frames = _decoded(src, pts)
    try:
        for gray, p in frames:
            if p is not None and p >= pts:
                if p != pts or _crc(gray) != crc:
                    break
                return _rest(gray, frames, count)
    except (ValueError, OSError):  # a file that does not seek: decode from the start instead
        pass
    frames.close()
    return None


def _rest(first: np.ndarray, frames: Decoded, count: int) -> Iterator[np.ndarray]:
    try:
        yield first
        for _, (gray, _p) in zip(range(count - 1), frames):
            yield gray
    finally:
        frames.close()


def _count(src: str) -> Tuple[int, int, int, List[Optional[Anchor]]]:
    """(frames, height, width, every frame's anchor (None where its pts is missing or not increasing))."""
    anchors: List[Optional[Anchor]] = []
    shape: Tuple[int, ...] = (0, 0)
    last = None
    for gray, pts in _decoded(src):
        shape = gray.shape
        ok = pts is not None and (last is None or pts > last)
        anchors.append((int(pts), _crc(gray)) if ok and pts is not None else None)
        last = pts if pts is not None else last
    return len(anchors), int(shape[0]), int(shape[1]), anchors


def _engine(model: Any, options: Dict[str, Any], placements: Optional[Dict[int, int]] = None) -> Any:
    from ..video.film import FilmEngine, FilmOptions

    return FilmEngine(model, model.keyframes, FilmOptions(**options), placements=placements)


def _scan(src: str, start: int, stop: int, anchor: Optional[Anchor], shape: Tuple[int, int], data: bytes,
          digest: str, options: Dict[str, Any], per_host: Dict[str, int], threads: Optional[int]
          ) -> Tuple[List[bool], Optional[np.ndarray], List[Tuple[int, Optional[np.ndarray], np.ndarray]]]:
    """Cut decisions and keyframe scores of frames [start, stop), exactly as the engine makes them, and at each
    cut (frame, the frame before it, the frame) at model size (which shots return: :func:`film.returns_of`)."""
    import cv2

    from ..video import keyframes as kf
    from ..video import propagate as pp
    from ..video.shots import CutDetector, histogram
    from .cluster import task_threads
    from .colorize import _model

    model = _model(digest, data, task_threads(per_host, threads))
    eng = _engine(model, options)
    eng.start(shape)
    o = eng.opt
    h, w = eng.shape_small
    flow, cuts = pp.Flow(o.flow_preset), CutDetector(o.cut_hist, o.cut_follow)
    out: List[bool] = []
    rows = []
    edges: List[Tuple[int, Optional[np.ndarray], np.ndarray]] = []
    prev = None
    for i, gray in enumerate(_frames(src, max(0, start - 1), stop, anchor), start=max(0, start - 1)):
        small = cv2.resize(gray, (w, h), interpolation=cv2.INTER_AREA)
        hist = histogram(small)
        if i >= start:
            cut = True
            if prev is not None:
                link = pp.Link(flow, prev, small, o.tolerance, both=False)
                cut = cuts.is_cut(histogram(link.matched), hist, float(link.rel_back.mean()))
            out.append(bool(cut))
            if cut:
                edges.append((i, prev, small))
            if eng.key_sigs is not None:
                rows.append(kf.scores(eng.key_sigs, eng.signature_of(gray)))
        prev = small
    return out, (np.stack(rows) if rows else None), edges


def _segment(src: str, start: int, stop: int, anchor: Optional[Anchor], placements: Optional[Dict[int, int]],
             path: str, data: bytes, digest: str, overrides: Dict[str, Any], per_host: Dict[str, int],
             threads: Optional[int]) -> str:
    """Colorize frames [start, stop) (whole shots) into ``path``: lossless FFV1 (bgr0: the RGB frames exactly,
    about a third of their raw size) in Matroska, written atomically."""
    import av

    from ..video.film import compose, engine_results
    from .cluster import task_threads
    from .colorize import _model

    model = _model(digest, data, task_threads(per_host, threads))
    if overrides:
        model = model.with_settings(**overrides)
    local = None if placements is None else {f - start: k for f, k in placements.items() if start <= f < stop}
    eng = _engine(model, {}, local)
    done = object()
    q: "queue.Queue[Any]" = queue.Queue(8)
    errors: List[BaseException] = []

    def write(out: Any) -> None:  # compose and encode beside the engine, as colorize_video's encoder thread does
        vs = None
        try:
            while (r := q.get()) is not done:
                if errors:
                    continue  # drain after an error of its own, so the engine never blocks
                rgb = np.ascontiguousarray(compose(eng.source, r))
                if vs is None:
                    vs = out.add_stream("ffv1", rate=25)
                    vs.width, vs.height, vs.pix_fmt = rgb.shape[1], rgb.shape[0], "bgr0"
                for pk in vs.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                    out.mux(pk)
            if vs is not None and not errors:
                for pk in vs.encode():
                    out.mux(pk)
        except BaseException as e:  # noqa: BLE001 - raised on the calling thread
            errors.append(e)
            while q.get() is not done:
                pass

    with atomic_write(path) as f:
        out = av.open(f, "w", format="matroska")
        writer = threading.Thread(target=write, args=(out,), daemon=True)
        writer.start()
        try:
            for r in engine_results(model, _frames(src, start, stop, anchor), engine=eng):
                if errors:
                    break
                q.put(r)
        finally:
            q.put(done)
            writer.join()
        if errors:
            raise errors[0]
        out.close()
    return path


def _join(src: str, dst: str, paths: List[str], shape: Tuple[int, int], data: bytes, digest: str,
          video: Dict[str, Any], per_host: Dict[str, int], threads: Optional[int]) -> Dict[str, Any]:
    """Encode the segments' frames in order, with src's timestamps and audio, into dst (atomically)."""
    import av

    from .cluster import task_threads
    from .colorize import _model

    model = _model(digest, data, task_threads(per_host, threads))

    def frames() -> Iterator[np.ndarray]:
        for p in paths:
            with av.open(p) as c:
                for frame in c.decode(video=0):
                    yield frame.to_ndarray(format="rgb24")

    return dict(model.colorize_video(src, dst, container=None, progress=False, _composed=frames(), **video))


def colorize_split(client: Any, src: str, dst: str, data_f: Any, digest: str, video: Dict[str, Any],
                   overrides: Dict[str, Any], per_host: Dict[str, int], threads: Optional[int], retries: int
                   ) -> Tuple[str, Optional[str]]:
    """One video colorized in segments of whole shots on the workers: (dst, None) or (src, why)."""
    from ..video import keyframes as kf
    from ..video import propagate as pp
    from ..video.film import FilmOptions, returns_of
    from ..video.io import VideoError
    from ..video.shots import CutDetector

    options: Dict[str, Any] = {}  # FilmOptions: the defaults, as hyperchroma colorize uses them
    opt = FilmOptions(**options).check()
    work = os.path.join(os.path.dirname(dst) or ".", f".hyperchroma-segments-{digest[:12]}-{os.path.basename(dst)}")
    try:
        n, height, width, anchors = client.submit(_count, src, retries=retries, pure=False).result()
        if n == 0:
            raise VideoError(f"{src}: the video stream has no frames")
        shape = (height, width)
        slots = max(1, sum(per_host.values()))
        chunk = max(MIN_FRAMES, -(-n // (2 * slots)))
        scans = client.gather([client.submit(_scan, src, s, min(n, s + chunk), anchors[max(0, s - 1)], shape,
                                             data_f, digest, options, per_host, threads, retries=retries,
                                             pure=False)
                               for s in range(0, n, chunk)])
        cuts = [c for part, _, _ in scans for c in part]
        placements: Optional[Dict[int, int]] = None
        if scans[0][1] is not None:  # the model has keyframes: locate them over the whole film, as one pass does
            rows = np.concatenate([r for _, r, _ in scans if r is not None])
            placements = {int(f): int(k) for f, k in kf.locate(rows, opt.match_threshold, opt.lookahead).items()}
        starts = [i for i, c in enumerate(cuts) if c] + [n]
        # shots that return (the engine resumes an earlier shot's colors there): no boundary between the two
        edge = {i: (before, first) for _, _, part in scans for i, before, first in part}
        shots = [(edge[a][1], edge[starts[j + 1]][0] if starts[j + 1] < n else None,
                  placements is not None and a in placements) for j, a in enumerate(starts[:-1])]
        held: set = set()
        for later, earlier in returns_of(pp.Flow(opt.flow_preset), CutDetector(opt.cut_hist, opt.cut_follow),
                                         opt.tolerance, opt.returns, shots).items():
            held.update(range(earlier + 1, later + 1))
        bounds, a = [], 0
        for j, s in enumerate(starts[1:], start=1):
            if (s - a >= chunk and j not in held) or s == n:
                bounds.append((a, s))
                a = s
        if len(bounds) == 1:  # one segment: the film in one task, the one-machine call itself
            from .colorize import _colorize_one

            return client.submit(_colorize_one, src, dst, data_f, digest, overrides, video, per_host, threads,
                                 retries=retries, pure=False).result()
        os.makedirs(work, exist_ok=True)
        segs = [client.submit(_segment, src, a, b, anchors[a], placements, os.path.join(work, f"{k:06d}.mkv"),
                              data_f, digest,
                              overrides, per_host, threads, retries=retries, pure=False)
                for k, (a, b) in enumerate(bounds)]
        paths = client.gather(segs)
        client.submit(_join, src, dst, paths, shape, data_f, digest, video, per_host, threads, retries=retries,
                      pure=False).result()
    except ValueError as e:  # VideoError and other bad input: reported, the other inputs still go
        return src, str(e)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return dst, None
