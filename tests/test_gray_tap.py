"""The gray tap of foreign models and the keys made of it: the tap is the model's gray input at stride 1 with
two 5x5 local features (against a numpy reference, on the padded frame too), its gray value gets thermometer
key channels outside the PCA, and the PCA of the other taps equals a materialized reference."""

from __future__ import annotations

import hyperchroma as hc
import numpy as np
import pytest
from hyperchroma.classifier import GRAY_TAP, Classifier
from hyperchroma.quantizer import (
    Projection,
    Quantizer,
    quantize,
    thermometer_thresholds,
)
from hyperchroma.settings import FitSettings
from test_byo import _fpn, _plain


def _window_mean(x: np.ndarray, r: int = 2) -> np.ndarray:
    """Mean over the (2r+1)^2 window cut at the borders (the slow obvious reference)."""
    h, w = x.shape
    out = np.empty_like(x, dtype=np.float64)
    for y in range(h):
        for i in range(w):
            out[y, i] = x[max(0, y - r):y + r + 1, max(0, i - r):i + r + 1].mean()
    return out


def _reference(g: np.ndarray) -> np.ndarray:
    g = g.astype(np.float64)
    m = _window_mean(g)
    std = np.sqrt(np.maximum(_window_mean(g * g) - m * m, 0))
    return np.stack([g, g - m, std])


@pytest.mark.parametrize("shape", [(7, 5), (8, 8), (33, 20)])
def test_gray_tap_is_the_gray_input_and_its_local_features(shape) -> None:
    clf = Classifier.from_bytes(_plain().SerializeToString(), providers="cpu")
    assert clf.taps[-1] == (GRAY_TAP, 3, 1) and [t.name for t in clf.taps].count(GRAY_TAP) == 1
    g = np.random.default_rng(0).random(shape, dtype=np.float32)
    got = clf.run(g)[-1]
    np.testing.assert_allclose(got, _reference(g), atol=2e-3)  # float32 E[x^2]-E[x]^2 cancellation
    np.testing.assert_array_equal(got[0], g)


def test_gray_tap_covers_the_padded_frame() -> None:
    clf = Classifier.from_bytes(_fpn(3).SerializeToString(), providers="cpu")
    h, w = 40, 45
    g = np.random.default_rng(1).random((h, w), dtype=np.float32)
    tap = clf.run(g)[-1]
    H, W = clf.frame(h, w)
    assert tap.shape == (3, H, W) == (3, 64, 64)
    padded = np.pad(g, ((0, H - h), (0, W - w)), mode="reflect")
    np.testing.assert_allclose(tap, _reference(padded), atol=2e-3)


def test_gray_tap_can_be_left_out_and_survives_a_round_trip() -> None:
    data = _plain().SerializeToString()
    without = Classifier.from_bytes(data, providers="cpu", gray_tap=False)
    assert GRAY_TAP not in [t.name for t in without.taps]
    clf = Classifier.from_bytes(data, providers="cpu")
    again = Classifier.from_bytes(clf.model_bytes, providers="cpu")
    assert again.taps == clf.taps and again.identity == clf.identity
    assert GRAY_TAP not in [t.name for t in Classifier().taps]  # the shipped classifier keeps its own taps


def test_thermometer_thresholds_split_into_equal_levels() -> None:
    v = np.random.default_rng(2).random(9000).astype(np.float32)
    for levels, copies in ((3, 8), (3, 1), (4, 3)):
        t = thermometer_thresholds(v, levels, copies)
        assert t.shape == (copies, levels - 1) and np.all(np.diff(t, axis=1) >= 0)
        q = quantize(np.repeat(v[:, None], copies, axis=1), t).astype(int)
        code = q.sum(axis=1)  # a thermometer: the sum of the levels tells the bin, one step per bin
        n = copies * (levels - 1) + 1
        counts = np.bincount(code, minlength=n)
        assert len(counts) == n and counts.min() > 0.8 * len(v) / n and counts.max() < 1.2 * len(v) / n
        order = np.argsort(v)
        assert np.all(np.diff(code[order]) >= 0)  # monotone in the value
        # neighbouring bins are one level apart in exactly one channel
        assert np.all(np.abs(np.diff(q[order], axis=0)).sum(axis=1) <= 1)


