"""The colorizer end to end on the demo frames that ship inside the package and on generated images."""

import threading

import numpy as np
import pytest
from PIL import Image

import hyperchroma as hc
from hyperchroma import core
from hyperchroma.demo import demo_frames
from hyperchroma.images import ImageError
from hyperchroma.model_file import ModelFileError


@pytest.fixture(scope="module")
def frames():
    return demo_frames()


@pytest.fixture(scope="module")
def model(frames):
    train, _ = frames
    return hc.fit(train)


def gray_of(rgb):
    L, ab = core.rgb_to_lab(rgb)
    return core.lab_to_rgb(L, np.zeros_like(ab))[..., 0]


def test_output_shape_dtype_and_luminance(model, frames):
    truth = np.asarray(Image.open(frames[1][0]).convert("RGB"))
    gray = gray_of(truth)
    out = model.colorize(gray)
    assert out.shape == truth.shape and out.dtype == np.uint8
    L_out = core.rgb_to_lab(out)[0]
    np.testing.assert_allclose(L_out, core.gray_to_lightness(gray), atol=0.8)  # luminance kept up to rounding
    assert np.hypot(*core.rgb_to_lab(out)[1].reshape(-1, 2).T).mean() > 2  # and it is colored


def test_beats_gray_on_held_back_frames(model, frames):
    report = model.evaluate(frames[1])
    m = report["mean"]
    assert m["auc"] > m["auc_gray"] and m["psnr"] > m["psnr_gray"]
    assert report["passed"] + report["failed"] == len(frames[1])
    assert report["verdict"] in ("fit", "not fit")
    assert set(report["images"][0]) >= {"name", "psnr", "psnr_gray", "auc", "auc_gray", "colorfulness", "passed"}


def test_inputs_of_every_kind_agree(model, frames, tmp_path):
    path = frames[1][1]
    rgb = np.asarray(Image.open(path).convert("RGB"))
    a = model.colorize(path)
    np.testing.assert_array_equal(a, model.colorize(str(path)))
    np.testing.assert_array_equal(a, model.colorize(Image.open(path)))
    np.testing.assert_array_equal(a, model.colorize(rgb))
    # a color image is colorized from its luminance only: its gray version gives the same picture
    # (up to the gray version's 8-bit rounding of L)
    from_gray = model.colorize(gray_of(rgb))
    assert np.abs(from_gray.astype(int) - a).mean() < 1.0
    d = model.colorize(gray_of(rgb), details=True)
    status, distance = d.status, d.distance
    assert isinstance(d, hc.Colorization) and d.ab.shape == status.shape + (2,)
    with pytest.warns(DeprecationWarning, match="details"):
        rgb_old, status_old, distance_old = model.colorize(gray_of(rgb), return_status=True)
    np.testing.assert_array_equal(rgb_old, d.rgb)
    np.testing.assert_array_equal(status_old, status)
    assert status.dtype == np.uint8 and set(np.unique(status)) <= {hc.STATUS_GRAY, hc.STATUS_EXACT, hc.STATUS_NEAREST}
    assert distance.shape == status.shape and np.all(distance[status == hc.STATUS_EXACT] == 0)


def test_training_frames_are_mostly_exact_hits(model, frames):
    status = model.colorize(frames[0][0], details=True).status
    assert np.mean(status == hc.STATUS_EXACT) > 0.9


@pytest.mark.parametrize("shape", [(1, 1), (5, 17), (300, 7), (17, 5, 3)])
def test_odd_sizes(model, rng, shape):
    img = rng.integers(0, 256, shape, dtype=np.uint8)
    out = model.colorize(img)
    assert out.shape == shape[:2] + (3,)


def test_save_load_round_trip(model, frames, tmp_path):
    p = tmp_path / "m.hyc"
    model.save(p)
    loaded = hc.load(p)
    assert len(loaded.table) == len(model.table)
    for f in frames[1][:2]:
        np.testing.assert_array_equal(loaded.colorize(f), model.colorize(f))
    assert not [q for q in tmp_path.iterdir() if q.name.startswith(".hyperchroma-")]  # no temp files left


