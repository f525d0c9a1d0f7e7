"""Fitting in phases (sample -> quantizer -> table -> finalize), policies and bad training input."""

import numpy as np
import pytest

import hyperchroma as hc
from hyperchroma.demo import demo_frames
from hyperchroma.images import ImageError


def test_vote_bin_comes_from_tolerance(tmp_path):
    m = hc.fit(demo_frames()[0][:1], policy="vote", tolerance=30.0)
    assert m.table.vote_bin == 30.0
    m.save(tmp_path / "v.hyc")
    assert hc.load(tmp_path / "v.hyc").table.vote_bin == 30.0


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


def test_phases_run_separately_equal_fit(frames):
    from hyperchroma import fitting as F
    from hyperchroma.classifier import Classifier
    from hyperchroma.settings import FitSettings

    train = frames[0][:3]
    ref = hc.fit(train)
    clf, s = Classifier(), FitSettings()
    sample = F.sample_hypercolumns(train, clf, s)
    q = F.learn_quantizer(sample, s.levels)
    np.testing.assert_array_equal(q.thresholds, ref.quantizer.thresholds)
    np.testing.assert_array_equal(q.weights, ref.quantizer.weights)
    # phase 3 without phase 1's cache, one image at a time into the same open table
    table = None
    for im in train:
        table = F.fill_table([im], clf, q, s, table=table)
    assert not table.finalized
    table.finalize()
    cal = F.learn_calibration(train, clf, q, s, hc.ColorizeSettings())
    np.testing.assert_array_equal(cal.m, ref.calibration.m)
    np.testing.assert_array_equal(cal.s, ref.calibration.s)
    m = hc.Model(clf, q, table, s, calibration=cal)
    e, r = m.color_table.entries(), ref.color_table.entries()
    for k in ("keys", "ab", "counts", "conflicting"):
        np.testing.assert_array_equal(e[k], r[k])
    np.testing.assert_array_equal(m.colorize(frames[1][0]), ref.colorize(frames[1][0]))
    with pytest.raises(ValueError, match="finalized"):
        table.insert(np.zeros((1, table.table.words), np.uint64), np.zeros((1, 2), np.float32))


def test_vote_model_is_finalized_after_fit(frames):
    m = hc.fit(frames[0][:2], policy="vote")
    assert m.table.vote_records() == 0
    assert m.table.memory_bytes() / len(m.table) <= 32


def _entries(table):
    return {k: v for k, v in table.entries().items()}


@pytest.mark.parametrize("policy", ["mark", "mean", "vote"])
def test_tables_of_a_split_merge_into_the_union(frames, policy):
    """Phase 3 on parts of the images, merged (in order, and in another order), equals phase 3 on all."""
    from hyperchroma.classifier import Classifier
    from hyperchroma.fitting import fill_table, learn_quantizer, sample_hypercolumns
    from hyperchroma.settings import FitSettings

    images = frames[0][:4]
    clf = Classifier()
    settings = FitSettings(policy=policy).checked()
    q = learn_quantizer(sample_hypercolumns(images, clf, settings), settings.levels, settings.key_channels)
    whole = fill_table(images, clf, q, settings)
    parts = [fill_table(images[:1], clf, q, settings), fill_table(images[1:3], clf, q, settings),
             fill_table(images[3:], clf, q, settings)]
    merged = fill_table([], clf, q, settings)
    for p in parts:
        merged.merge(p)
    backwards = fill_table(images[::-1], clf, q, settings)
    for t in (whole, merged, backwards):
        t.finalize()
    a, b = _entries(merged), _entries(whole)
    for k in ("keys", "ab", "counts", "conflicting"):
        np.testing.assert_array_equal(a[k], b[k])
    if policy == "mark":
        assert b["conflicting"].any() and not b["conflicting"].all()
    # the images in another order: the same entries, in another order
    c = _entries(backwards)
    order_b = np.lexsort(b["keys"].T[::-1])
    order_c = np.lexsort(c["keys"].T[::-1])
    for k in ("keys", "ab", "counts", "conflicting"):
        np.testing.assert_array_equal(c[k][order_c], b[k][order_b])
    with pytest.raises(ValueError, match="open"):
        merged.merge(parts[0])


def test_sampling_is_per_image(frames):
    """Image i's samples depend on (seed, i) only: sampling a part gives the same rows as in the whole."""
    from hyperchroma.classifier import Classifier
    from hyperchroma.fitting import sample_hypercolumns, sample_image, training_image
    from hyperchroma.settings import FitSettings

    clf = Classifier()
    settings = FitSettings(samples_per_image=300).checked()
    whole = sample_hypercolumns(frames[0][:3], clf, settings).hypercolumns
    t = training_image(frames[0][2], settings.size, "x")
    mine = sample_image(clf.run(t.gray), t.shape, settings, 2)
    np.testing.assert_array_equal(whole[600:], mine)


def test_training_images_over_the_keyframe_budget_are_said(monkeypatch, tmp_path, capsys):
    """A model keeps KEYFRAME_BYTES of decoded keyframes; those past it used to be left out without a word (12
    keyframes at 1080p kept 10). Now a warning says how many, at fit and in the CLI (one line); none when they fit
    or when keyframes are not kept."""
    import warnings

    from PIL import Image

    from hyperchroma import fitting
    from hyperchroma.cli import main

    rng = np.random.default_rng(3)
    imgs = [rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(3)]
    monkeypatch.setattr(fitting, "KEYFRAME_BYTES", 2 * imgs[0].nbytes)
    with pytest.warns(UserWarning, match="1 of 3 training images are not kept as film keyframes"):
        m = hc.fit(imgs, size=64, samples_per_image=256)
    assert len(m.keyframes) == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert hc.fit(imgs, size=64, samples_per_image=256, keep_keyframes=False).keyframes == []
        assert len(hc.fit(imgs[:2], size=64, samples_per_image=256).keyframes) == 2
    assert fitting.keyframe_picks([imgs[0].nbytes] * 2, fitting.FitSettings()) == [0, 1]
    with pytest.warns(UserWarning, match="2 of 4"):
        assert fitting.keyframe_picks([imgs[0].nbytes] * 4, fitting.FitSettings()) == [0, 1]

    paths = []
    for i, a in enumerate(imgs):
        paths.append(str(tmp_path / f"k{i}.png"))
        Image.fromarray(a).save(paths[-1])
    out = tmp_path / "m.hyc"
    capsys.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("default")  # as outside pytest: the CLI says it in one line and goes on
        assert main(["fit", *paths, "-o", str(out), "--size", "64", "--samples-per-image", "256", "-q"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "1 of 3 training images are not kept" in err[0]
    assert len(hc.load(str(out)).keyframes) == 2
    assert main(["fit", *paths, "-o", str(out), "--size", "64", "--samples-per-image", "256", "-q",
                 "--no-keyframes"]) == 0
    assert hc.load(str(out)).keyframes == []
