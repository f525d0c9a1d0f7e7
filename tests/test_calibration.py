"""Confidence: descriptor and scale against their definitions, the regression, and a model that knows when it
does not know (fit on saturated stripes: confident on stripes, near gray on smooth gradients)."""

import numpy as np
import pytest
from PIL import Image

import hyperchroma as hc
from hyperchroma import Status, core
from hyperchroma.calibration import FAR, Calibration, auc_scale, descriptor, optimal_scale, safe_scale
from hyperchroma.metrics import auc, psnr


def test_descriptor_and_scale_match_their_definitions(rng):
    status = rng.choice([Status.GRAY, Status.EXACT, Status.NEAREST], size=(7, 9)).astype(np.uint8)
    distance = np.where(status == Status.EXACT, 0, rng.uniform(1, 9, (7, 9))).astype(np.float32)
    distance[status == Status.GRAY] = np.inf
    ref = np.mean([FAR if s == Status.GRAY else min(d, FAR) for s, d in zip(status.ravel(), distance.ravel())])
    assert descriptor(status, distance) == pytest.approx(ref)
    p, t = rng.normal(0, 20, (50, 2)), rng.normal(0, 20, (50, 2))
    grid = np.linspace(0, 1, 2001)
    best = grid[np.argmin([((g * p - t) ** 2).sum() for g in grid])]
    assert optimal_scale(p, t) == pytest.approx(best, abs=1e-3)
    assert optimal_scale(p, 2 * p) == 1.0 and optimal_scale(p, -p) == 0.0 and optimal_scale(0 * p, t) == 0.0


def test_safe_scale_is_the_smaller_of_the_least_squares_and_the_auc_best_scale(rng):
    for _ in range(20):
        p, t = rng.normal(0, 20, (40, 30, 2)), rng.normal(0, 20, (40, 30, 2))
        t = t * rng.uniform(0, 1) + p * rng.uniform(0, 1)
        a = auc_scale(p, t)
        # the slow obvious reference: AuC at every scale of a fine grid, the best within the grid's step
        fine = np.linspace(0, 1, 101)
        scores = [auc(np.float32(g) * p.astype(np.float32), t) for g in fine]
        assert auc(np.float32(a) * p.astype(np.float32), t) >= max(scores) - 2e-3
        assert safe_scale(p, t) == pytest.approx(min(a, optimal_scale(p, t)))
    p = rng.normal(0, 20, (30, 30, 2))
    assert auc_scale(p, p) == 1.0 and auc_scale(p, -p) == 0.0 and safe_scale(p, -p) == 0.0


def test_regression_stays_in_range_and_decays_beyond_what_was_seen():
    cal = Calibration(np.array([0.3, 0.4, 0.5, 0.6]), np.array([0.9, 0.8, 1.0, 0.9]))
    inside = [cal.confidence(m) for m in (0.0, 0.3, 0.45, 0.6)]
    assert all(0.8 <= c <= 1.0 for c in inside)
    far = [cal.confidence(m) for m in (0.8, 1.2, 2.0, FAR)]
    assert far == sorted(far, reverse=True) and far[-1] < 1e-6
    with pytest.raises(ValueError):
        Calibration(np.array([0.1]), np.array([1.5]))
    with pytest.raises(ValueError):
        Calibration(np.array([]), np.array([]))


def _regression_reference(m, ms, ss):
    """The held-out regression written out: Gaussian kernel weights, then the decay beyond the largest m."""
    h = max(0.2, 0.5 * float(np.std(ms)))
    w = [np.exp(-0.5 * ((m - mi) / h) ** 2) for mi in ms]
    if sum(w) > 1e-12:
        value = sum(wi * si for wi, si in zip(w, ss)) / sum(w)
    else:  # every kernel underflows: the nearest held-out image's scale
        value = ss[int(np.argmin([abs(m - mi) for mi in ms]))]
    beyond = max(0.0, m - max(ms))
    return min(1.0, max(0.0, value * np.exp(-0.5 * (beyond / h) ** 2)))