def test_projection_keeps_the_gray_tap_out_of_the_pca() -> None:
    rng = np.random.default_rng(3)
    n, widths = 3000, [20, 12, 3]
    x = (rng.standard_normal((n, sum(widths))) * np.linspace(3, 0.1, sum(widths))).astype(np.float32)
    p = Projection.learn(x, widths, 30, passthrough=2, thermometer=5, components=6)
    assert p.channels == 6 + 5 + 2
    z = p.project_samples(x)
    # the reference: PCA of the materialized non-gray columns
    xb = x[:, :32].astype(np.float64)
    xc = xb - xb.mean(axis=0)
    _, vecs = np.linalg.eigh(xc.T @ xc)
    ref = xc @ vecs[:, ::-1][:, :6]
    for j in range(6):
        np.testing.assert_allclose(np.abs(z[:, j]), np.abs(ref[:, j]), rtol=1e-3, atol=1e-3)
    for j in range(5):
        np.testing.assert_allclose(z[:, 6 + j], x[:, 32], rtol=1e-5, atol=1e-5)  # thermometer copies
    np.testing.assert_allclose(z[:, 11:], x[:, 33:], rtol=1e-5, atol=1e-5)
    # apply() on maps == projection of the materialized samples (the gray tap at stride 1)
    maps = [rng.standard_normal((c, 9, 11)).astype(np.float32) for c in widths]
    full = np.concatenate([m.reshape(m.shape[0], -1).T for m in maps], axis=1)
    np.testing.assert_allclose(p.apply(maps, (9, 11)).reshape(p.channels, -1).T, p.project_samples(full),
                               rtol=1e-4, atol=1e-4)


def test_quantizer_gives_the_gray_value_thermometer_channels() -> None:
    rng = np.random.default_rng(4)
    x = rng.standard_normal((4000, 50)).astype(np.float32)
    x[:, 47] = rng.random(4000)
    q = Quantizer.learn(x, 3, [30, 17, 3], key_channels=56, components=16, gray_tap=2, gray_channels=8)
    assert q.channels == 16 + 8 + 2
    np.testing.assert_array_equal(q.thresholds[16:24], thermometer_thresholds(x[:, 47], 3, 8))
    plain = Quantizer.learn(x, 3, [30, 17, 3], key_channels=56)  # no gray tap, 50 <= 56 channels: as they are
    assert plain.projection is None and plain.channels == 50


def test_fit_settings_for_the_keys() -> None:
    assert FitSettings().pca_channels == 16 and FitSettings().gray_channels == 8 and FitSettings().balance_taps
    with pytest.raises(ValueError, match="pca_channels"):
        FitSettings(pca_channels=-1).checked()
    with pytest.raises(TypeError, match="gray_channels"):
        FitSettings(gray_channels=1.5).checked()


def test_foreign_model_fits_with_gray_keys_and_reloads(tmp_path) -> None:
    rng = np.random.default_rng(5)
    images = [rng.integers(0, 255, (40, 48, 3), np.uint8) for _ in range(3)]
    clf = Classifier.from_bytes(_plain(3).SerializeToString(), providers="cpu")
    model = hc.fit(images, classifier=clf, size=48, calibration_folds=0, key_channels=12)
    proj = model.quantizer.projection
    assert proj is not None and model.quantizer.channels == 12  # 2 PCA + 8 gray thermometer + 2 local
    assert [m.shape[0] for m in proj.matrices] == [t.channels for t in clf.taps]
    model.save(tmp_path / "m.hyc")
    np.testing.assert_array_equal(hc.load(tmp_path / "m.hyc").colorize(images[0]), model.colorize(images[0]))
    off = hc.fit(images, classifier=clf, size=48, calibration_folds=0, gray_channels=0)
    assert off.quantizer.projection is None and off.quantizer.channels == clf.channels  # no gray keys, no PCA


