"""Edge cases found in review: oversized arguments, silent casts, settings types, CLI footguns."""

import json
import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

import hyperchroma as hc
from hyperchroma import core, model_file
from hyperchroma.cli import main
from hyperchroma.demo import demo_frames
from hyperchroma.model_file import ModelFileError


def test_sizes_beyond_int_are_refused():
    m = np.ones((1, 2, 2), np.float32)
    with pytest.raises(ValueError, match="too large"):
        core.upsample_bilinear(m, 2**32 + 1, 1)
    with pytest.raises(ValueError, match="too large"):
        core.hypercolumns([m], 1, 2**32 + 1)


def test_huge_radius_and_bounds_behave():
    q = np.array([[2, 2, 2], [0, 0, 0], [1, 1, 1], [2, 2, 1]], np.uint8)
    keys = core.pack_keys(q, 3)
    found = np.array([1, 0, 0, 0], np.uint8)
    small = core.neighbor_seeds(keys, found, 2, 2, 3, 3, radius=1)
    huge = core.neighbor_seeds(keys, found, 2, 2, 3, 3, radius=2**31 - 1)
    for a, b in zip(small, huge):
        np.testing.assert_array_equal(a, b)
    idx = core.SortedIndex(keys[:1], np.zeros((1, 2), np.float32), np.ones(3, np.float32), 3, 3)
    for bound in (1e9, 1e10, 1e19, 1e30, np.inf):
        i, d = idx.search(keys[1:2], exact=True, bounds=np.array([bound], np.float32))
        assert i[0] == 0 and d[0] == pytest.approx(np.sqrt(12))


@pytest.mark.parametrize("fn", [lambda a: core.rgb_to_lab(a), lambda a: core.gray_to_lightness(a[..., 0]),
                                lambda a: core.pack_keys(a, 3)])
def test_uint8_kernels_refuse_other_dtypes(fn):
    with pytest.raises(TypeError, match="uint8"):
        fn(np.array([[300.0, -5, 1.5]]))
    with pytest.raises(TypeError, match="uint8"):
        fn(np.array([[3, 1, 1]], np.int64))


@pytest.fixture(scope="module")
def small_model():
    return hc.fit(demo_frames()[0][:2])


def test_vote_bin_comes_from_tolerance(tmp_path):
    m = hc.fit(demo_frames()[0][:1], policy="vote", tolerance=30.0)
    assert m.table.vote_bin == 30.0
    m.save(tmp_path / "v.hyc")
    assert hc.load(tmp_path / "v.hyc").table.vote_bin == 30.0


def test_settings_types(tmp_path):
    train = demo_frames()[0][:1]
    m = hc.fit(train, levels=np.int64(3), max_distance=np.float32(5), exact=np.bool_(False))
    assert type(m.settings.levels) is int and type(m.settings.max_distance) is float
    m.save(tmp_path / "np.hyc")  # JSON-able
    for bad, err in ((dict(tolerance="12"), TypeError), (dict(max_distance="5"), TypeError),
                     (dict(exact="no"), TypeError), (dict(one_step=1), TypeError),
                     (dict(tolerance=float("inf")), ValueError),
                     (dict(levels=3.0), TypeError), (dict(max_distance=-1), ValueError)):
        with pytest.raises(err):
            hc.fit(train, **bad)


def test_evaluate_argument_checks(small_model):
    test = demo_frames()[1][:2]
    with pytest.raises(ValueError, match="names"):
        small_model.evaluate(test, names=["a"])
    with pytest.raises(ValueError, match="pass_share"):
        small_model.evaluate(test, pass_share=7)


def test_save_refusals_and_failed_replace(small_model, tmp_path, monkeypatch):
    with pytest.raises(ModelFileError, match="directory"):
        small_model.save(tmp_path)
    p = tmp_path / "m.hyc"
    small_model.save(p)
    before = p.read_bytes()

    def fail(*a, **k):
        raise OSError("rename failed")

    monkeypatch.setattr(model_file.os, "replace", fail)
    with pytest.raises(OSError, match="rename failed"):
        small_model.save(p)
    assert p.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["m.hyc"]  # the temporary file is gone


def test_negative_shape_in_a_crafted_file_is_refused(tmp_path):
    p = tmp_path / "m.hyc"
    model_file.save(p, {}, {"a": np.zeros(5, np.float32)})
    data = bytearray(p.read_bytes())
    magic, major, minor, hlen, flen, crc, r = struct.unpack_from("<8sHHIQII", data, 0)
    header = bytes(data[32:32 + hlen])
    spec = json.loads(header)["arrays"]["a"]
    new = header.replace(b'"shape": [5]', b'"shape": [-5]').replace(
        f'"nbytes": {spec["nbytes"]}'.encode(), f'"nbytes": -{spec["nbytes"]}'.encode())
    new = new.rstrip(b" ").ljust(hlen, b" ")
    assert len(new) == hlen and new != header
    data[32:32 + hlen] = new
    struct.pack_into("<8sHHIQII", data, 0, magic, major, minor, hlen, flen, zlib.crc32(bytes(data[32:])), r)
    p.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="negative"):
        model_file.load(p)


def test_cli_footguns(small_model, tmp_path, capsys):
    mp = tmp_path / "m.hyc"
    small_model.save(mp)
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(np.full((20, 30), 90, np.uint8)).save(folder / "a.png")
    before = (folder / "a.png").read_bytes()
    assert main(["colorize", str(folder), "-m", str(mp), "-o", str(folder), "-q"]) == 1
    assert "overwrite the input" in capsys.readouterr().err
    assert (folder / "a.png").read_bytes() == before
    assert main(["colorize", str(folder), "-m", str(mp), "-o", str(tmp_path / "o"), "--strength", "5"]) == 1
    assert "--recolor" in capsys.readouterr().err
    test = demo_frames()[1][:1]
    assert main(["evaluate", str(test[0]), "-m", str(mp), "--sheet", str(tmp_path / "no" / "s.png")]) == 1
    err = capsys.readouterr().err
    assert "does not exist" in err and ".tmp" not in err
    assert main(["evaluate", str(test[0]), "-m", str(mp), "--pass-share", "7", "-q"]) == 1
    assert "pass_share" in capsys.readouterr().err
