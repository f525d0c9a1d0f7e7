"""A model to and from its file: round trip, refusals, atomic saves, safety after load."""

import os

import numpy as np
import pytest
from PIL import Image

import hyperchroma as hc
from hyperchroma import model_file
from hyperchroma.model_file import ModelFileError


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


def test_save_refusals_and_failed_replace(demo_small, tmp_path, monkeypatch):
    with pytest.raises(ModelFileError, match="directory"):
        demo_small.save(tmp_path)
    p = tmp_path / "m.hyc"
    demo_small.save(p)
    before = p.read_bytes()

    def fail(*a, **k):
        raise OSError("rename failed")

    monkeypatch.setattr(model_file.os, "replace", fail)
    with pytest.raises(OSError, match="rename failed"):
        demo_small.save(p)
    assert p.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["m.hyc"]  # the temporary file is gone