def test_below_the_held_out_range_the_confidence_runs_to_the_in_sample_value(rng):
    for _ in range(50):
        k = int(rng.integers(2, 9))
        ms, ss = rng.uniform(0.5, 3.0, k), rng.uniform(0, 1, k)
        m_in, s_in = rng.uniform(0, 0.3, k), rng.uniform(0.5, 1, k)
        with_in, without = Calibration(ms, ss, m_in, s_in), Calibration(ms, ss)
        a, b, m0 = m_in.mean(), s_in.mean(), ms.min()
        for m in rng.uniform(0, 4, 20):
            old = _regression_reference(m, ms, ss)
            assert without.confidence(m) == pytest.approx(old, abs=1e-9)
            if m >= m0:
                want = old
            else:  # a straight line from (mean m_in, mean s_in) to the regression at the smallest held-out m
                t = max(0.0, (m - a) / (m0 - a))
                want = (1 - t) * b + t * _regression_reference(m0, ms, ss)
            assert with_in.confidence(m) == pytest.approx(want, abs=1e-9)
    with pytest.raises(ValueError):
        Calibration(np.array([1.0]), np.array([0.5]), np.array([0.0, 0.1]), np.array([1.0]))
    with pytest.raises(ValueError):
        Calibration(np.array([1.0]), np.array([0.5]), np.array([-0.1]), np.array([1.0]))


PALETTE = np.array([[230, 40, 40], [40, 200, 60], [40, 60, 220], [240, 220, 40], [200, 60, 200], [40, 210, 210],
                    [250, 150, 30], [120, 60, 20]])


