"""A color film (or image) given to colorize: colorized from its luminance as always, and said so: stats'
``input_color`` and one note in the CLI. A gray film, codec and scanner noise in its chroma included, is not
called color. Only a few frames are looked at."""

import os

import numpy as np
import pytest
from PIL import Image

av = pytest.importorskip("av")
pytest.importorskip("cv2")

from hyperchroma.cli import main  # noqa: E402
from hyperchroma.images import image_in_color  # noqa: E402
from hyperchroma.video import colorize_video  # noqa: E402
from hyperchroma.video import io as vio  # noqa: E402
from test_video import FPS, H, W, film, model_and_keys, mux_frames, write_video  # noqa: E402, F401 (a fixture)


def gray(frames, noise=0, seed=0):
    """The frames' gray versions as RGB; ``noise``: per-channel noise of that many levels (a scan's chroma)."""
    rng = np.random.default_rng(seed)
    out = []
    for f in frames:
        y = np.asarray(Image.fromarray(f).convert("L"), np.int16)
        rgb = np.repeat(y[..., None], 3, axis=2)
        if noise:
            rgb = rgb + rng.integers(-noise, noise + 1, rgb.shape)
        out.append(np.clip(rgb, 0, 255).astype(np.uint8))
    return out


def encode(path, frames, codec, pix_fmt, options=None):
    with av.open(path, "w") as c:
        v = c.add_stream(codec, rate=FPS, options=options or {})
        v.width, v.height, v.pix_fmt = W, H, pix_fmt
        mux_frames(c, v, frames)
    return path


CASES = [("mp4", "libx264", "yuv420p", {"crf": "30"}), ("mkv", "ffv1", "bgr0", {}), ("avi", "mjpeg", "yuvj420p", {})]


@pytest.mark.parametrize("ext,codec,pix_fmt,options", CASES, ids=[c[1] for c in CASES])
def test_input_color_told_from_the_frames(tmp_path, model_and_keys, ext, codec, pix_fmt, options):
    m, keys, frames = model_and_keys
    for name, fr, want in [("color", frames, True), ("gray", gray(frames), False),
                           ("noisy", gray(frames, noise=3), False)]:
        src = encode(str(tmp_path / f"{name}.{ext}"), fr, codec, pix_fmt, options)
        stats = colorize_video(m, src, str(tmp_path / f"out-{name}.mkv"), keyframes=keys, progress=False)
        assert stats["input_color"] is want, (name, codec)


def test_only_a_few_frames_are_looked_at(tmp_path, model_and_keys, monkeypatch):
    m, keys, frames = model_and_keys
    n = 200
    src = write_video(str(tmp_path / "in.mp4"), [frames[t % len(frames)] for t in range(n)], audio=None)
    looked = []
    real = vio.frame_in_color

    def counting(frame):
        looked.append(1)
        return real(frame)

    monkeypatch.setattr(vio, "frame_in_color", counting)
    stats = colorize_video(m, src, str(tmp_path / "out.mkv"), keyframes=keys, progress=False)
    assert stats["frames"] == n and stats["input_color"] is True
    assert 1 <= len(looked) <= 2 * vio.COLOR_SAMPLES


def test_color_samples_spread_over_the_declared_count():
    at = vio.color_samples(1000)
    assert 0 in at and 999 in at and 500 in {a for a in at if 450 <= a <= 550} | {500}
    assert len([a for a in at if a < 1000]) <= vio.COLOR_SAMPLES + 1
    assert {0, 1, 2, 4, 8, 16} <= vio.color_samples(0)  # no count declared: the powers of two


def test_a_film_mostly_gray_with_a_color_title_is_not_called_color(tmp_path, model_and_keys):
    m, keys, frames = model_and_keys
    fr = frames[:3] + gray(frames)[3:]  # 3 color frames of 30 (a title), then gray
    src = encode(str(tmp_path / "in.mkv"), fr, "ffv1", "bgr0")
    assert colorize_video(m, src, str(tmp_path / "out.mkv"), keyframes=keys, progress=False)["input_color"] is False


def test_cli_notes_a_color_film_once(tmp_path, model_and_keys, capsys):
    m, keys, frames = model_and_keys
    model = tmp_path / "m.hyc"
    m.save(str(model))
    color = write_video(str(tmp_path / "film.avi"), frames, audio=None)
    plain = encode(str(tmp_path / "old.mkv"), gray(frames), "libx264", "yuv420p")
    out = tmp_path / "out"
    assert main(["colorize", color, plain, "-m", str(model), "-o", str(out)]) == 0
    err = capsys.readouterr().err
    notes = [line for line in err.splitlines() if "note:" in line]
    assert notes == [f"hyperchroma colorize: note: '{color}' is in color; its colors are replaced (only its "
                     "luminance is used)"]
    assert sorted(os.listdir(out)) == ["film.mp4", "old.mp4"]
    assert main(["colorize", color, "-m", str(model), "-o", str(out), "-q"]) == 0
    assert "note:" not in capsys.readouterr().err


def test_cli_notes_color_images_once_not_gray_ones(tmp_path, model_and_keys, capsys):
    m, keys, frames = model_and_keys
    model = tmp_path / "m.hyc"
    m.save(str(model))
    Image.fromarray(frames[0]).save(tmp_path / "a.png")
    Image.fromarray(frames[5]).save(tmp_path / "b.jpg", quality=90)
    Image.fromarray(gray(frames[:1])[0]).save(tmp_path / "g.jpg", quality=70)  # gray, stored as RGB
    Image.fromarray(frames[0]).convert("L").save(tmp_path / "l.png")
    out = tmp_path / "out"
    assert main(["colorize", str(tmp_path / "g.jpg"), str(tmp_path / "l.png"), "-m", str(model), "-o", str(out)]) == 0
    assert "note:" not in capsys.readouterr().err
    assert main(["colorize", str(tmp_path / "a.png"), "-m", str(model), "-o", str(out)]) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if "note:" in line]
    assert notes == [f"hyperchroma colorize: note: '{tmp_path / 'a.png'}' is in color; its colors are replaced "
                     "(only the luminance is used; --recolor corrects colors instead)"]
    assert main(["colorize", str(tmp_path / "a.png"), str(tmp_path / "b.jpg"), str(tmp_path / "g.jpg"), "-m",
                 str(model), "-o", str(out)]) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if "note:" in line]
    assert len(notes) == 1 and "2 of 3 images are in color" in notes[0]
    # --recolor is the color correction itself: nothing to note
    assert main(["colorize", str(tmp_path / "a.png"), "-m", str(model), "-o", str(out), "--recolor"]) == 0
    assert "note:" not in capsys.readouterr().err


def test_image_in_color():
    assert not image_in_color(np.zeros((10, 10), np.uint8))
    assert not image_in_color(np.full((100, 100, 3), 77, np.uint8))
    rgb = np.full((100, 100, 3), 77, np.uint8)
    rgb[:10, :10] = (200, 40, 40)  # 1 % of the pixels: a speck, not a color image
    assert not image_in_color(rgb)
    rgb[:30] = (200, 40, 40)
    assert image_in_color(rgb)
