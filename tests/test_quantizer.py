"""The quantizer: thresholds (equal-fill levels with ties), projection, validation."""

import numpy as np
import pytest


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


def random_maps(rng, shapes):
    return [rng.normal(size=s).astype(np.float32) for s in shapes]


def test_sample_taps_equals_upsampled_hypercolumns(rng):
    from hyperchroma import core
    from hyperchroma.quantizer import sample_taps

    for H, W, shapes in [(17, 23, [(3, 17, 23), (5, 9, 12), (2, 5, 6)]), (1, 1, [(4, 1, 1)]),
                         (40, 7, [(2, 10, 2), (3, 40, 7), (1, 3, 3)])]:
        maps = random_maps(rng, shapes)
        full = core.hypercolumns(maps, H, W)
        pix = rng.integers(0, H * W, 50)
        got = sample_taps(maps, (H, W), pix // W, pix % W)
        np.testing.assert_allclose(got, full[pix], rtol=1e-5, atol=1e-5)


def test_projection_before_upsampling_equals_projection_after(rng):
    from hyperchroma import core
    from hyperchroma.quantizer import Projection

    H, W = 30, 41
    shapes = [(6, 30, 41), (8, 30, 41), (5, 15, 21), (7, 8, 11)]
    maps = random_maps(rng, shapes)
    full = core.hypercolumns(maps, H, W)  # (H*W, C)
    p = Projection.learn(full[::3], [s[0] for s in shapes], 4)
    assert p.channels == 4 and [m.shape for m in p.matrices] == [(s[0], 4) for s in shapes]
    got = p.apply(maps, (H, W))
    want = p.project_samples(full).T.reshape(4, H, W)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    # the leading component carries the most variance of the samples it was learned from
    var = p.project_samples(full[::3]).var(axis=0)
    assert np.all(np.diff(var) <= 1e-3)


def test_wide_classifier_gets_compact_keys(tmp_path, frames):
    pytest.importorskip("torch")
    import hyperchroma as hc
    from hyperchroma import training

    wide = tmp_path / "wide.onnx"
    training.random_classifier(wide, spec="c3:64,relu,c3:64,pool,c3:96,relu,c3:96,pool,c3:128,relu,fc", seed=1)
    clf = hc.Classifier(wide)
    assert clf.channels == 448
    m = hc.fit(frames[0][:4], classifier=clf)
    assert m.quantizer.projection is not None and m.quantizer.channels == m.fit_settings.pca_channels == 16
    r = m.evaluate(frames[1][:2])
    assert r["mean"]["psnr"] > r["mean"]["psnr_gray"]
    d = m.colorize(frames[1][0], details=True)
    assert np.mean(d.status == hc.Status.GRAY) < 0.5  # keys are found again
    m.save(tmp_path / "m.hyc")
    np.testing.assert_array_equal(hc.load(tmp_path / "m.hyc").colorize(frames[1][0]), m.colorize(frames[1][0]))
    narrow = hc.fit(frames[0][:2])
    assert narrow.quantizer.projection is None  # the shipped classifier's 56 channels stay as they are