def stripes(seed, h=96, w=128):
    """Saturated stripes of one palette in random widths and order, lightly textured."""
    r = np.random.default_rng(seed)
    cols = np.repeat(r.integers(0, len(PALETTE), 40), r.integers(6, 16, 40))[:w]
    img = PALETTE[cols][None].repeat(h, 0).astype(float) + r.normal(0, 4, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def gradient(seed, h=96, w=128):
    r = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    a, b = r.uniform(-1, 1, 2)
    g = 128 + 100 * np.sin(3 * (a * x + b * y) + r.uniform(0, 6))
    tint = r.uniform(-8, 8, 3)
    return np.clip(g[..., None] + tint, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def stripes_model():
    return hc.fit([stripes(s) for s in range(6)])


def test_confident_on_its_kind_near_gray_on_another(stripes_model):
    m = stripes_model
    assert m.calibration is not None
    same = m.colorize(stripes(100), details=True)
    other = m.colorize(gradient(7), details=True)
    assert 0 <= other.image_confidence <= same.image_confidence <= 1
    assert same.image_confidence > 0.5 and other.image_confidence < 0.2
    chroma = lambda c: np.hypot(*core.rgb_to_lab(c.rgb)[1].reshape(-1, 2).T).mean()  # noqa: E731
    assert chroma(other) < 3.0 < chroma(same)  # near gray, never invented saturated colors
    for c in (same, other):
        assert c.confidence.shape == c.status.shape and c.confidence.dtype == np.float32
        assert np.all((c.confidence >= 0) & (c.confidence <= 1))
        assert np.all(c.confidence[c.status == Status.GRAY] == 0)


def test_confidence_settings_and_file(stripes_model, tmp_path):
    m = stripes_model
    img = gradient(3)
    raw = m.colorize(img, use_confidence=False, details=True)
    assert raw.image_confidence == m.colorize(img, details=True).image_confidence  # reported either way
    gray = m.colorize(stripes(100), min_confidence=1.0)
    assert np.all(gray == np.asarray(Image.fromarray(stripes(100)).convert("L"))[..., None])  # refused: gray
    m.save(tmp_path / "m.hyc")
    loaded = hc.load(tmp_path / "m.hyc")
    np.testing.assert_array_equal(loaded.calibration.m, m.calibration.m)
    assert hc.fit([stripes(0), stripes(1)], calibration_folds=0).calibration is None
    assert hc.fit([stripes(0)]).calibration is None  # one image: nothing to hold out
    with pytest.raises(ValueError, match="calibration_folds"):
        hc.fit([stripes(0)], calibration_folds=1)


def blobs(seed, h=96, w=128):
    """Colored discs on a colored ground."""
    r = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    img = np.zeros((h, w, 3)) + r.uniform(60, 200, 3)
    for _ in range(12):
        cy, cx, rad = r.uniform(0, h), r.uniform(0, w), r.uniform(6, 20)
        img[(y - cy) ** 2 + (x - cx) ** 2 < rad ** 2] = r.uniform(0, 255, 3)
    return np.clip(img + r.normal(0, 3, img.shape), 0, 255).astype(np.uint8)


def checker(seed, h=96, w=128):
    r = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    c = ((y // 12 + x // 12) % 2)[..., None]
    a, b = r.uniform(0, 255, 3), r.uniform(0, 255, 3)
    return np.clip(c * a + (1 - c) * b + r.normal(0, 3, (h, w, 3)), 0, 255).astype(np.uint8)


def test_training_images_unlike_each_other_still_trust_what_they_hold(tmp_path):
    """Keyframes of different shots: held out, each is far from the rest (large distance, small safe scale),
    which alone would give even a training image itself a small confidence. Frames next to a keyframe (here
    the image moved 3 pixels, with new noise) are colored, not turned gray."""
    train = [stripes(0), blobs(1), checker(3)]
    m = hc.fit(train)
    cal = m.calibration
    assert cal.m_in.shape == cal.s_in.shape == (3,) and np.all(cal.m_in < cal.m.min())
    held_out_only = Calibration(cal.m, cal.s)
    r = np.random.default_rng(9)
    for img in train:
        moved = np.clip(np.roll(img, 3, axis=1) + r.normal(0, 3, img.shape), 0, 255).astype(np.uint8)
        for x in (img, moved):
            g = np.asarray(Image.fromarray(x).convert("L"))
            c = m.colorize(g, details=True)
            assert c.image_confidence > 0.5
            raw = m.colorize(g, use_confidence=False, details=True)
            assert held_out_only.confidence(_descriptor_of(m, g)) < c.image_confidence
            gray = np.repeat(g[..., None], 3, -1)
            assert psnr(c.rgb, x) > psnr(gray, x) + 3 and raw.image_confidence == c.image_confidence
    m.save(tmp_path / "m.hyc")
    loaded = hc.load(tmp_path / "m.hyc").calibration
    np.testing.assert_array_equal(loaded.m_in, cal.m_in)
    np.testing.assert_array_equal(loaded.s_in, cal.s_in)


def _descriptor_of(model, gray):
    from hyperchroma import pipeline

    prepared = pipeline.prepare(gray, int(model.fit_settings.size))
    _, found = pipeline.model_colors(model.classifier, model.quantizer, model.color_table, prepared,
                                     model.colorize_settings, 1)
    return descriptor(found.status, found.distance)


def test_a_model_file_without_in_sample_points_keeps_the_held_out_regression(stripes_model, tmp_path):
    """Files written before the in-sample points were kept load with none: the regression alone, as before."""
    from hyperchroma.model import Model

    m = stripes_model
    old = Model(m.classifier, m.quantizer, m.color_table, m.fit_settings, m.colorize_settings, m.threads,
                m.keyframes, Calibration(m.calibration.m, m.calibration.s))
    old.save(tmp_path / "old.hyc")
    cal = hc.load(tmp_path / "old.hyc").calibration
    assert cal.m_in.size == 0 and cal.s_in.size == 0
    for d in (0.0, 0.5, 1.0, 3.0):
        assert cal.confidence(d) == Calibration(m.calibration.m, m.calibration.s).confidence(d)


def test_recolor_leaves_own_colors_when_unsure(stripes_model):
    img = np.clip(gradient(5).astype(int) + [40, -20, 0], 0, 255).astype(np.uint8)
    out = stripes_model.recolor(img, strength=1.0)
    assert np.abs(out.astype(int) - img).mean() < 2.0
