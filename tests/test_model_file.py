"""The model file format: round trip, memory-mapped views, atomic writes, refusal of damaged files."""

import json
import os
import struct
import zlib

import numpy as np
import pytest

from hyperchroma import model_file
from hyperchroma.model_file import ModelFileError


def sample_arrays(rng):
    return {
        "keys": rng.integers(0, 2**63, (1000, 2), dtype=np.uint64),
        "ab": rng.normal(size=(1000, 2)).astype(np.float32),
        "flags": rng.random(1000) < 0.5,
        "blob": np.frombuffer(b"onnx bytes here", np.uint8),
        "empty": np.zeros((0, 3), np.float64),
    }


def test_round_trip_and_views(rng, tmp_path):
    arrays = sample_arrays(rng)
    p = tmp_path / "m.hyc"
    model_file.save(p, {"hello": [1, 2, 3]}, arrays)
    meta, out = model_file.load(p)
    assert meta == {"hello": [1, 2, 3]}
    for k, a in arrays.items():
        assert out[k].dtype == a.dtype and out[k].shape == a.shape
        np.testing.assert_array_equal(out[k], a)
    assert not out["keys"].flags.writeable  # a read-only view of the map, not a copy
    assert all(out[k].ctypes.data % 64 == 0 for k in ("keys", "ab"))


def test_failed_write_leaves_old_file_and_no_temp(rng, tmp_path, monkeypatch):
    p = tmp_path / "m.hyc"
    model_file.save(p, {"v": 1}, sample_arrays(rng))
    before = p.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(model_file.zlib, "crc32", boom)
    with pytest.raises(OSError, match="disk full"):
        model_file.save(p, {"v": 2}, sample_arrays(rng))
    assert p.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.hyc"]


def test_unsupported_dtype_refused(tmp_path):
    with pytest.raises(TypeError, match="dtype"):
        model_file.save(tmp_path / "m.hyc", {}, {"s": np.array(["a"])})
    assert os.listdir(tmp_path) == []


def test_every_truncation_is_refused(rng, tmp_path):
    p = tmp_path / "m.hyc"
    model_file.save(p, {"v": 1}, {"a": np.arange(100, dtype=np.float32)})
    data = p.read_bytes()
    bad = tmp_path / "bad.hyc"
    for n in range(0, len(data), 37):
        bad.write_bytes(data[:n])
        with pytest.raises(ModelFileError):
            model_file.load(bad)


def test_random_corruption_is_refused(rng, tmp_path):
    p = tmp_path / "m.hyc"
    model_file.save(p, {"v": 1}, {"a": np.arange(100, dtype=np.float32)})
    data = p.read_bytes()
    bad = tmp_path / "bad.hyc"
    for _ in range(50):
        b = bytearray(data)
        i = int(rng.integers(0, len(b)))
        b[i] ^= int(rng.integers(1, 256))
        bad.write_bytes(bytes(b))
        with pytest.raises(ModelFileError):
            model_file.load(bad)


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


def _with_header(tmp_path, header: bytes):
    """A file with a valid checksum around an arbitrary header (crafted, as a hostile user would)."""
    hlen = len(header)
    body = header
    flen = 32 + hlen
    crc = zlib.crc32(body)
    p = tmp_path / "crafted.hyc"
    p.write_bytes(struct.pack("<8sHHIQII", b"HYPERCHR", 1, 0, hlen, flen, crc, 0) + body)
    return p


@pytest.mark.parametrize("header", [b"[" * 1300 + b"]" * 1300, b'{"meta": {}, "arrays": {"a": {"dtype": "uint8", '
                                    b'"shape": [1180591620717411303424], "offset": 64, "nbytes": 1}}}',
                                    b'{"meta": {}, "arrays": [1]}', b'{"meta": 1, "arrays": {}}', b"\xff\xfe",
                                    b"{not json", b'{"meta": {}}', b'{"meta": {}, "arrays": {"a": 1}}',
                                    b'{"meta": {}, "arrays": {"a": {"dtype": "uint8", "shape": [1099511627776, '
                                    b'1099511627776], "offset": 64, "nbytes": 0}}}'])
