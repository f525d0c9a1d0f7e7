"""Edge bars (letterbox, pillarbox, thin frames): their detection against the slow reference and by
construction, and the model keeping them out of the classifier (colorize, the film engine's calls, fit)."""

import numpy as np
import pytest

import hyperchroma as hc
from hyperchroma import pipeline
from hyperchroma.borders import Box, content_box, leading, leading_py
from hyperchroma.images import load_image, luma
from hyperchroma.lookup import Status


def picture(rng, h, w, lo=40):
    """A textured picture (smoothed noise plus a gradient) whose values stay in lo..255: never bar-like."""
    noise = rng.integers(0, 256, size=(h // 4 + 2, w // 4 + 2)).astype(np.float64)
    big = np.kron(noise, np.ones((4, 4)))[:h, :w]
    ramp = np.linspace(0, 60, w)[None, :]
    v = 0.6 * big + ramp + rng.normal(0, 8, size=(h, w))
    return np.clip(lo + v * (255 - lo) / max(1.0, v.max()), lo, 255).astype(np.uint8)


def framed(pic, bars, level=0, sigma=0.0, rng=None):
    """``pic`` inside bars of (top, bottom, left, right) pixels at ``level`` with gaussian noise ``sigma``."""
    t, b, l, r = bars
    h, w = pic.shape
    out = np.full((h + t + b, w + l + r), level, np.float64)
    if sigma:
        out += rng.normal(0, sigma, size=out.shape)
    out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    out[t:t + h, l:l + w] = pic
    return out, Box(t, t + h, l, l + w)


# ------------------------------------------------------------------------------------------------ detection
def test_random_bars_are_found_exactly(rng):
    for _ in range(60):
        h, w = int(rng.integers(40, 200)), int(rng.integers(40, 200))
        pic = picture(rng, h, w)
        bars = tuple(int(rng.integers(0, 2)) * int(rng.integers(1, max(2, min(h, w) // 3))) for _ in range(4))
        level = int(rng.choice([0, 0, 5, 16, 30]))
        img, box = framed(pic, bars, level)
        assert content_box(img) == box, (bars, level)
        assert content_box(img, reference=True) == box


def test_noisy_near_black_and_dark_gray_bars(rng):
    pic = picture(rng, 120, 160, lo=60)
    for level, sigma in [(8, 3.0), (4, 2.0), (16, 1.5), (40, 2.5), (0, 3.0)]:
        img, box = framed(pic, (30, 30, 0, 0), level, sigma, rng)
        assert content_box(img) == box, (level, sigma)
        img, box = framed(pic, (0, 0, 25, 25), level, sigma, rng)
        assert content_box(img) == box, (level, sigma)


def test_a_ragged_edge_is_cut_with_its_bar(rng):
    pic = picture(rng, 100, 140)
    img, _ = framed(pic, (5, 5, 5, 5), 0)
    H, W = img.shape
    for k in range(W):  # the inner edge wanders 0-2 pixels into the picture
        d = int(rng.integers(0, 3))
        img[5:5 + d, k] = 0
        img[H - 5 - d:H - 5, k] = 0
    for k in range(H):
        d = int(rng.integers(0, 3))
        img[k, 5:5 + d] = 0
        img[k, W - 5 - d:W - 5] = 0
    box = content_box(img)
    assert 7 <= box.top <= 8 and H - 8 <= box.bottom <= H - 7
    assert 7 <= box.left <= 8 and W - 8 <= box.right <= W - 7
    inner = img[box.top:box.bottom, box.left:box.right]
    assert (inner == 0).mean() < 0.01


def test_no_bars(rng):
    for _ in range(20):
        img = picture(rng, int(rng.integers(20, 150)), int(rng.integers(20, 150)), lo=0)
        assert content_box(img).is_full(*img.shape)
    flat = np.full((64, 80), 0, np.uint8)  # a blank image is not all bar
    assert content_box(flat).is_full(64, 80)
    ramp = np.tile(np.linspace(0, 255, 80).astype(np.uint8), (64, 1))
    assert content_box(ramp).is_full(64, 80)
    assert content_box(ramp.T.copy()).is_full(80, 64)
    assert content_box(np.zeros((3, 5), np.uint8)).is_full(3, 5)
    assert content_box(np.zeros((1, 1), np.uint8)).is_full(1, 1)


def test_dark_content_is_not_a_bar(rng):
    h, w = 120, 160
    city = picture(rng, h, w)
    # a night sky: dark, noisy, slowly brightening towards the horizon, over a lit city
    sky = np.linspace(2, 30, 50)[:, None] + rng.normal(0, 2, size=(50, w))
    night = city.copy()
    night[:50] = np.clip(np.rint(sky), 0, 255).astype(np.uint8)
    assert content_box(night).is_full(h, w)
    # dark content that does not span the whole edge
    corner = city.copy()
    corner[:40, :120] = 0
    assert content_box(corner).is_full(h, w)
    # a dark region that ends softly (no step to the content)
    soft = city.astype(np.float64)
    fade = np.clip(np.arange(h) / 60.0, 0, 1)[:, None]
    soft = np.clip(np.rint(soft * fade), 0, 255).astype(np.uint8)
    assert content_box(soft).is_full(h, w)
    # a grainy dark stretch (more noise than a bar has)
    grain = city.copy()
    grain[:30] = np.clip(np.rint(rng.normal(12, 7, size=(30, w))), 0, 255).astype(np.uint8)
    assert content_box(grain).is_full(h, w)


def test_uniform_bright_content_is_not_a_bar_but_a_flat_margin_is(rng):
    pic = picture(rng, 96, 128, lo=0)
    stripe = pic.copy()
    stripe[:, :14] = np.clip(np.rint(rng.normal(150, 2.5, size=(96, 14))), 0, 255).astype(np.uint8)
    assert content_box(stripe).is_full(96, 128)  # a wall or stripe at the edge, with its grain
    img, box = framed(picture(rng, 96, 128, lo=0), (0, 0, 12, 12), 255)  # a white scan margin
    img[:, :12] = 255
    assert content_box(img) == box


def test_bars_larger_than_allowed_are_not_bars(rng):
    pic = picture(rng, 20, 160)
    img, _ = framed(pic, (60, 60, 0, 0), 0)  # a picture of 14% of the height: not a letterbox
    assert content_box(img).is_full(*img.shape)


def test_block_version_matches_the_reference(rng):
    for trial in range(300):
        h, w = int(rng.integers(1, 70)), int(rng.integers(1, 70))
        kind = trial % 4
        if kind == 0:
            plane = rng.integers(0, 256, size=(h, w)).astype(np.uint8)
        else:
            pic = picture(rng, max(h, 4), max(w, 4), lo=int(rng.integers(0, 60)))
            bars = tuple(int(rng.integers(0, max(1, h // 2))) for _ in range(2)) + (0, 0)
            plane, _ = framed(pic, bars, int(rng.integers(0, 40)), float(rng.choice([0, 1, 3, 6])), rng)
            if kind == 3:  # rows of mixed share near the edge
                k = int(rng.integers(0, plane.shape[0]))
                plane[k, rng.random(plane.shape[1]) < rng.random()] = 0
        for view in (plane, plane[::-1], plane.T, plane.T[::-1], plane[:, ::2]):
            assert leading(view) == leading_py(view), (trial, view.shape)
        assert content_box(plane) == content_box(plane, reference=True)


def test_content_box_refuses_other_inputs():
    with pytest.raises(ValueError, match="uint8"):
        content_box(np.zeros((10, 10), np.float32))
    with pytest.raises(ValueError, match="gray"):
        content_box(np.zeros((10, 10, 3), np.uint8))


# ------------------------------------------------------------------------------------------------ the model
def letterboxed(rgb, top, bottom, left=0, right=0, level=0):
    H, W = rgb.shape[:2]
    out = np.full((H + top + bottom, W + left + right, 3), level, np.uint8)
    out[top:top + H, left:left + W] = rgb
    return out


@pytest.fixture(scope="module")
def test_frames(frames):
    return [load_image(p) for p in frames[1][:2]]


def test_letterboxed_image_colorizes_its_picture_like_the_bare_one(model, test_frames):
    for rgb in test_frames:
        gray = luma(rgb)
        plain = model.colorize(gray, details=True)
        for bars in [(48, 48, 0, 0), (0, 0, 64, 64), (3, 3, 3, 3)]:
            boxed = letterboxed(rgb, *bars)
            t, b, l, r = bars
            res = model.colorize(luma(boxed), details=True)
            H, W = boxed.shape[:2]
            pic = res.rgb[t:H - b, l:W - r]
            assert np.array_equal(pic, plain.rgb)  # the very same picture: the same colors
            assert res.image_confidence == pytest.approx(plain.image_confidence)
            assert plain.image_confidence > 0.5
            bar = np.ones((H, W), bool)
            bar[t:H - b, l:W - r] = False
            assert np.all(res.rgb[bar] == luma(boxed)[bar][:, None])  # bars neutral
            assert np.array_equal(model.colorize(luma(boxed)), res.rgb)  # the latency path: the same bytes
            assert res.ab.shape[:2] == res.status.shape == pipeline.prepare(luma(boxed), 224).shape
            off = model.colorize(luma(boxed), details=True, borders=False)
            if t > 3:
                assert off.image_confidence < 0.5 * plain.image_confidence  # what the bars did before


def test_noisy_bars_keep_the_confidence(model, test_frames, rng):
    rgb = test_frames[0]
    boxed = letterboxed(rgb, 40, 40)
    noise = np.clip(np.rint(rng.normal(8, 3, size=boxed.shape[:2])), 0, 255).astype(np.uint8)
    boxed[:40] = noise[:40, :, None]
    boxed[-40:] = noise[-40:, :, None]
    plain = model.colorize(luma(rgb), details=True)
    res = model.colorize(luma(boxed), details=True)
    assert res.image_confidence == pytest.approx(plain.image_confidence)
    assert np.array_equal(res.rgb[40:-40], plain.rgb)


def test_the_film_engines_calls_keep_the_full_frames_shapes(model, test_frames):
    s = model.colorize_settings
    rgb = test_frames[0]
    plain = pipeline.prepare(luma(rgb), 224)
    ab0, found0 = pipeline.model_colors(model.classifier, model.quantizer, model.color_table, plain, s)
    conf0, _ = pipeline.confidence(model.calibration, found0, plain.shape, s)
    gray = luma(letterboxed(rgb, 60, 60))
    prepared = pipeline.prepare(gray, 224)
    assert prepared.box == (60, 60 + rgb.shape[0], 0, rgb.shape[1]) and prepared.content is not None
    ab, found = pipeline.model_colors(model.classifier, model.quantizer, model.color_table, prepared, s)
    conf, pixels = pipeline.confidence(model.calibration, found, prepared.shape, s)
    h, w = prepared.shape
    assert ab.shape == (h, w, 2) and found.status.shape == found.distance.shape == (h * w,)
    assert found.ab.shape == (h * w, 2) and pixels is not None and pixels.shape == (h, w)
    assert conf == pytest.approx(conf0)
    status = found.status.reshape(h, w)
    bar_rows = ((np.arange(h) + 0.5) * gray.shape[0] / h < 60)
    assert bar_rows.any() and np.all(ab[bar_rows] == 0) and np.all(status[bar_rows] == Status.GRAY)
    assert np.all(np.isinf(found.distance.reshape(h, w)[bar_rows])) and np.all(pixels[bar_rows] == 0)
    inside = ~(bar_rows | bar_rows[::-1])
    assert (status[inside] != Status.GRAY).mean() > 0.5
    # the pasted picture is the bare one's, resampled onto the frame's grid
    assert np.abs(ab[inside].mean(axis=(0, 1)) - ab0.mean(axis=(0, 1))).max() < 1.0
    off = pipeline.model_colors(model.classifier, model.quantizer, model.color_table, prepared,
                                s.replace(borders=False))[0]
    assert np.array_equal(off, pipeline.model_colors(model.classifier, model.quantizer, model.color_table,
                                                     pipeline.prepare(gray, 224, borders=False), s)[0])


def test_bare_images_are_untouched(model, test_frames):
    for rgb in test_frames:
        g = luma(rgb)
        assert pipeline.prepare(g, 224).content is None
        on, off = model.colorize(g, details=True), model.colorize(g, details=True, borders=False)
        assert np.array_equal(on.rgb, off.rgb) and on.image_confidence == off.image_confidence
        assert np.array_equal(model.colorize(g), model.colorize(g, borders=False))


def test_recolor_of_a_letterboxed_image_keeps_its_gray(model, test_frames):
    boxed = letterboxed(test_frames[0], 30, 30)
    out = model.recolor(boxed)
    assert out.shape == boxed.shape and np.array_equal(luma(out), luma(boxed))


def test_fit_leaves_training_images_bars_out(frames):
    train = [load_image(p) for p in frames[0][:3]]
    boxed = [letterboxed(t, 40, 40) for t in train[:2]] + [letterboxed(train[2], 0, 0, 50, 50, level=12)]
    kw = dict(keep_keyframes=False, calibration_folds=0)
    plain, framed_fit = hc.fit(train, **kw), hc.fit(boxed, **kw)
    a, b = plain.color_table.entries(), framed_fit.color_table.entries()
    assert all(np.array_equal(a[k], b[k]) for k in a)
    raw = hc.fit(boxed, borders=False, **kw).color_table.entries()
    assert not all(np.array_equal(a[k], raw[k]) if a[k].shape == raw[k].shape else False for k in a)
    assert framed_fit.fit_settings.borders and not hc.fit(train, borders=False, **kw).colorize_settings.borders


def test_the_setting_is_checked():
    with pytest.raises(TypeError, match="borders"):
        hc.ColorizeSettings(borders=1).checked()
    with pytest.raises(TypeError, match="borders"):
        hc.FitSettings(borders="yes").checked()


def test_the_cli_turns_it_off(frames, model, test_frames, tmp_path):
    from PIL import Image

    from hyperchroma.cli import main

    path = tmp_path / "m.hyc"
    assert main(["fit", *map(str, frames[0][:2]), "-o", str(path), "--size", "64", "--calibration-folds", "0",
                 "--no-keyframes", "--no-borders", "-q"]) == 0
    m = hc.load(path)
    assert not m.fit_settings.borders and not m.colorize_settings.borders
    model.save(tmp_path / "demo.hyc")
    boxed = letterboxed(test_frames[0], 40, 40)
    Image.fromarray(luma(boxed)).save(tmp_path / "boxed.png")
    for flag, name in (([], "on"), (["--no-borders"], "off")):
        assert main(["colorize", str(tmp_path / "boxed.png"), "-m", str(tmp_path / "demo.hyc"), "-o",
                     str(tmp_path / name), "-q", *flag]) == 0
    on = np.asarray(Image.open(tmp_path / "on" / "boxed.png"))
    off = np.asarray(Image.open(tmp_path / "off" / "boxed.png"))
    assert np.array_equal(on, model.colorize(luma(boxed)))
    assert np.array_equal(off, model.colorize(luma(boxed), borders=False)) and not np.array_equal(on, off)
