"""hyperchroma.distributed on a local Dask cluster of 2 worker processes: the same model as hc.fit (entry for
entry, the same file bytes), the same outputs as one machine, and no lost or duplicated output when a worker
dies mid-task."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import threading
import time

import hyperchroma as hc
import numpy as np
import pytest

distributed = pytest.importorskip("distributed")
hd = pytest.importorskip("hyperchroma.distributed")

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning", "ignore::DeprecationWarning")


def local_cluster():
    return distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0")


@pytest.fixture(scope="module")
def client():
    with local_cluster() as cluster, distributed.Client(cluster) as c:
        yield c


def saved(model, path):
    model.save(path)
    with open(path, "rb") as f:
        return f.read()


def assert_same_model(got, want, tmp_path):
    e, f = got.color_table.entries(), want.color_table.entries()
    for k in ("keys", "ab", "counts", "conflicting"):
        np.testing.assert_array_equal(e[k], f[k])
    np.testing.assert_array_equal(got.quantizer.thresholds, want.quantizer.thresholds)
    assert (got.calibration is None) == (want.calibration is None)
    if want.calibration is not None:
        np.testing.assert_array_equal(got.calibration.m, want.calibration.m)
        np.testing.assert_array_equal(got.calibration.s, want.calibration.s)
    assert len(got.keyframes) == len(want.keyframes)
    for a, b in zip(got.keyframes, want.keyframes):
        np.testing.assert_array_equal(a, b)
    assert saved(got, tmp_path / "got.hyc") == saved(want, tmp_path / "want.hyc")


@pytest.mark.parametrize("policy", ["mean", "mark", "vote"])
def test_fit_equals_one_machine(client, frames, tmp_path, policy):
    train = frames[0][:5]
    want = hc.fit(train, policy=policy, threads=1)
    # 5 parts of 1 image, merged 2 at a time: a tree of depth 3 over both workers
    got = hd.fit(train, client, policy=policy, threads=1, task_threads=1, partition_size=1, split_every=2)
    assert_same_model(got, want, tmp_path)


def test_fit_with_a_foreign_classifier_equals_one_machine(client, frames, tmp_path):
    """A stride-32 model of one's own: padded frame, gray tap and PCA projection, the same on the cluster."""
    from test_byo import _fpn

    from hyperchroma.classifier import Classifier

    clf = Classifier.from_bytes(_fpn(3).SerializeToString(), providers="cpu")
    train = frames[0][:4]
    options = {"classifier": clf, "key_channels": 4, "pca_channels": 3, "calibration_folds": 2}
    want = hc.fit(train, threads=1, **options)
    assert want.quantizer.projection is not None  # the projected path is the one compared
    got = hd.fit(train, client, threads=1, task_threads=1, partition_size=1, split_every=2, **options)
    assert_same_model(got, want, tmp_path)


def test_fit_from_a_bag_with_options(client, frames, tmp_path):
    import dask.bag as db

    train = [str(p) for p in frames[0][:4]]
    options = {"levels": 4, "samples_per_image": 500, "seed": 7, "calibration_folds": 2, "tolerance": 8.0,
               "keep_keyframes": False}
    want = hc.fit(train, threads=1, **options)
    got = hd.fit(db.from_sequence(train, npartitions=3), client, threads=1, task_threads=1, **options)
    assert_same_model(got, want, tmp_path)
    assert got.keyframes == []


def test_fit_bad_input(client, frames, tmp_path):
    with pytest.raises(TypeError, match="distributed.Client"):
        hd.fit(frames[0][:2], object())
    with pytest.raises(ValueError, match="at least one"):
        hd.fit([], client)
    with pytest.raises(ValueError, match="split_every"):
        hd.fit(frames[0][:2], client, split_every=1)
    with pytest.raises(ValueError, match="policy"):
        hd.fit(frames[0][:2], client, policy="nope")
    gray = tmp_path / "gray.png"
    from PIL import Image

    Image.new("L", (40, 30), 90).save(gray)
    with pytest.raises(hc.ImageError, match="grayscale"):
        hd.fit([frames[0][0], gray], client)


def one_machine_outputs(model_path, inputs, out):
    """What `hyperchroma colorize` writes on one machine: {name: bytes}."""
    from hyperchroma.cli import main

    assert main(["colorize", *map(str, inputs), "-m", str(model_path), "-o", str(out), "-q"]) == 0
    return {p: (out / p).read_bytes() for p in sorted(os.listdir(out))}