@pytest.mark.parametrize("shapes, out", [
    ([(5, 9, 11), (7, 4, 6), (3, 9, 11), (2, 1, 1)], (17, 23)),  # two taps of one size, a 1x1 map
    ([(4, 1, 1)], (1, 1)),
    ([(6, 8, 8)], (8, 8)),  # the same size: no upsampling
    ([(64, 28, 21), (3, 224, 168), (130, 7, 6)], (224, 168)),
])
def test_fused_projection_matches_the_numpy_reference(shapes, out) -> None:
    rng = np.random.default_rng(6)
    K = 5
    maps = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    mats = [rng.standard_normal((s[0], K)).astype(np.float32) for s in shapes]
    mats[0][1] = 0  # zero rows are skipped by the kernel
    p = Projection(tuple(mats), rng.standard_normal(K).astype(np.float32))
    ref = p.apply_reference(maps, out)
    for threads in (1, 3):
        np.testing.assert_allclose(p.apply(maps, out, threads=threads), ref, rtol=1e-4, atol=1e-4)
    strided = [np.asfortranarray(m) for m in maps]  # converted, not misread
    np.testing.assert_allclose(p.apply(strided, out), ref, rtol=1e-4, atol=1e-4)


def test_fused_projection_rejects_mismatched_matrices() -> None:
    from hyperchroma import core

    m = np.zeros((3, 4, 4), np.float32)
    with pytest.raises(ValueError, match=r"expected \(3, 2\)"):
        core.project_upsample([m], [np.zeros((4, 2), np.float32)], np.zeros(2, np.float32), 8, 8)
    with pytest.raises(ValueError, match="one"):
        core.project_upsample([m, m], [np.zeros((3, 2), np.float32)], np.zeros(2, np.float32), 8, 8)
    with pytest.raises(ValueError, match="bias"):
        core.project_upsample([m], [np.zeros((3, 2), np.float32)], np.zeros((1, 2), np.float32), 8, 8)


def test_cli_fit_key_settings(tmp_path) -> None:
    import onnx
    from hyperchroma import cli
    from PIL import Image

    path = tmp_path / "cnn.onnx"
    onnx.save(_plain(3), str(path))
    rng = np.random.default_rng(11)
    ims = []
    for i in range(2):
        ims.append(str(tmp_path / f"im{i}.png"))
        Image.fromarray(rng.integers(0, 255, (20, 28, 3), np.uint8)).save(ims[-1])
    out = tmp_path / "m.hyc"
    common = ["fit", *ims, "-o", str(out), "-q", "--classifier", str(path), "--calibration-folds", "0"]
    assert cli.main([*common, "--pca-channels", "3", "--gray-channels", "4"]) == 0
    m = hc.load(out)
    assert m.quantizer.channels == 3 + 4 + 2 and m.fit_settings.pca_channels == 3
    assert m.classifier.taps[-1].name == GRAY_TAP
    assert m.fit_settings.balance_taps
    assert cli.main([*common, "--no-balance-taps"]) == 0 and not hc.load(out).fit_settings.balance_taps
    assert cli.main([*common, "--no-gray-tap"]) == 0
    assert GRAY_TAP not in [t.name for t in hc.load(out).classifier.taps]
    assert cli.main(["fit", *ims, "-o", str(out), "--no-gray-tap"]) == 1  # only with --classifier


def test_balanced_projection_scales_taps_but_not_the_gray_tap() -> None:
    rng = np.random.default_rng(7)
    widths = [10, 6, 3]
    x = rng.standard_normal((2000, 19)).astype(np.float32)
    x[:, :10] *= 50  # a loud tap: unbalanced, it would take every component
    p = Projection.learn(x, widths, 20, balance=True, passthrough=2, thermometer=2, components=4)
    z = p.project_samples(x)
    xb = x[:, :16].astype(np.float64)
    xc = xb - xb.mean(axis=0)
    scale = np.concatenate([np.full(10, 1 / np.sqrt(xc[:, :10].var(axis=0).sum())),
                            np.full(6, 1 / np.sqrt(xc[:, 10:].var(axis=0).sum()))])
    _, vecs = np.linalg.eigh((xc * scale).T @ (xc * scale))
    ref = (xc * scale) @ vecs[:, ::-1][:, :4]
    for j in range(4):
        np.testing.assert_allclose(np.abs(z[:, j]), np.abs(ref[:, j]), rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(z[:, 4], x[:, 16], atol=1e-5)  # the gray value, unscaled
    np.testing.assert_allclose(z[:, 6:], x[:, 17:], atol=1e-5)
