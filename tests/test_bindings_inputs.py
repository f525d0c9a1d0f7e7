"""Hostile but valid numpy inputs to the core: misaligned views and bool arrays whose bytes are not 0/1.

A misaligned float32/uint64 view (``np.frombuffer(buf, np.float32, offset=1)``) read through a float* is
undefined behaviour: the bindings copy such arrays. In a normal build the results only have to match the
aligned input's; under the sanitizer job (.ci/sanitize, UBSan with halt_on_error) a binding that passed the
view through would stop the run with "load of misaligned address".
"""

import numpy as np
import pytest

from hyperchroma import core


def misaligned(a: np.ndarray) -> np.ndarray:
    """A copy of ``a`` at an odd address (a read-only, C-contiguous view that numpy flags as not aligned)."""
    a = np.ascontiguousarray(a)
    buf = np.zeros(a.nbytes + 1, np.uint8)
    buf[1:] = a.reshape(-1).view(np.uint8)
    out = np.frombuffer(buf.tobytes(), a.dtype, count=a.size, offset=1).reshape(a.shape)
    assert not out.flags.aligned and out.flags.c_contiguous
    return out


@pytest.fixture
def keys(rng):
    return core.pack_keys(rng.integers(0, 4, (50, 6), dtype=np.uint8), 4)


def test_misaligned_maps_and_quantizer(rng):
    maps = [rng.normal(size=(3, 5, 7)).astype(np.float32), rng.normal(size=(2, 3, 4)).astype(np.float32)]
    thresholds = np.sort(rng.normal(size=(5, 3)).astype(np.float32), axis=1)
    weights = rng.random(5).astype(np.float32)
    np.testing.assert_array_equal(core.upsample_bilinear(misaligned(maps[0]), 9, 11),
                                  core.upsample_bilinear(maps[0], 9, 11))
    np.testing.assert_array_equal(core.hypercolumns([misaligned(m) for m in maps], 9, 11),
                                  core.hypercolumns(maps, 9, 11))
    got = core.hypercolumn_keys([misaligned(m) for m in maps], 9, 11, misaligned(thresholds), misaligned(weights))
    want = core.hypercolumn_keys(maps, 9, 11, thresholds, weights)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


def test_misaligned_keys_and_colors(rng, keys):
    ab = rng.normal(size=(len(keys), 2)).astype(np.float32) * 20
    np.testing.assert_array_equal(core.unpack_keys(misaligned(keys), 6, 4), core.unpack_keys(keys, 6, 4))
    a, b = core.Table(6, 4, "mean", 12.0), core.Table(6, 4, "mean", 12.0)
    a.insert(misaligned(keys), misaligned(ab))
    b.insert(keys, ab)
    for x, y in zip(a.lookup(misaligned(keys)), b.lookup(keys)):
        np.testing.assert_array_equal(x, y)
    e = b.entries()
    t = core.Table.from_entries(6, 4, "mean", 12.0, misaligned(e["keys"]), misaligned(e["ab"]),
                                misaligned(e["counts"].astype(np.uint64)), e["conflicting"])
    for k in ("keys", "ab", "counts"):
        np.testing.assert_array_equal(t.entries()[k], e[k])
    s = core.SortedIndex(misaligned(e["keys"]), misaligned(e["ab"]), misaligned(np.ones(6, np.float32)), 6, 4)
    np.testing.assert_array_equal(s.keys, core.SortedIndex(e["keys"], e["ab"], np.ones(6, np.float32), 6, 4).keys)


def test_misaligned_images(rng):
    L = (rng.random((6, 8)) * 100).astype(np.float32)
    ab = rng.normal(size=(6, 8, 2)).astype(np.float32) * 30
    np.testing.assert_array_equal(core.lab_to_rgb(misaligned(L), misaligned(ab)), core.lab_to_rgb(L, ab))
    np.testing.assert_array_equal(core.lightness_to_gray(misaligned(L)), core.lightness_to_gray(L))
    np.testing.assert_array_equal(core.median_filter(misaligned(L), 3), core.median_filter(L, 3))
    np.testing.assert_array_equal(core.guided_filter(misaligned(L), misaligned(L), 2, 0.01),
                                  core.guided_filter(L, L, 2, 0.01))


def test_bool_bytes_other_than_0_and_1_are_normalized(keys):
    """np.frombuffer(b"\\x02", bool) is True to numpy; the core used to see a C++ bool holding 2 (undefined
    behaviour; in practice the conflict flag was dropped: (uint64)bool(2) << 63 == 0)."""
    n = len(keys)
    flags = np.frombuffer(bytes([2, 0, 4, 255, 1] * (n // 5)), bool)
    assert flags.view(np.uint8).max() > 1
    t = core.Table.from_entries(6, 4, "mean", 12.0, keys, np.zeros((n, 2), np.float32), np.ones(n, np.uint32),
                                flags)
    got = t.entries()["conflicting"]
    assert set(got.view(np.uint8).tolist()) <= {0, 1}
    np.testing.assert_array_equal(got, flags.view(np.uint8) != 0)
    # a misaligned, non-contiguous bool view too
    raw = np.frombuffer(bytes([0]) + bytes([3, 9] * n), bool, offset=1)[::2]
    t = core.Table.from_entries(6, 4, "mean", 12.0, keys, np.zeros((n, 2), np.float32), np.ones(n, np.uint32), raw)
    assert t.entries()["conflicting"].all()
