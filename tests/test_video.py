"""Film colorization end to end on tiny synthetic videos made here with PyAV (with audio tracks)."""

import os

import numpy as np
import pytest

av = pytest.importorskip("av")
pytest.importorskip("cv2")

import hyperchroma as hc  # noqa: E402
from hyperchroma import core  # noqa: E402
from hyperchroma.video import VideoError, colorize_frames, colorize_video  # noqa: E402
from hyperchroma.video.film import FilmEngine, FilmOptions, _TableSource, resample_key  # noqa: E402

W, H, N, FPS = 64, 48, 30, 10


def scene(t, kind=0):
    """RGB frame t: a colored gradient background and a moving green square; kind 1 is another scene."""
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    if kind == 0:
        img = np.stack([200 - 2 * x, 60 + y, 40 + 2.5 * x], -1)
        c, r = 8 + t, 14
        img[r:r + 14, c:c + 14] = (40, 210, 60)
    else:
        img = np.stack([230 - 0 * x, 200 - 3 * y, 30 + 0 * x], -1)
        img[5:20, 10 + t:30 + t] = (20, 20, 150)
    return np.clip(img, 0, 255).astype(np.uint8)


def film(n=N, cut_at=None):
    return [scene(t, int(cut_at is not None and t >= cut_at)) for t in range(n)]


def write_video(path, frames, audio="aac", pts=None, codec="libx264", audio_only=False):
    """A small video (and audio track of the film's length); pts: per-frame timestamps in 1/FPS units."""
    with av.open(path, "w") as c:
        if not audio_only:
            v = c.add_stream(codec, rate=FPS, options={"crf": "10"} if codec == "libx264" else {})
            v.width, v.height, v.pix_fmt = W, H, "yuv420p"
            from fractions import Fraction
            v.codec_context.time_base = Fraction(1, FPS)
        a = None
        if audio:
            a = c.add_stream(audio, rate=24000)
            a.codec_context.layout = "mono"
        if not audio_only:
            for i, f in enumerate(frames):
                vf = av.VideoFrame.from_ndarray(f, format="rgb24")
                vf.pts = i if pts is None else pts[i]
                for p in v.encode(vf):
                    c.mux(p)
            for p in v.encode():
                c.mux(p)
        if a is not None:
            size = 960
            total = int(24000 * (max(len(frames), 1) / FPS))
            for i in range(0, total, size):
                s = np.arange(i, i + size)
                wave = (0.3 * np.sin(2 * np.pi * 440 * s / 24000)).astype(np.float32)[None]
                fmt = a.codec_context.format.name if a.codec_context.format else "fltp"
                if fmt.startswith("s16"):
                    af = av.AudioFrame.from_ndarray((wave * 32767).astype(np.int16), format="s16", layout="mono")
                else:
                    af = av.AudioFrame.from_ndarray(wave, format="fltp", layout="mono")
                af.sample_rate, af.pts = 24000, i
                for p in a.encode(af):
                    c.mux(p)
            for p in a.encode():
                c.mux(p)
    return path


def mux_frames(c, v, frames):
    """RGB frames encoded into stream ``v`` of the open output ``c``, timestamps 0, 1, ... in the stream's rate."""
    for i, f in enumerate(frames):
        vf = av.VideoFrame.from_ndarray(f, format="rgb24")
        vf.pts = i
        for p in v.encode(vf):
            c.mux(p)
    for p in v.encode():
        c.mux(p)


def decode(path, fmt="rgb24"):
    with av.open(path) as c:
        vs = c.streams.video[0]
        frames = [(f.to_ndarray(format=fmt), f.time) for f in c.decode(vs)]
    return [f for f, _ in frames], [t for _, t in frames]


def audio_start(path):
    with av.open(path) as c:
        a = c.streams.audio[0]
        p = next(p for p in c.demux(a) if p.pts is not None)
        return float(p.pts * a.time_base)


def audio_packets(path):
    with av.open(path) as c:
        if not c.streams.audio:
            return []
        return [bytes(p) for p in c.demux(c.streams.audio[0]) if p.size]


@pytest.fixture(scope="module")
def model_and_keys():
    frames = film()
    keys = [frames[6], frames[21]]
    return hc.fit(keys, size=64, samples_per_image=1024), keys, frames


