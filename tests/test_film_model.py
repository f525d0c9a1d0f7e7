"""Film through the model: keyframes kept in the model file, colorize_frames / colorize_video, the CLI on a video."""

import numpy as np
import pytest
from PIL import Image

av = pytest.importorskip("av")

import hyperchroma as hc  # noqa: E402
from hyperchroma.cli import main  # noqa: E402


@pytest.fixture(scope="module")
def film(tmp_path_factory, frames):
    """A 30-frame 192x144 MPEG-4 AVI of three shipped keyframes (10 frames each) with an MP3 audio track."""
    tmp = tmp_path_factory.mktemp("film")
    keys = [np.asarray(Image.open(p).convert("RGB"))[:288:2, :384:2].copy() for p in frames[0][:3]]
    out = av.open(str(tmp / "film.avi"), "w")
    vs = out.add_stream("mpeg4", rate=10)
    vs.width, vs.height, vs.pix_fmt = 192, 144, "yuv420p"
    a = out.add_stream("mp3", rate=22050)
    for i in range(30):
        for pk in vs.encode(av.VideoFrame.from_ndarray(keys[i // 10], format="rgb24")):
            out.mux(pk)
    for pk in vs.encode():
        out.mux(pk)
    for i in range(20):
        fr = av.AudioFrame.from_ndarray((np.sin(np.arange(1152) / 9) * 3000).astype(np.int16)[None], format="s16",
                                        layout="mono")
        fr.sample_rate, fr.pts = 22050, i * 1152
        for pk in a.encode(fr):
            out.mux(pk)
    for pk in a.encode():
        out.mux(pk)
    out.close()
    return tmp, keys


def test_keyframes_travel_in_the_model_file(film, tmp_path):
    _, keys = film
    m = hc.fit(keys)
    assert len(m.keyframes) == 3 and all(np.array_equal(a, b) for a, b in zip(m.keyframes, keys))
    m.save(tmp_path / "m.hyc")
    loaded = hc.load(tmp_path / "m.hyc")
    assert all(np.array_equal(a, b) for a, b in zip(loaded.keyframes, keys))
    assert len(m.with_settings(median_size=5).keyframes) == 3
    assert hc.fit(keys, keep_keyframes=False).keyframes == []


def test_frames_stream_in_order_and_keep_their_tones(film):
    _, keys = film
    m = hc.fit(keys)
    grays = [np.asarray(Image.fromarray(k).convert("L")) for k in keys for _ in range(4)]
    stats = {}
    out = list(m.colorize_frames(iter(grays), stats=stats))
    assert len(out) == len(grays) and all(o.shape == (144, 192, 3) and o.dtype == np.uint8 for o in out)
    for o, g in zip(out, grays):
        back = np.asarray(Image.fromarray(o).convert("L")).astype(int) - g
        assert np.abs(back).max() <= 1 and np.mean(back == 0) >= 0.999
    # a keyframe's own frames take the keyframe's colors
    ab_out = hc.core.rgb_to_lab(out[0])[1]
    ab_key = hc.core.rgb_to_lab(keys[0])[1]
    assert np.abs(ab_out - ab_key).mean() < 3.0


def test_cli_colorizes_a_video_with_its_audio(film, tmp_path, capsys):
    tmp, keys = film
    hc.fit(keys).save(tmp_path / "m.hyc")
    assert main(["colorize", str(tmp / "film.avi"), "-m", str(tmp_path / "m.hyc"), "-o", str(tmp_path / "out"),
                 "-q"]) == 0
    with av.open(str(tmp_path / "out" / "film.mp4")) as c:
        assert sorted(s.type for s in c.streams) == ["audio", "video"]
        assert sum(1 for _ in c.decode(video=0)) == 30
    bad = tmp_path / "bad.avi"
    bad.write_bytes(b"not a video at all")
    assert main(["colorize", str(bad), "-m", str(tmp_path / "m.hyc"), "-o", str(tmp_path / "out2"), "-q"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.avi" in err[0]
    assert not list((tmp_path / "out2").iterdir())


def test_evaluate_a_color_video(film, capsys):
    import json

    tmp, _ = film
    assert main(["evaluate", str(tmp / "film.avi"), "--keyframes", "3", "--json", "-q"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["frames"] == 30 and len(r["keyframes"]) == 3 and r["tested"] > 0
    m = r["mean"]
    assert m["psnr"] > m["psnr_gray"] and m["auc"] > m["auc_gray"]
    assert m["warp"] >= 0 and m["warp_true"] >= 0
    assert main(["evaluate", str(tmp / "film.avi"), "--keyframes", "40", "-q"]) == 1
    assert "keyframes" in capsys.readouterr().err
    for bad in ("0", "-1", "two"):  # a usage error, said before any work
        with pytest.raises(SystemExit) as e:
            main(["evaluate", str(tmp / "film.avi"), "--keyframes", bad, "-q"])
        assert e.value.code == 2 and "--keyframes" in capsys.readouterr().err


def test_a_film_unlike_the_keyframes_comes_back_nearly_gray():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from test_calibration import gradient, stripes

    m = hc.fit([stripes(s) for s in range(6)])
    film = [gradient(7 + i // 5) for i in range(10)]  # two "shots" of smooth gradients, no keyframe in them
    stats = {}
    out = list(m.colorize_frames(iter(film), stats=stats))
    assert len(out) == 10 and stats["keyframes_placed"] == {}

    def chroma(rgb):
        return float(np.hypot(*hc.core.rgb_to_lab(rgb)[1].reshape(-1, 2).T).mean())

    # where no keyframe reaches, the film path colors no more than the model's confidence lets one image be
    # colored, and an image it does not know at all (gradient 7: confidence about 0) stays gray
    for frame, o in zip(film, out):
        assert chroma(o) <= 1.1 * chroma(m.colorize(frame)) + 0.5
    assert max(chroma(o) for o in out[:5]) < 1.0


def _copy_as(src, dst, fmt=None):
    """``src``'s video re-encoded (MPEG-4 Part 2) into ``dst`` (container by name or ``fmt``)."""
    with av.open(str(src)) as i, av.open(str(dst), "w", format=fmt) as o:
        vs = o.add_stream("mpeg4", rate=10)
        vs.width, vs.height, vs.pix_fmt = 192, 144, "yuv420p"
        for f in i.decode(video=0):
            for pk in vs.encode(av.VideoFrame.from_ndarray(f.to_ndarray(format="rgb24"), format="rgb24")):
                o.mux(pk)
        for pk in vs.encode():
            o.mux(pk)
    return dst


def test_cli_videos_by_any_common_suffix_in_folders_and_no_two_outputs_of_one_name(film, tmp_path, capsys):
    tmp, keys = film
    hc.fit(keys).save(tmp_path / "m.hyc")
    (tmp_path / "films" / "b").mkdir(parents=True)
    _copy_as(tmp / "film.avi", tmp_path / "films" / "cam.m2ts", fmt="mpegts")  # a camcorder's suffix
    _copy_as(tmp / "film.avi", tmp_path / "films" / "b" / "reel.mkv")
    assert main(["colorize", str(tmp_path / "films"), "-m", str(tmp_path / "m.hyc"), "-o", str(tmp_path / "out"),
                 "-q"]) == 0  # a folder's videos are colorized with its images
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["cam.mp4", "reel.mp4"]
    # two inputs of one stem would write one file twice (the first, with its audio, lost): refused up front
    _copy_as(tmp / "film.avi", tmp_path / "films" / "b" / "cam.mkv")
    assert main(["colorize", str(tmp_path / "films" / "cam.m2ts"), str(tmp_path / "films" / "b" / "cam.mkv"),
                 "-m", str(tmp_path / "m.hyc"), "-o", str(tmp_path / "out2"), "-q"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "would both write cam.mp4" in err[0]
    assert not (tmp_path / "out2").exists()


def test_cli_says_which_keyframes_match_no_frame(film, tmp_path, capsys):
    tmp, keys = film
    stranger = np.ascontiguousarray(keys[1][::-1, ::-1])  # the film's frame turned over: in no frame of the film
    hc.fit([keys[0], stranger, keys[2]]).save(tmp_path / "m.hyc")
    assert main(["colorize", str(tmp / "film.avi"), "-m", str(tmp_path / "m.hyc"), "-o", str(tmp_path / "out"),
                 "-q"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("hyperchroma colorize: warning: ") and "keyframe 2 of 3" in err[0]
    assert (tmp_path / "out" / "film.mp4").exists()


def test_evaluate_a_gray_film_is_refused_and_json_is_strict(tmp_path, capsys):
    import json

    from hyperchroma.cli.evaluate import _json
    from hyperchroma.video.evaluate import keyframe_indices

    out = av.open(str(tmp_path / "gray.mp4"), "w")
    vs = out.add_stream("libx264", rate=10)
    vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv420p"
    r = np.random.default_rng(0)
    for i in range(12):
        g = np.clip(r.normal(128, 40, (48, 64)), 0, 255).astype(np.uint8)
        for pk in vs.encode(av.VideoFrame.from_ndarray(np.repeat(g[..., None], 3, -1), format="rgb24")):
            out.mux(pk)
    for pk in vs.encode():
        out.mux(pk)
    out.close()
    assert main(["evaluate", str(tmp_path / "gray.mp4"), "--keyframes", "2", "-q"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no color" in err[0]
    assert json.loads(_json({"psnr": float("inf"), "warp": float("nan"), "k": [1.5, float("-inf")]})) == {
        "psnr": None, "warp": None, "k": [1.5, None]}
    # keyframes spread over the whole film, also where the protocol's integer step would leave its end bare
    for n, count in [(40, 15), (40, 21), (795, 8), (68, 8), (10, 3), (40, 39)]:
        idx = keyframe_indices(n, count)
        assert len(idx) == count == len(set(idx)) and idx == sorted(idx) and 0 <= idx[0] and idx[-1] < n
        assert n - 1 - idx[-1] <= n / count and idx[0] <= n / count
    assert keyframe_indices(795, 8) == list(range(49, 795, 99))[:8]  # the development protocol's, as before