def test_load_refuses_bad_files(model, tmp_path):
    p = tmp_path / "m.hyc"
    model.save(p)
    data = bytearray(p.read_bytes())
    with pytest.raises(ModelFileError, match="no such file"):
        hc.load(tmp_path / "missing.hyc")
    (tmp_path / "trunc.hyc").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="truncated"):
        hc.load(tmp_path / "trunc.hyc")
    (tmp_path / "short.hyc").write_bytes(data[:10])
    with pytest.raises(ModelFileError, match="too short"):
        hc.load(tmp_path / "short.hyc")
    bad = bytearray(data)
    bad[len(bad) // 2] ^= 0xFF
    (tmp_path / "corrupt.hyc").write_bytes(bad)
    with pytest.raises(ModelFileError, match="corrupt"):
        hc.load(tmp_path / "corrupt.hyc")
    foreign = tmp_path / "foreign.hyc"
    Image.new("RGB", (4, 4)).save(foreign, format="PNG")
    with pytest.raises(ModelFileError, match="not a hyperchroma model"):
        hc.load(foreign)
    newer = bytearray(data)
    newer[8] = 99  # major format version
    (tmp_path / "newer.hyc").write_bytes(newer)
    with pytest.raises(ModelFileError, match="format 99"):
        hc.load(tmp_path / "newer.hyc")
    assert issubclass(ModelFileError, ValueError)


def test_load_refuses_other_classifier(model, tmp_path):
    p = tmp_path / "m.hyc"
    model.save(p)

    class Other:
        identity = "0" * 64

    with pytest.raises(ModelFileError, match="classifier"):
        hc.load(p, classifier=Other())


def test_save_failure_leaves_nothing(model, tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        model.save(tmp_path / "no" / "such" / "dir" / "m.hyc")


def test_concurrent_colorize_equals_serial(model, frames):
    inputs = list(frames[1]) * 2
    serial = [model.colorize(f) for f in inputs]
    results = [None] * len(inputs)

    def work(i):
        results[i] = model.colorize(inputs[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for a, b in zip(serial, results):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(serial, model.colorize_batch(inputs, workers=2)):
        np.testing.assert_array_equal(a, b)


def test_recolor(model, frames):
    rgb = np.asarray(Image.open(frames[1][0]).convert("RGB"))
    same = model.recolor(rgb, strength=0.0)
    assert np.abs(same.astype(int) - rgb).max() <= 1
    full = model.recolor(rgb, strength=1.0)
    np.testing.assert_allclose(core.rgb_to_lab(full)[0], core.rgb_to_lab(rgb)[0], atol=0.8)
    with pytest.raises(ValueError, match="strength"):
        model.recolor(rgb, strength=2)
    with pytest.raises(ImageError, match="color image"):
        model.recolor(rgb[..., 0])


@pytest.mark.parametrize("policy", ["mark", "mean", "vote"])
def test_policies(frames, policy):
    m = hc.fit(frames[0][:3], policy=policy, levels=4)
    e = m.table.entries()
    if policy == "mark":
        assert e["conflicting"].any()
    out = m.colorize(frames[1][0])
    assert out.shape == (288, 384, 3)


def test_fit_refuses_bad_input(frames, rng):
    with pytest.raises(ValueError, match="at least one"):
        hc.fit([])
    with pytest.raises(ImageError, match="color"):
        hc.fit([rng.integers(0, 256, (32, 32), dtype=np.uint8)])
    with pytest.raises(ValueError, match="policy"):
        hc.fit(frames[0][:1], policy="median")
    with pytest.raises(ValueError, match="levels"):
        hc.fit(frames[0][:1], levels=1)
    with pytest.raises(ValueError, match="median_size"):
        hc.fit(frames[0][:1], median_size=4)
    with pytest.raises(TypeError, match="classifier"):
        hc.fit(frames[0][:1], classifier=3)


def test_learn_thresholds_handles_ties():
    from hyperchroma.quantizer import learn_thresholds

    x = np.concatenate([np.zeros(600), np.linspace(1, 2, 400)]).astype(np.float32)[:, None]
    t = learn_thresholds(x, 3)[0]
    levels = np.searchsorted(t, x[:, 0], side="right")
    counts = np.bincount(levels, minlength=3)
    assert counts[0] == 600 and counts[1] > 150 and counts[2] > 150  # zeros alone, the rest split
    assert np.all(np.diff(t) > 0)
    const = np.ones((100, 1), np.float32)
    t = learn_thresholds(const, 4)[0]
    assert np.all(np.diff(t) >= 0)
