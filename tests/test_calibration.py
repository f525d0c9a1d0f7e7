"""Confidence: descriptor and scale against their definitions, the regression, and a model that knows when it
does not know (fit on saturated stripes: confident on stripes, near gray on smooth gradients)."""

import numpy as np
import pytest
from PIL import Image

import hyperchroma as hc
from hyperchroma import Status, core
from hyperchroma.calibration import FAR, Calibration, auc_scale, descriptor, optimal_scale, safe_scale
from hyperchroma.metrics import auc


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


def test_recolor_leaves_own_colors_when_unsure(stripes_model):
    img = np.clip(gradient(5).astype(int) + [40, -20, 0], 0, 255).astype(np.uint8)
    out = stripes_model.recolor(img, strength=1.0)
    assert np.abs(out.astype(int) - img).mean() < 2.0
