"""Image input the way Pillow users expect, and clear errors for everything else."""

import numpy as np
import pytest
from PIL import Image

from hyperchroma.images import ImageError, image_paths, load_image, model_shape


def test_modes(tmp_path, rng):
    rgb = rng.integers(0, 256, (9, 13, 3), dtype=np.uint8)
    base = Image.fromarray(rgb)
    np.testing.assert_array_equal(load_image(base), rgb)
    rgba = base.convert("RGBA")
    np.testing.assert_array_equal(load_image(rgba), rgb)
    assert load_image(base.convert("L")).shape == (9, 13)
    assert load_image(base.convert("LA")).shape == (9, 13)
    assert load_image(base.convert("1")).shape == (9, 13)
    pal = base.convert("P")
    np.testing.assert_array_equal(load_image(pal), np.asarray(pal.convert("RGB")))
    cmyk = base.convert("CMYK")
    np.testing.assert_array_equal(load_image(cmyk), np.asarray(cmyk.convert("RGB")))
    np.testing.assert_array_equal(load_image(np.dstack([rgb, rgb[..., :1]])), rgb)  # RGBA array: alpha dropped
    np.testing.assert_array_equal(load_image(rgb[..., :1]), rgb[..., 0])


def test_sixteen_bit_png(tmp_path):
    a = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000).astype(np.uint16)
    p = tmp_path / "deep.png"
    Image.fromarray(a).save(p)
    g = load_image(p)
    assert g.dtype == np.uint8 and g.shape == (8, 8)
    np.testing.assert_array_equal(g, np.clip(np.rint(a / 257.0), 0, 255).astype(np.uint8))


def test_exif_orientation_is_applied(tmp_path, rng):
    rgb = rng.integers(0, 256, (10, 20, 3), dtype=np.uint8)
    img = Image.fromarray(rgb)
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 CW on display
    p = tmp_path / "rot.jpg"
    img.save(p, exif=exif, quality=95)
    assert load_image(p).shape == (20, 10, 3)


def test_paths_and_errors(tmp_path, rng):
    rgb = rng.integers(0, 256, (6, 7, 3), dtype=np.uint8)
    good = tmp_path / "a.png"
    Image.fromarray(rgb).save(good)
    np.testing.assert_array_equal(load_image(good), rgb)
    np.testing.assert_array_equal(load_image(str(good)), rgb)
    with pytest.raises(ImageError, match="no such file"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(ImageError, match="directory"):
        load_image(tmp_path)
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image at all")
    with pytest.raises(ImageError, match="cannot read"):
        load_image(junk)
    trunc = tmp_path / "trunc.png"
    trunc.write_bytes(good.read_bytes()[:40])
    with pytest.raises(ImageError, match="cannot read"):
        load_image(trunc)
    with pytest.raises(TypeError, match="uint8"):
        load_image(rgb.astype(np.float32))
    with pytest.raises(TypeError, match="path, PIL image"):
        load_image(42)
    with pytest.raises(ImageError, match="shape"):
        load_image(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(ImageError, match="empty"):
        load_image(np.zeros((0, 4), np.uint8))
    assert issubclass(ImageError, ValueError)


def test_image_paths(tmp_path):
    for n in ("b.png", "a.jpg", "notes.txt"):
        (tmp_path / n).write_bytes(b"x")
    assert [p.name for p in image_paths([tmp_path])] == ["a.jpg", "b.png"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ImageError, match="no images"):
        image_paths([empty])
    with pytest.raises(ImageError, match="no such file"):
        image_paths([tmp_path / "nope"])


def test_model_shape():
    assert model_shape(576, 768, 224) == (168, 224)
    assert model_shape(100, 100, 224) == (224, 224)
    assert model_shape(10000, 10, 224) == (224, 16)  # short side kept usable for the classifier