def test_colorize_equals_one_machine(client, frames, demo_small, tmp_path):
    model_path = tmp_path / "m.hyc"
    demo_small.save(model_path)
    want = one_machine_outputs(model_path, frames[1], tmp_path / "one")
    result = hd.colorize([str(p) for p in frames[1]], model_path, tmp_path / "many", client)
    assert result["failed"] == []
    assert [os.path.basename(p) for p in result["written"]] == [p.stem + ".png" for p in frames[1]]
    assert {p: (tmp_path / "many" / p).read_bytes() for p in sorted(os.listdir(tmp_path / "many"))} == want
    # a Model object and settings overrides travel too
    again = hd.colorize(frames[1][:1], demo_small.with_settings(median_size=1), tmp_path / "m1", client)
    assert len(again["written"]) == 1
    hd.colorize(frames[1][:1], model_path, tmp_path / "m2", client, median_size=1)
    assert (tmp_path / "m1" / os.listdir(tmp_path / "m1")[0]).read_bytes() == \
        (tmp_path / "m2" / os.listdir(tmp_path / "m2")[0]).read_bytes()


def test_colorize_bad_input(client, frames, demo_small, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    result = hd.colorize([frames[1][0], bad], demo_small, tmp_path / "out", client)
    assert len(result["written"]) == 1 and len(result["failed"]) == 1 and str(bad) in result["failed"][0][0]
    with pytest.raises(TypeError, match="model"):
        hd.colorize(frames[1][:1], 42, tmp_path / "out", client)
    with pytest.raises(ValueError, match="median_size"):
        hd.colorize(frames[1][:1], demo_small, tmp_path / "out", client, median_size=4)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    shutil.copy(frames[1][0], tmp_path / "a" / "x.jpg")
    shutil.copy(frames[1][1], tmp_path / "b" / "x.jpg")
    with pytest.raises(hc.ImageError, match="both write"):
        hd.colorize([tmp_path / "a", tmp_path / "b"], demo_small, tmp_path / "out", client)


def test_colorize_survives_a_killed_worker(frames, demo_small, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    inputs = []
    for k in range(4):  # 16 inputs, each a few tenths of a second of work
        for p in frames[1]:
            inputs.append(src / f"{p.stem}-{k}.jpg")
            shutil.copy(p, inputs[-1])
    model_path = tmp_path / "m.hyc"
    demo_small.save(model_path)
    want = one_machine_outputs(model_path, inputs, tmp_path / "one")
    out = tmp_path / "many"
    with local_cluster() as cluster, distributed.Client(cluster) as c:
        pids = list(c.run(os.getpid).values())
        result: dict = {}
        run = threading.Thread(target=lambda: result.update(hd.colorize(inputs, model_path, out, c)))
        run.start()
        deadline = time.monotonic() + 120
        while run.is_alive() and time.monotonic() < deadline:
            if out.is_dir() and any(n.endswith(".png") for n in os.listdir(out)):
                break
            time.sleep(0.02)
        os.kill(pids[0], signal.SIGKILL)  # a worker dies while the others' tasks run
        run.join(300)
        assert not run.is_alive()
    assert result["failed"] == []
    assert sorted(os.listdir(out)) == sorted(want)  # nothing missing, nothing extra, no temporary file left
    for name, data in want.items():
        assert (out / name).read_bytes() == data, name


def test_cli_on_a_cluster(client, frames, tmp_path, capsys):
    from hyperchroma.cli import main

    train = [str(p) for p in frames[0][:3]]
    address = client.scheduler.address
    assert main(["fit", *train, "-o", str(tmp_path / "one.hyc"), "-q"]) == 0
    assert main(["fit", *train, "-o", str(tmp_path / "dask.hyc"), "-q", "--scheduler", address]) == 0
    assert (tmp_path / "one.hyc").read_bytes() == (tmp_path / "dask.hyc").read_bytes()
    want = one_machine_outputs(tmp_path / "one.hyc", frames[1][:2], tmp_path / "o1")
    assert main(["colorize", *map(str, frames[1][:2]), "-m", str(tmp_path / "one.hyc"), "-o", str(tmp_path / "o2"),
                 "-q", "--workers", "2"]) == 0
    assert {p: (tmp_path / "o2" / p).read_bytes() for p in sorted(os.listdir(tmp_path / "o2"))} == want
    capsys.readouterr()
    assert main(["fit", *train, "-o", str(tmp_path / "x.hyc"), "--scheduler", address, "--workers", "2"]) == 1
    err = capsys.readouterr().err
    assert "not both" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(SystemExit) as usage:
        main(["fit", *train, "-o", str(tmp_path / "x.hyc"), "--workers", "0"])
    assert usage.value.code == 2


def make_film(path, frames, shots=6, per_shot=8, cameras=None):
    """An MPEG-4 AVI of ``shots`` shots (shipped frames, every other one inverted: a cut at each) with audio.
    ``cameras``: instead, shot j films camera cameras[j] (0-2), panning on in its own time from where that
    camera's previous shot left off (shot and reverse shot)."""
    import av
    from PIL import Image

    keys = [np.asarray(Image.open(p).convert("RGB"))[:288:2, :384:2].copy() for p in frames[0][:3]]
    out = av.open(str(path), "w")
    vs = out.add_stream("mpeg4", rate=10)
    vs.width, vs.height, vs.pix_fmt = 192, 144, "yuv420p"
    a = out.add_stream("mp3", rate=22050)
    shown = [0, 0, 0]
    for i in range(shots * per_shot):
        j, t = divmod(i, per_shot)
        if cameras is None:
            img = np.roll(keys[j % 3], 2 * t, axis=1)
            img = img if j % 2 == 0 else 255 - img
        else:
            c = cameras[j]  # three pictures the cut test tells apart: a frame, one inverted, one upside down
            img = np.roll(keys[c], 2 * shown[c], axis=1)
            img = (img, 255 - img, img[::-1])[c]
            shown[c] += 1
        for pk in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
            out.mux(pk)
    for pk in vs.encode():
        out.mux(pk)
    for i in range(shots * per_shot // 2):
        fr = av.AudioFrame.from_ndarray((np.sin(np.arange(1152) / 9) * 3000).astype(np.int16)[None], format="s16",
                                        layout="mono")
        fr.sample_rate, fr.pts = 22050, i * 1152
        for pk in a.encode(fr):
            out.mux(pk)
    for pk in a.encode():
        out.mux(pk)
    out.close()
    return keys


def decoded(path):
    import av

    with av.open(str(path)) as c:
        kinds = sorted(s.type for s in c.streams)
        return kinds, [(f.pts, f.to_ndarray(format="rgb24")) for f in c.decode(video=0)]


def test_video_split_keeps_a_shot_and_its_return_in_one_segment(client, frames, tmp_path, monkeypatch):
    from hyperchroma.distributed import video as dvideo

    keys = make_film(tmp_path / "film.avi", frames, cameras=[0, 1, 0, 2, 1, 2])
    model = hc.fit(keys[:1], threads=1)
    model.save(tmp_path / "m.hyc")
    one = hc.load(tmp_path / "m.hyc", threads=1)
    stats = one.colorize_video(tmp_path / "film.avi", tmp_path / "one.mkv", codec="ffv1", container=None,
                               progress=False)
    assert stats["shots"] == 6 and stats["returns"] >= 1  # shot 2 continues shot 0
    monkeypatch.setattr(dvideo, "MIN_FRAMES", 8)  # a segment per shot, but for the returns
    result = hd.colorize([tmp_path / "film.avi"], tmp_path / "m.hyc", tmp_path / "out", client, threads=1,
                         codec="ffv1", container="mkv")
    assert result["failed"] == []
    _, want = decoded(tmp_path / "one.mkv")
    _, got = decoded(tmp_path / "out" / "film.mkv")
    assert len(got) == len(want) == 48
    for (p, a), (q, b) in zip(got, want):
        assert p == q
        np.testing.assert_array_equal(a, b)
    # split between shot 0 and its return, the return would start from nothing
    from hyperchroma.video import film as vfilm

    monkeypatch.setattr(vfilm, "returns_of", lambda *a, **k: {})
    hd.colorize([tmp_path / "film.avi"], tmp_path / "m.hyc", tmp_path / "cut", client, threads=1, codec="ffv1",
                container="mkv")
    _, split = decoded(tmp_path / "cut" / "film.mkv")
    assert any(not np.array_equal(a, b) for (_, a), (_, b) in zip(split[16:24], want[16:24]))


def test_video_split_at_cuts_gives_the_same_frames(client, frames, tmp_path, monkeypatch):
    from hyperchroma.distributed import video as dvideo

    keys = make_film(tmp_path / "film.avi", frames)
    model = hc.fit(keys[:2], threads=1)  # keyframes: located over the whole film, then per segment
    model.save(tmp_path / "m.hyc")
    one = hc.load(tmp_path / "m.hyc", threads=1)
    # ffv1 is lossless and deterministic: equal decoded frames mean equal frames into the encoder (x264 is
    # not deterministic from run to run here, on one machine either)
    one.colorize_video(tmp_path / "film.avi", tmp_path / "one.mkv", codec="ffv1", container=None, progress=False)
    monkeypatch.setattr(dvideo, "MIN_FRAMES", 8)  # a segment per shot: 6 segments over 2 workers
    result = hd.colorize([tmp_path / "film.avi"], tmp_path / "m.hyc", tmp_path / "out", client, threads=1,
                         codec="ffv1", container="mkv")
    assert result == {"written": [str(tmp_path / "out" / "film.mkv")], "failed": []}
    want_kinds, want = decoded(tmp_path / "one.mkv")
    got_kinds, got = decoded(tmp_path / "out" / "film.mkv")
    assert got_kinds == want_kinds == ["audio", "video"]
    assert len(got) == len(want) == 48
    for (p, a), (q, b) in zip(got, want):
        assert p == q
        np.testing.assert_array_equal(a, b)
    assert os.listdir(tmp_path / "out") == ["film.mkv"]  # the segments' work folder is gone
    # the default encoder, and a bad video reported in one line without stopping the rest
    bad = tmp_path / "bad.avi"
    bad.write_bytes(b"not a video")
    result = hd.colorize([tmp_path / "film.avi", bad], tmp_path / "m.hyc", tmp_path / "mp4", client)
    assert result["written"] == [str(tmp_path / "mp4" / "film.mp4")]
    assert len(result["failed"]) == 1 and "bad.avi" in result["failed"][0][1]
    kinds, got = decoded(tmp_path / "mp4" / "film.mp4")
    assert kinds == ["audio", "video"] and len(got) == 48


class KillAtMerge(distributed.WorkerPlugin):
    """Kills its worker process (os._exit) when the k-th merge task of the cluster starts running."""

    def __init__(self, folder: str, k: int):
        self.folder, self.k = folder, k

    def transition(self, key, start, finish, **kwargs):
        if finish == "executing" and str(key).startswith("_merge"):
            n = len(os.listdir(self.folder))  # one file per merge started, over all the workers
            open(os.path.join(self.folder, f"{n}-{os.getpid()}"), "w").close()
            if n == self.k:
                os._exit(1)


@pytest.mark.parametrize("k", [1, 3])
def test_fit_survives_a_worker_killed_in_a_merge(frames, tmp_path, k):
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import this test module
    train = frames[0][:8]
    want = hc.fit(train, threads=1)
    (tmp_path / "merges").mkdir()
    with local_cluster() as cluster, distributed.Client(cluster) as c:
        c.register_plugin(KillAtMerge(str(tmp_path / "merges"), k))
        got = hd.fit(train, c, threads=1, task_threads=1, partition_size=1, split_every=2)
    assert len(os.listdir(tmp_path / "merges")) > k  # the kill happened, and the merges went on
    assert_same_model(got, want, tmp_path)


def test_fit_survives_a_killed_worker(frames, tmp_path):
    stage = "_fill_part"
    train = frames[0][:6]
    want = hc.fit(train, threads=1)
    with local_cluster() as cluster, distributed.Client(cluster) as c:
        pids = c.run(os.getpid)
        result: dict = {}
        run = threading.Thread(target=lambda: result.update(
            model=hd.fit(train, c, threads=1, task_threads=1, partition_size=1, split_every=2)))
        run.start()
        victim = None
        deadline = time.monotonic() + 120
        while run.is_alive() and victim is None and time.monotonic() < deadline:
            for worker, keys in c.processing().items():  # a worker filling or merging partial tables
                if any(str(k).startswith(stage) for k in keys) and worker in pids:
                    victim = worker
                    break
            time.sleep(0.01)
        if victim is not None:
            os.kill(pids[victim], signal.SIGKILL)  # its partial tables, cached maps and running task are lost
        run.join(300)
        assert not run.is_alive()
    assert victim is not None  # the kill happened while the fit ran
    assert_same_model(result["model"], want, tmp_path)


def test_segments_seek_to_the_frames_one_pass_decodes(frames, tmp_path):
    from hyperchroma.distributed import video as dvideo

    make_film(tmp_path / "f.avi", frames)
    n, h, w, anchors = dvideo._count(str(tmp_path / "f.avi"))
    assert (n, h, w) == (48, 144, 192) and all(a is not None for a in anchors)
    seq = list(dvideo._decode(str(tmp_path / "f.avi"), 0, n))
    for start in (1, 13, 30, 47):
        seeked = dvideo._seek(str(tmp_path / "f.avi"), n - start, anchors[start])
        assert seeked is not None
        got = list(seeked)
        assert len(got) == n - start and all(np.array_equal(a, b) for a, b in zip(got, seq[start:]))
    # an anchor that does not match (another frame's checksum): no seek, the frames come from the start
    wrong = (anchors[20][0], anchors[21][1])
    assert dvideo._seek(str(tmp_path / "f.avi"), 5, wrong) is None
    got = list(dvideo._frames(str(tmp_path / "f.avi"), 20, 25, wrong))
    assert all(np.array_equal(a, b) for a, b in zip(got, seq[20:25])) and len(got) == 5
