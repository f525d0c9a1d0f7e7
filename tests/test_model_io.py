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


def test_loaded_model_survives_its_file_changing(model, frames, tmp_path):
    p = tmp_path / "m.hyc"
    model.save(p)
    loaded = hc.load(p)
    before = loaded.colorize(frames[1][0])
    os.truncate(p, 0)  # a memory-mapped model would crash here (SIGBUS)
    np.testing.assert_array_equal(loaded.colorize(frames[1][0]), before)
    model.with_settings(median_size=1).save(p)  # another model copied over the file
    np.testing.assert_array_equal(loaded.colorize(frames[1][0]), before)


def test_load_validates_contents(model, tmp_path):
    import hashlib

    p = tmp_path / "m.hyc"
    model.save(p)
    meta, arrays = model_file.load(p)
    cases = {
        "nan thresholds": dict(thresholds=np.full_like(arrays["thresholds"], np.nan)),
        "unsorted thresholds": dict(thresholds=arrays["thresholds"][:, ::-1].copy()),
        "wrong weights": dict(weights=arrays["weights"][:3].copy()),
        "nan colors": dict(table_ab=np.full_like(arrays["table_ab"], np.nan)),
    }
    for what, change in cases.items():
        bad = dict(arrays, **change)
        model_file.save(tmp_path / "bad.hyc", meta, bad)
        with pytest.raises(ModelFileError, match="bad.hyc"):
            hc.load(tmp_path / "bad.hyc")
    for settings in ({"size": 100000}, {"median_size": 301}, {"levels": 4}):
        m2 = dict(meta, fit_settings=dict(meta["fit_settings"]), colorize_settings=dict(meta["colorize_settings"]))
        for k, v in settings.items():
            (m2["fit_settings"] if k in m2["fit_settings"] else m2["colorize_settings"])[k] = v
        model_file.save(tmp_path / "bad.hyc", m2, arrays)
        with pytest.raises(ModelFileError, match="bad.hyc"):
            hc.load(tmp_path / "bad.hyc")
    assert hashlib.sha256(arrays["classifier"].tobytes()).hexdigest() == meta["classifier"]["identity"]


def test_format_1_0_files_still_load(model, frames, tmp_path):
    p = tmp_path / "m.hyc"
    model.save(p)
    meta, arrays = model_file.load(p)
    old = {k: v for k, v in meta.items() if k not in ("fit_settings", "colorize_settings")}
    flat = dict(meta["fit_settings"], **meta["colorize_settings"])
    del flat["vote_bin"], flat["samples_per_image"], flat["seed"]
    old["settings"] = flat
    model_file.save(tmp_path / "old.hyc", old, arrays)
    np.testing.assert_array_equal(hc.load(tmp_path / "old.hyc").colorize(frames[1][0]), model.colorize(frames[1][0]))