def test_crafted_headers_give_model_file_errors(tmp_path, header):
    p = _with_header(tmp_path, header)
    with pytest.raises(ModelFileError, match="crafted.hyc"):
        model_file.load(p)


def _rewrite(p, data: bytearray, header: bytes):
    """Put ``header`` (padded to the old length) back into ``data`` with a valid checksum, and write it."""
    magic, major, minor, hlen, flen, crc, r = struct.unpack_from("<8sHHIQII", data, 0)
    assert len(header) <= hlen
    data[32:32 + hlen] = header.ljust(hlen, b" ")
    struct.pack_into("<8sHHIQII", data, 0, magic, major, minor, hlen, flen, zlib.crc32(bytes(data[32:])), r)
    p.write_bytes(bytes(data))


@pytest.mark.parametrize("shift", [1, 4, 8, 32])
def test_misaligned_array_offset_is_refused(tmp_path, shift):
    """An offset inside the file but off the format's 64-byte alignment (a float32 view at an odd address is
    undefined behaviour in the core) used to load; now it is a ModelFileError."""
    p = tmp_path / "m.hyc"
    model_file.save(p, {}, {"a": np.arange(5, dtype=np.float32), "pad": np.zeros(64, np.uint8)})
    data = bytearray(p.read_bytes())
    hlen = struct.unpack_from("<I", data, 12)[0]
    h = json.loads(bytes(data[32:32 + hlen]))
    h["arrays"]["a"]["offset"] += shift
    _rewrite(p, data, json.dumps(h).encode())
    with pytest.raises(ModelFileError, match="aligned"):
        model_file.load(p)
    with pytest.raises(ModelFileError, match="aligned"):
        model_file.load(p, mmap=True)


def test_oversized_header_length_says_so(tmp_path):
    p = tmp_path / "m.hyc"
    model_file.save(p, {}, {"a": np.zeros(3, np.float32)})
    data = bytearray(p.read_bytes())
    struct.pack_into("<I", data, 12, 10**9)
    struct.pack_into("<I", data, 24, zlib.crc32(bytes(data[32:])))
    p.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match=r"header length \(1000000000 bytes\) is too large") as e:
        model_file.load(p)
    assert "header says" not in str(e.value)


def _fuzz_module():
    import importlib.util

    path = os.path.join(os.path.dirname(__file__), "fuzz", "fuzz_model_file.py")
    spec = importlib.util.spec_from_file_location("fuzz_model_file", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_crafted_files_with_valid_checksums_give_only_model_file_errors(tmp_path):
    """Every field of the format (header length, file length, version, reserved, checksum; each array's dtype,
    shape, offset, nbytes; arrays added/removed; each meta field; array bytes) set to hostile values, the
    checksum valid: loading a model either works or raises ModelFileError, nothing else."""
    import random

    fz = _fuzz_module()
    seeds = [fz.roomy(fz.tiny_model_bytes()), fz.roomy(fz.every_dtype_bytes())]
    p = str(tmp_path / "crafted.hyc")
    from hyperchroma import model_file, model_io

    with open(p, "wb") as f:
        f.write(seeds[0])
    model_io.load(p)  # the seeds are well-formed: a model, and a container of every dtype
    with open(p, "wb") as f:
        f.write(seeds[1])
    assert len(model_file.load(p)[1]) == 10
    rng = random.Random(2024)
    hit = set()
    for i in range(1200):
        data, what = fz.mutate(rng, seeds[i % 2])
        hit.add(what.split("=")[0].split(" deleted")[0].split(":")[0] if not what.startswith("meta") else "meta")
        try:
            fz.load_file(data, p)
        except Exception as e:  # noqa: BLE001
            pytest.fail(f"{what}: {type(e).__name__}: {e}")
    fixed = {f"fixed field {n}" for n in ("major", "minor", "header length", "file length", "crc", "reserved")}
    model_arrays = {"classifier", "thresholds", "weights", "table_keys", "table_ab", "table_counts",
                    "table_conflicting"}
    per_array = {f"array {a}.{k}" for a in model_arrays for k in ("dtype", "shape", "offset", "nbytes")}
    assert fixed | per_array | {"meta", "arrays", "array bytes"} <= hit, sorted(fixed | per_array - hit)