def test_video_keeps_frames_timing_size_and_audio(tmp_path, model_and_keys):
    m, keys, frames = model_and_keys
    pts = [i + i // 7 for i in range(N)]  # irregular timestamps (dropped frames)
    src = write_video(str(tmp_path / "in.mp4"), frames, pts=pts)
    dst = str(tmp_path / "out.mkv")
    stats = colorize_video(m, src, dst, keyframes=keys, progress=False)
    got, times = decode(dst)
    _, want_times = decode(src)
    assert len(got) == N == stats["frames"]
    assert got[0].shape == (H, W, 3)
    # timestamps kept; a container may shift the whole file (AAC priming), never the streams apart
    np.testing.assert_allclose(np.subtract(times, times[0]), np.subtract(want_times, want_times[0]), atol=1e-3)
    assert abs((times[0] - audio_start(dst)) - (want_times[0] - audio_start(src))) < 1e-3
    assert stats["audio"] == [{"stream": 1, "codec": "aac", "mode": "copy"}]
    assert audio_packets(dst) == audio_packets(src) != []
    assert sorted(os.listdir(tmp_path)) == ["in.mp4", "out.mkv"]  # no temporary left


def test_audio_reencoded_when_the_container_cannot_hold_it(tmp_path, model_and_keys, capsys):
    m, keys, frames = model_and_keys
    src = write_video(str(tmp_path / "in.mkv"), frames[:12], audio="libopus")
    dst = str(tmp_path / "out.avi")
    stats = colorize_video(m, src, dst, keyframes=keys, progress=False)
    assert stats["audio"][0]["mode"] == "aac"
    assert "re-encoding it to AAC" in capsys.readouterr().err
    with av.open(dst) as c:
        assert c.streams.audio[0].codec_context.name == "aac"
        assert sum(1 for f in c.decode(audio=0)) > 0
    assert len(decode(dst)[0]) == 12


def test_progress_shows_the_locating_pass_then_the_colorizing(tmp_path, model_and_keys, capsys):
    """The keyframe-locating pass reads the whole film first (minutes on a long one): it has its own bar."""
    m, keys, frames = model_and_keys
    src = write_video(str(tmp_path / "in.mp4"), frames[:12], audio=None)
    colorize_video(m, src, str(tmp_path / "out.mp4"), keyframes=keys, progress=True)
    err = capsys.readouterr().err
    assert "locating keyframes" in err and "colorizing" in err
    assert err.index("locating keyframes") < err.index("colorizing")
    assert "12/12" in err.split("colorizing")[0]  # the locating bar counted every frame


def test_keyframes_located_and_kept(model_and_keys):
    m, keys, frames = model_and_keys
    noise = np.random.default_rng(1).integers(0, 256, size=(H, W, 3), dtype=np.uint8)
    from PIL import Image  # the user's gray (ITU-R 601 luma), here squeezed to video range 16..235
    grays = [(16 + np.asarray(Image.fromarray(f).convert("L")) * (219 / 255)).astype(np.uint8) for f in frames]
    stats = {}
    out = list(colorize_frames(m, grays, keyframes=keys + [noise], stats=stats))
    assert len(out) == N
    assert stats["keyframes_placed"] == {0: [6], 1: [21]}
    assert stats["keyframes_unmatched"] == [2]
    for i, k in ((6, keys[0]), (21, keys[1])):  # a keyframe's own frame has the keyframe's colors
        d = np.abs(core.rgb_to_lab(out[i])[1] - core.rgb_to_lab(k)[1])
        assert float(np.median(d)) < 2.0


def test_a_keyframe_given_twice_is_a_duplicate_not_unmatched():
    frames = film()
    # another coloring of the same frame: its luma (0.299 R + 0.587 G + 0.114 B) about the same
    recolored = np.clip(frames[6].astype(int) + (12, -6, 0), 0, 255).astype(np.uint8)
    ab, stats = run_engine(frames, [frames[6], frames[21], frames[6].copy(), recolored])
    assert stats["keyframes_placed"] == {0: [6], 1: [21]}
    assert stats["keyframes_duplicate"] == {2: 0, 3: 0}
    assert stats["keyframes_unmatched"] == []
    noise = np.random.default_rng(1).integers(0, 256, size=(H, W, 3), dtype=np.uint8)
    _, stats = run_engine(frames, [frames[6], noise])
    assert stats["keyframes_unmatched"] == [1] and stats["keyframes_duplicate"] == {}


class FlatTable:
    """A table source that knows nothing (gray everywhere): isolates propagation."""

    calls = 0

    def shape(self, h, w):
        return (h, w)

    def table_ab(self, gray):
        self.calls += 1
        return np.zeros(gray.shape + (2,), np.float32), np.zeros(gray.shape, bool), 1.0


def drain(eng, frames):
    """Every frame pushed through the engine: its raw results (index, gray, ab_small, ab_full, detail), in order."""
    out = []
    for f in frames:
        eng.push(f)
        out += list(eng.results())
    eng.finish()
    out += list(eng.results())
    assert [r[0] for r in out] == list(range(len(frames)))
    return out


def run_engine(frames, keys, **opts):
    eng = FilmEngine(None, keys, FilmOptions(**opts), source=FlatTable())
    ab = [r[2] if r[2] is not None else r[3] for r in drain(eng, frames)]
    return ab, eng.stats()


def run_placed(frames, keys, placements, **opts):
    eng = FilmEngine(None, keys, FilmOptions(**opts), source=FlatTable(), placements=placements)
    ab = [r[2] if r[2] is not None else r[3] for r in drain(eng, frames)]
    return ab, eng.stats()


def chroma(ab):
    return float(np.hypot(ab[..., 0], ab[..., 1]).mean())


def test_cut_stops_propagation():
    frames = film(cut_at=15)
    ab, stats = run_engine(frames, [frames[5]])
    assert stats["shots"] == 2
    assert stats["keyframes_placed"] == {0: [5]}
    assert chroma(ab[14]) > 10  # carried through the first shot
    assert all(chroma(a) < 0.5 for a in ab[15:])  # nothing crosses the cut
    ab, stats = run_engine(frames, [frames[20]])  # nor backward
    assert stats["keyframes_placed"] == {0: [20]}
    assert chroma(ab[16]) > 10
    assert all(chroma(a) < 0.5 for a in ab[:15])


def test_a_shot_that_returns_after_a_cutaway_resumes_its_colors():
    # shot A with its keyframe, a cutaway to shot B (one frame, then five), shot A again where it left off
    for n_b in (1, 5):
        frames = [scene(t, 0) for t in range(10)] + [scene(t, 1) for t in range(n_b)] + \
                 [scene(t, 0) for t in range(10, 20)]
        ab, stats = run_placed(frames, [frames[4]], {4: 0})  # (located, the keyframe would be placed again)
        assert stats["shots"] == 3 and stats["returns"] == 1
        assert all(chroma(a) < 0.5 for a in ab[10:10 + n_b])  # the cutaway knows nothing
        assert min(chroma(a) for a in ab[10 + n_b:]) > 10  # shot A's colors again
        off, stats = run_placed(frames, [frames[4]], {4: 0}, returns=0)
        assert stats["returns"] == 0 and all(chroma(a) < 0.5 for a in off[10 + n_b:])
    # a new shot that does not continue any earlier one starts from nothing
    frames = [scene(t, 0) for t in range(10)] + [scene(t, 1) for t in range(10)]
    ab, stats = run_placed(frames, [frames[4]], {4: 0})
    assert stats["returns"] == 0 and all(chroma(a) < 0.5 for a in ab[10:])


def flicker(frames, amp=0.12, seed=0):
    """The frames with one random exposure gain each (old film's frame-to-frame flicker)."""
    gains = 1 + amp * np.random.default_rng(seed).uniform(-1, 1, len(frames))
    gains[::2] = 1 + amp  # every other frame at the extreme: a large jump each frame
    return [np.clip(f.astype(np.float32) * g, 0, 255).astype(np.uint8) for f, g in zip(frames, gains)]


def test_flicker_is_not_a_cut_and_colors_still_travel():
    frames = flicker(film(cut_at=15))
    ab, stats = run_engine(frames, [frames[5]])
    assert stats["shots"] == 2  # the real cut only
    assert chroma(ab[14]) > 10
    assert all(chroma(a) < 0.5 for a in ab[15:])
    assert min(chroma(a) for a in ab[:15]) > 10


class DoubtfulTable(FlatTable):
    """Knows nothing, and is only 40% confident in each frame."""

    def table_ab(self, gray):
        return super().table_ab(gray)[:2] + (0.4,)


@pytest.mark.parametrize("source", [FlatTable, DoubtfulTable])
def test_still_film_blend_reference(source):
    """A still film with keyframes at both ends: the closed form of the confidence blend."""
    gray = np.full((H, W), 128, np.uint8)
    gray[10:30, 10:40] = 200  # texture so the flow is defined
    frames = [gray] * 12
    k1 = np.zeros((H, W, 3), np.uint8)
    k1[...] = (150, 100, 100)
    k2 = np.zeros((H, W, 3), np.uint8)
    k2[...] = (100, 100, 150)
    # (flat keyframes that do not show the film's picture: the check against the keyframe and the exposure
    # factor, tested in test_video_transitions.py, left out of this closed form)
    eng = FilmEngine(None, [k1, k2], FilmOptions(decay=0.9, floor=0.5, gate=False, relight=False), source=source())
    q, g = source().table_ab(gray)[2], FilmOptions().unsure_gray
    eng._start((H, W))
    # place them by hand (a still film cannot tell its frames apart): keyframe 0 at frame 0, 1 at frame 11
    eng._locator.feed = lambda i, s, c: [(0, 0)] if i == 1 else []
    eng._locator.flush = lambda: [(11, 1)]
    res = []
    for f in frames:
        eng.push(f)
        res += list(eng.results())
    eng.finish()
    res += list(eng.results())
    a1, a2 = eng._keys[0].ab_small, eng._keys[1].ab_small
    for t in range(1, 11):
        c, cb = 0.9 ** t, 0.9 ** (11 - t)
        u = 1 - max(c, cb)
        # the floor weight of carried keyframe colors, then the temporal blend between the two (each keyframe's
        # nearness in time to the power lead)
        lead = FilmOptions().lead
        w, wb = max(c, 0.5) * ((11 - t) / 11) ** lead, max(cb, 0.5) * (t / 11) ** lead
        # the table knows nothing, so the smoothed table track Q keeps what it started from: keyframe 0; before
        # keyframe 1 the fallback leans on it by a share that decays by smooth every table_every frames
        keep = FilmOptions().smooth ** ((11 - t) / FilmOptions().table_every)
        fallback = keep * a2 + (1 - keep) * a1
        # the table's doubt (1 - q) frees weight: the share g stays gray, the rest goes to the keyframe colors
        # (the table is first asked table_every frames after the keyframe, whose own colors are sure)
        lend = u * (1 - (q if t >= FilmOptions().table_every else 1.0)) * (1 - g)
        want = (w * a1 + wb * a2 + u * fallback + lend * (w * a1 + wb * a2) / (w + wb)) / (w + wb + u)
        np.testing.assert_allclose(res[t][2][20, 20], want[20, 20], atol=0.05, err_msg=f"frame {t}")


def test_keyframe_detail_travels_with_the_motion():
    """Fine colored detail of a keyframe (finer than model size) reaches the later frames of a moving shot
    where it moved; without ``detail`` it is blurred away."""
    from hyperchroma.video.film import compose
    Hf, Wf = 96, 128  # full resolution, twice the model size the FlatTable gives (48 x 64)

    def frame(t):
        y, x = np.mgrid[0:Hf, 0:Wf]
        x = x - 2 * t  # the whole picture pans 2 px a frame
        img = np.zeros((Hf, Wf, 3), np.float32)
        img[...] = (120, 120, 120)
        img += (25 * np.sin(x / 5.0) * np.cos(y / 7.0))[..., None]  # gray texture for the flow
        stripes = (x // 2) % 2 == 0  # 2-pixel color stripes (half a model-size pixel)
        band = (y > 30) & (y < 70) & (x > 20) & (x < 60)
        img[band & stripes] = (220, 60, 60)
        img[band & ~stripes] = (40, 90, 220)
        return np.clip(img, 0, 255).astype(np.uint8)

    frames = [frame(t) for t in range(8)]
    from hyperchroma.video.keyframes import luma
    grays = [luma(f) for f in frames]

    def run(**opts):
        return [compose(HalfTable(), r) for r in run_half(grays, [frames[0]], {0: 0}, **opts)]

    def err(out, t):
        a = core.rgb_to_lab(out[t])[1][35:65, 30:90]
        b = core.rgb_to_lab(frames[t])[1][35:65, 30:90]
        return float(np.abs(a - b).mean())

    with_d, without = run(), run(detail=False)
    for t in (0, 3, 6):
        assert err(with_d, t) < 0.5 * err(without, t), (t, err(with_d, t), err(without, t))
    assert err(with_d, 0) < 2.0  # the keyframe's own frame: its own full-resolution colors
    # a film less than detail_scale times the model size gets none (here 2x < 2.5x)
    assert all((a == b).all() for a, b in zip(run(detail_scale=2.5), without))
    for out in (with_d, without):  # the gray is the input's, always
        assert all((luma(o) == g).all() for o, g in zip(out, grays))


class HalfTable(FlatTable):
    """Model size = half the film's (so the keyframe detail runs); composes like the real source."""

    threads = 1
    compose, compose_planar, compose_full = (_TableSource.compose, _TableSource.compose_planar,
                                             _TableSource.compose_full)

    def shape(self, h, w):
        return (h // 2, w // 2)

    def table_ab(self, gray):
        self.calls += 1
        h, w = self.shape(*gray.shape)
        return np.zeros((h, w, 2), np.float32), np.zeros((h, w), bool), 1.0


def run_half(grays, keys, placements, **opts):
    """The engine's raw results on a HalfTable source."""
    return drain(FilmEngine(None, keys, FilmOptions(**opts), source=HalfTable(), placements=placements), grays)


def _keys_cubic(t):
    """Keys' cubic convolution kernel with a = -0.75 (OpenCV's INTER_CUBIC)."""
    t = np.abs(t)
    a = -0.75
    return np.where(t <= 1, (a + 2) * t ** 3 - (a + 3) * t ** 2 + 1,
                    np.where(t < 2, a * t ** 3 - 5 * a * t ** 2 + 8 * a * t - 4 * a, 0.0))


def test_resample_key_reference(rng):
    """resample_key against a per-pixel loop: the keyframe's colors sampled by the cubic kernel at the
    straight flow's positions (borders replicated), mixed in by agreement times exp(-d^2 / tau^2)."""
    import cv2
    h, w, tau = 14, 19, 1.5
    key_ab = cv2.GaussianBlur(rng.normal(0, 30, (h, w, 2)).astype(np.float32), (0, 0), 1.0)
    K = rng.normal(0, 20, (h, w, 2)).astype(np.float32)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    pos = np.dstack([xs, ys]) + rng.uniform(-3, 3, (h, w, 2)).astype(np.float32)
    chained = pos + rng.normal(0, 1.5, (h, w, 2)).astype(np.float32)
    agree = rng.uniform(0, 1, (h, w)).astype(np.float32)
    got = resample_key(K, key_ab, pos, agree, chained, tau)
    want = np.empty_like(K)
    for y in range(h):
        for x in range(w):
            px, py = (float(v) for v in pos[y, x])
            ix, iy = int(np.floor(px)), int(np.floor(py))
            s = np.zeros(2)
            for j in range(iy - 1, iy + 3):
                for i in range(ix - 1, ix + 3):
                    wgt = _keys_cubic(px - i) * _keys_cubic(py - j)
                    s += wgt * key_ab[min(max(j, 0), h - 1), min(max(i, 0), w - 1)]
            d2 = float(((pos[y, x] - chained[y, x]) ** 2).sum())
            a = agree[y, x] * np.exp(-d2 / tau ** 2)
            want[y, x] = K[y, x] + a * (s - K[y, x])
    np.testing.assert_allclose(got, want, atol=1e-3)  # (bilinear sampling would be over 1 unit off here)
    # far from the chained positions, or where the gray disagrees, the carried colors stay as they are
    np.testing.assert_allclose(resample_key(K, key_ab, pos, agree, pos + 30, tau), K, atol=1e-5)
    np.testing.assert_array_equal(resample_key(K, key_ab, pos, np.zeros_like(agree), chained, tau), K)


def test_keyframe_colors_stay_sharp_along_a_slow_pan():
    """A textured colored picture pans by a fraction of a pixel a frame: carried along the chain of
    frame-to-frame flows its colors are resampled (bilinear, a low-pass) once a frame and blur; resampled once,
    straight from the keyframe (``direct``), they stay near the picture's own."""
    import cv2
    rng = np.random.default_rng(5)
    Hf, Wf = 96, 128
    big = cv2.GaussianBlur(rng.uniform(0, 255, (Hf + 20, Wf + 40, 3)).astype(np.float32), (0, 0), 2.5)
    big = (big - big.mean()) * 4 + 128

    def frame(t):  # the picture moved 0.7 px to the left per frame (0.35 model-size pixels)
        m = np.float32([[1, 0, 0.7 * t + 10], [0, 1, 10]])
        return np.clip(cv2.warpAffine(big, m, (Wf, Hf), flags=cv2.INTER_CUBIC), 0, 255).astype(np.uint8)

    from hyperchroma.video.keyframes import luma
    n = 16
    frames = [frame(t) for t in range(n)]
    grays = [luma(f) for f in frames]

    def err(key, **opts):  # the model-size ab's distance from the truth's, 5, 10 and 15 frames off the keyframe
        out = run_half(grays, [frames[key]], {key: 0}, **opts)
        e = []
        for d in (5, 10, 15):
            t = abs(key - d)
            truth = cv2.resize(core.rgb_to_lab(frames[t])[1], (Wf // 2, Hf // 2), interpolation=cv2.INTER_AREA)
            e.append(float(np.abs(out[t][2] - truth)[8:-8, 8:-16].mean()))
        return e

    for key in (0, n - 1):  # the forward track, then the backward one
        sharp, chained = err(key), err(key, direct=False)
        for a, b in zip(sharp, chained):
            assert a < 0.7 * b, (key, sharp, chained)
    # like the detail, it runs only in films at least detail_scale times the model size (here 2x < 2.5x)
    assert err(0, detail_scale=2.5) == err(0, detail_scale=2.5, direct=False)


def test_farther_keyframe_skipped_where_it_weighs_little(monkeypatch):
    """Between two keyframes, a frame near one of them takes no flow straight to the other where that one's time
    weight is under DIRECT_MIN: one DIS flow fewer in those frames, the colors nearly those of resampling from
    both, and unchanged where both weigh enough."""
    import cv2
    from hyperchroma.video import film as film_mod
    from hyperchroma.video import propagate as pp
    rng = np.random.default_rng(7)
    Hf, Wf, n = 96, 128, 16
    big = cv2.GaussianBlur(rng.uniform(0, 255, (Hf + 20, Wf + 60, 3)).astype(np.float32), (0, 0), 2.5)
    big = np.clip((big - big.mean()) * 4 + 128, 0, 255)
    frames = [cv2.warpAffine(big, np.float32([[1, 0, 1.3 * t + 10], [0, 1, 10]]), (Wf, Hf),
                             flags=cv2.INTER_CUBIC).astype(np.uint8) for t in range(n)]
    from hyperchroma.video.keyframes import luma
    grays = [luma(f) for f in frames]
    calls = []
    locate = pp.locate
    monkeypatch.setattr(pp, "locate", lambda *a, **k: calls.append(1) or locate(*a, **k))
    placements = {0: 0, n - 1: 1}
    keys = [frames[0], frames[n - 1]]
    out = run_half(grays, keys, placements)
    skipped = [t for t in range(1, n - 1) if min((t / (n - 1)), (n - 1 - t) / (n - 1)) ** 1.5 < 0.1]
    assert skipped == [1, 2, 3, 12, 13, 14]
    assert len(calls) == 2 * (n - 2) - len(skipped)
    monkeypatch.setattr(film_mod, "DIRECT_MIN", 0.0)
    calls.clear()
    full = run_half(grays, keys, placements)
    assert len(calls) == 2 * (n - 2)
    for t in range(1, n - 1):
        # the detail still comes from the nearer keyframe, along the same flow, in every frame
        (kd, pos, agree), = out[t][4]
        (kd_full, pos_full, agree_full), = full[t][4]
        assert np.array_equal(kd, kd_full) and np.array_equal(pos, pos_full) and np.array_equal(agree, agree_full), t
        d = np.abs(out[t][2] - full[t][2])
        if t in skipped:
            assert 0 < float(d.max()) and float(d.mean()) < 0.5, (t, float(d.mean()))
        else:
            assert float(d.max()) == 0.0, t


def test_output_video_gets_the_permissions_of_a_plain_new_file(tmp_path, model_and_keys):
    from hyperchroma._fs import FILE_MODE

    m, keys, frames = model_and_keys
    src = write_video(str(tmp_path / "in.mkv"), frames[:6], audio=None)
    dst = tmp_path / "out.mkv"
    colorize_video(m, src, str(dst), keyframes=keys, progress=False)
    assert dst.stat().st_mode & 0o777 == FILE_MODE  # not the temporary file's 0600


def test_frames_and_video_agree_through_a_lossless_path(tmp_path, model_and_keys):
    m, keys, frames = model_and_keys
    src = write_video(str(tmp_path / "in.mkv"), frames, audio=None)
    dst = str(tmp_path / "out.mkv")
    colorize_video(m, src, dst, keyframes=keys, codec="ffv1", pix_fmt="bgr0", progress=False)
    got, _ = decode(dst)
    grays, _ = decode(src, "gray")
    want = list(colorize_frames(m, grays, keyframes=keys))
    assert len(got) == len(want) == N
    for g, w in zip(got, want):
        assert np.array_equal(g, w)


def test_an_encoder_error_ends_the_run_with_that_error_and_no_file(tmp_path, model_and_keys, monkeypatch):
    """The encoder thread fails on its first frame: the run ends, raises that error and leaves nothing at dst.
    (The engine's wait for input also gives up then, since a decoder the failure stopped sends no end marker;
    this small film does not force that race, the decoder is usually done first.)"""
    import threading
    from hyperchroma.video import io as vio
    m, keys, frames = model_and_keys
    src = write_video(str(tmp_path / "in.mp4"), frames * 4)

    def broken(*a, **k):
        raise RuntimeError("encoder broke")

    monkeypatch.setattr(vio, "compose", broken)
    dst = str(tmp_path / "out.mp4")
    raised = []

    def run():
        try:
            colorize_video(m, src, dst, keyframes=keys, progress=False)
        except BaseException as e:  # noqa: BLE001
            raised.append(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(120)
    assert not t.is_alive(), "colorize_video hung after the encoder failed"
    assert len(raised) == 1 and isinstance(raised[0], RuntimeError) and "encoder broke" in str(raised[0])
    assert os.listdir(tmp_path) == ["in.mp4"]


@pytest.mark.parametrize("case", ["not_a_video", "truncated", "zero_frames", "audio_only", "missing"])
def test_bad_input_one_clear_error_no_output(tmp_path, model_and_keys, case):
    m, keys, frames = model_and_keys
    src = str(tmp_path / "in.mp4")
    if case == "not_a_video":
        with open(src, "w") as f:
            f.write("hello, this is text\n" * 50)
    elif case == "truncated":
        write_video(src, frames)
        with open(src, "rb") as f:
            data = f.read()
        with open(src, "wb") as f:
            f.write(data[: len(data) // 2])
    elif case == "zero_frames":
        src = write_video(str(tmp_path / "in.mkv"), [], audio=None)
    elif case == "audio_only":
        src = write_video(str(tmp_path / "in.m4a"), frames, audio_only=True)
    else:
        src = str(tmp_path / "nothing.mp4")
    dst = str(tmp_path / "out.mp4")
    with pytest.raises(VideoError) as e:
        colorize_video(m, src, dst, keyframes=keys, progress=False)
    assert isinstance(e.value, ValueError) and str(e.value)
    assert not os.path.exists(dst)
    assert not [f for f in os.listdir(tmp_path) if "part" in f]


def test_unwritable_output(tmp_path, model_and_keys):
    m, keys, frames = model_and_keys
    src = write_video(str(tmp_path / "in.mp4"), frames[:5])
    for dst in (str(tmp_path / "no" / "such" / "dir" / "out.mp4"), str(tmp_path / "in.mp4" / "out.mp4")):
        with pytest.raises(VideoError):
            colorize_video(m, src, dst, keyframes=keys, progress=False)
    with pytest.raises(VideoError):
        colorize_video(m, src, str(tmp_path / "out.unknownext"), keyframes=keys, progress=False)
    assert sorted(os.listdir(tmp_path)) == ["in.mp4"]


def test_rotation_metadata_kept(tmp_path, model_and_keys):
    m, keys, frames = model_and_keys
    src = str(tmp_path / "in.mp4")
    with av.open(src, "w") as c:
        v = c.add_stream("libx264", rate=FPS)
        v.width, v.height, v.pix_fmt = W, H, "yuv420p"
        v.set_display_rotation(90)
        mux_frames(c, v, frames[:8])
    with av.open(src) as c:
        if next(c.decode(video=0)).rotation != 90:
            pytest.skip("this FFmpeg build does not read back the display matrix")
    dst = str(tmp_path / "out.mp4")
    stats = colorize_video(m, src, dst, keyframes=keys, progress=False)
    assert stats["rotation"] == 90
    with av.open(dst) as c:
        f = next(c.decode(video=0))
        assert f.rotation == 90 and (f.width, f.height) == (W, H)


@pytest.mark.parametrize("placed", [False, True])
def test_memory_bounded_by_the_window(placed):
    frames = film()
    eng = FilmEngine(None, [frames[25]], FilmOptions(window=5, lookahead=3), source=FlatTable(),
                     placements={25: 0} if placed else None)
    held, out = 0, []
    for f in frames:
        eng.push(f)
        held = max(held, len(eng._buf))
        out += [r[0] for r in eng.results()]
    eng.finish()
    out += [r[0] for r in eng.results()]
    assert out == list(range(N))
    assert held <= 5 + 3 + 1
    assert eng.stats()["keyframes_placed"] == {0: [25]}


def test_on_result_hands_each_result_over_as_it_is_made():
    """A keyframe releases its whole segment; with on_result each frame goes out the moment it is colored (an
    encoder in another thread starts on it), the same results in the same order as results() gives."""
    frames = film()
    keys = [frames[3], frames[25]]
    want = drain(FilmEngine(None, keys, FilmOptions(), source=FlatTable(), placements={3: 0, 25: 1}), frames)
    got, seen_in_segment = [], []
    eng = FilmEngine(None, keys, FilmOptions(), source=FlatTable(), placements={3: 0, 25: 1},
                     on_result=got.append)
    emit = eng._emit

    def watched(fr, *a, **k):
        seen_in_segment.append((fr.index, len(got)))  # results out before this frame is colored
        emit(fr, *a, **k)

    eng._emit = watched
    for f in frames:
        eng.push(f)
        assert list(eng.results()) == []
    eng.finish()
    assert [r[0] for r in got] == [r[0] for r in want] == list(range(N))
    for a, b in zip(got, want):
        for x, y in zip(a[1:4], b[1:4]):
            assert (x is None and y is None) or np.array_equal(x, y)
    # frame 15 is colored inside the segment that keyframe 25 releases, after frames up to 14 went out
    assert dict(seen_in_segment)[15] == 15


@pytest.mark.parametrize("bad", [dict(lead=0.2), dict(lead=float("nan")), dict(lead=9), dict(unsure_gray=1.5),
                                 dict(decay=0), dict(smooth=1.0), dict(window=0), dict(direct_tau=0),
                                 dict(direct_tau=float("nan"))])
def test_film_options_out_of_range(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        FilmOptions(**bad).check()


def test_output_tagged_with_the_matrix_it_was_encoded_with(tmp_path, model_and_keys):
    """The RGB frames go to YUV with BT.601 in limited range: the output says so (untagged, an HD file is read
    as BT.709 by most players), keeps the source's primaries and transfer, and its Y plane is the input's."""
    m, keys, frames = model_and_keys
    src = str(tmp_path / "in.mp4")
    with av.open(src, "w") as c:
        v = c.add_stream("libx264", rate=FPS, options={"crf": "10"})
        v.width, v.height, v.pix_fmt = W, H, "yuv420p"
        cc = v.codec_context
        cc.colorspace, cc.color_primaries, cc.color_trc, cc.color_range = 1, 1, 1, 1  # BT.709, limited range
        for f in frames[:10]:
            for p in v.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in v.encode():
            c.mux(p)
    dst = str(tmp_path / "out.mp4")
    colorize_video(m, src, dst, keyframes=keys, progress=False)
    with av.open(dst) as c:
        cc = c.streams.video[0].codec_context
        assert (cc.colorspace, cc.color_range, cc.color_primaries, cc.color_trc) == (6, 1, 1, 1)
        y_out = [f.to_ndarray(format="gray").astype(int) for f in c.decode(video=0)]
    with av.open(src) as c:
        y_in = [f.to_ndarray(format="gray").astype(int) for f in c.decode(video=0)]
    assert len(y_out) == len(y_in) == 10
    assert max(np.abs(a - b).mean() for a, b in zip(y_out, y_in)) < 2.0


def test_decode_order_timestamps_of_an_avi_are_put_in_order(tmp_path, model_and_keys):
    """H.264 with B-frames in AVI (which stores no presentation times): the frames decode in display order but
    carry FFmpeg's guesses in decode order (0.04, 0.16, 0.12, ...). The output gets those times sorted, so
    each frame keeps its place and the film its length (before: a jump after frame 0, a time the input lacks)."""
    m, keys, frames = model_and_keys
    src = write_video(str(tmp_path / "in.avi"), frames[:20], audio=None)
    with av.open(src) as c:
        tb = c.streams.video[0].time_base
        times_in = [float(f.pts * tb) for f in c.decode(video=0)]
    assert times_in != sorted(times_in)  # the case itself: this AVI's times come in decode order
    dst = str(tmp_path / "out.mkv")
    colorize_video(m, src, dst, keyframes=keys, progress=False)
    _, times_out = decode(dst)
    np.testing.assert_allclose(times_out, sorted(times_in), atol=2e-3)
