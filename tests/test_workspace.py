"""The latency path's reused buffers: the kernels' ``out=`` arguments, :mod:`hyperchroma.workspace`, and
``model.colorize`` allocating only its output."""

import threading
import tracemalloc

import numpy as np
import pytest

from hyperchroma import core, workspace
from hyperchroma.images import load_image, luma, model_gray, model_shape


def _kernels(rng):
    """(name, call(out) -> result, out arrays to pass) for every kernel with an ``out``."""
    gray = rng.integers(0, 256, (37, 53), dtype=np.uint8)
    maps = [rng.normal(size=(3, 9, 13)).astype(np.float32), rng.normal(size=(2, 37, 53)).astype(np.float32)]
    thresholds = np.sort(rng.normal(size=(5, 2)), axis=1).astype(np.float32)
    weights = rng.normal(size=5).astype(np.float32)
    ab = rng.normal(0, 20, (37, 53, 2)).astype(np.float32)
    guide = rng.random((37, 53)).astype(np.float32)
    words = core.key_words(5, 3)
    return [
        ("resize_gray", lambda out: core.resize_gray(gray, 20, 30, out=out), np.empty((20, 30), np.float32)),
        ("hypercolumn_keys", lambda out: core.hypercolumn_keys(maps, 37, 53, thresholds, weights, threads=2, out=out),
         (np.empty((37 * 53, words), np.uint64), np.empty(37 * 53, np.float32))),
        ("median_filter", lambda out: core.median_filter(ab, 5, threads=2, out=out), np.empty_like(ab)),
        ("median_filter u8", lambda out: core.median_filter(gray, 3, out=out), np.empty_like(gray)),
        ("guided_filter", lambda out: core.guided_filter(guide, ab, 4, 1e-2, threads=2, out=out), np.empty_like(ab)),
    ]


def _same(a, b):
    if isinstance(a, tuple):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
    else:
        np.testing.assert_array_equal(a, b)


def test_kernels_write_into_out_and_return_it(rng):
    for name, call, out in _kernels(rng):
        expected = call(None)
        # garbage in the buffer must not matter
        for o in out if isinstance(out, tuple) else (out,):
            o.fill(0xAB if o.dtype.kind == "u" else np.nan)
        got = call(out)
        _same(got, expected)
        if isinstance(out, tuple):
            assert all(g is o for g, o in zip(got, out)), name
        else:
            assert got is out, name


def test_lookup_chain_out(model, frames):
    m = model
    img = luma(load_image(frames[1][0]))
    h, w = model_shape(*img.shape, m.fit_settings.size)
    maps = m.classifier.run(model_gray(img, (h, w)))
    keys = m.quantizer.keys(maps, (h, w), 1, m.classifier.frame(h, w))
    args = (m.color_table.table, m.color_table.index, keys, h, w)
    expected = core.lookup_chain(*args, memo=False)
    out = (np.full((h * w, 2), np.nan, np.float32), np.full(h * w, 77, np.uint8), np.full(h * w, -1, np.float32))
    got = core.lookup_chain(*args, memo=False, out=out)
    assert all(g is o for g, o in zip(got, out))
    _same(got, expected)
    with pytest.raises(TypeError, match="tuple of 3"):
        core.lookup_chain(*args, out=out[:2])
    with pytest.raises(ValueError, match=r"out\[1\].*shape"):
        core.lookup_chain(*args, out=(out[0], np.empty(h * w - 1, np.uint8), out[2]))
    with pytest.raises(ValueError, match="shares memory"):
        core.lookup_chain(*args, out=(out[0], out[1], out[0].reshape(-1)[: h * w]))


def test_bad_out_is_a_clear_error(rng):
    gray = rng.integers(0, 256, (10, 12), dtype=np.uint8)
    ab = rng.normal(size=(10, 12, 2)).astype(np.float32)
    with pytest.raises(TypeError, match=r"resize_gray: out: expected a writeable C-contiguous float32"):
        core.resize_gray(gray, 5, 6, out=np.empty((5, 6)))  # float64
    with pytest.raises(TypeError, match="resize_gray: out"):
        core.resize_gray(gray, 5, 6, out=[0.0] * 30)
    with pytest.raises(ValueError, match=r"shape \(5,6\), got shape \(6,5\)"):
        core.resize_gray(gray, 5, 6, out=np.empty((6, 5), np.float32))
    with pytest.raises(ValueError, match="out"):
        core.resize_gray(gray, 5, 6, out=np.empty((6, 5), np.float32).T)  # not C-contiguous
    ro = np.empty((5, 6), np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        core.resize_gray(gray, 5, 6, out=ro)
    with pytest.raises(ValueError, match="median_filter: out: shares memory"):
        core.median_filter(ab, 3, out=ab)
    with pytest.raises(ValueError, match="guided_filter: out: shares memory"):
        core.guided_filter(ab[..., 0].copy(), ab, 2, 1e-2, out=ab)
    with pytest.raises(TypeError, match="uint8"):
        core.median_filter(gray, 3, out=np.empty((10, 12), np.float32))
    maps = [rng.normal(size=(2, 4, 4)).astype(np.float32)]
    t = np.zeros((2, 2), np.float32)
    with pytest.raises(TypeError, match="tuple of 2"):
        core.hypercolumn_keys(maps, 4, 4, t, np.ones(2, np.float32), out=np.empty((16, 1), np.uint64))
    with pytest.raises(ValueError, match="shares memory with maps"):
        core.hypercolumn_keys(maps, 4, 4, t, np.ones(2, np.float32),
                              out=(np.empty((16, 1), np.uint64), maps[0].reshape(-1)[:16]))


def test_workspace_reuses_by_name_shape_and_dtype():
    ws = workspace.Workspace()
    a = ws.get("x", (3, 4), np.float32)
    assert ws.get("x", (3, 4), np.float32) is a
    assert ws.get("y", (3, 4), np.float32) is not a
    b = ws.get("x", (4, 3), np.float32)
    assert b.shape == (4, 3) and b is not a and ws.get("x", (4, 3), np.float32) is b
    assert ws.get("x", (4, 3), np.uint8).dtype == np.uint8
    assert workspace.take(None, "x", (2,), np.float32) is None
    assert ws.nbytes == 12 + 48  # only the latest "x" and "y" are held


def test_each_thread_has_its_own_workspace():
    mine = workspace.for_thread()
    assert workspace.for_thread() is mine
    theirs = []
    t = threading.Thread(target=lambda: theirs.append(workspace.for_thread()))
    t.start()
    t.join()
    assert theirs[0] is not mine


def test_colorize_latency_path_equals_details(model, frames, rng):
    """The workspace path gives the bytes of the allocating one (calibrated model, sizes changing between
    calls, a full-range confidence, a batch), and its output is never a reused buffer."""
    imgs = [load_image(p) for p in frames[1][:3]] + [rng.integers(0, 256, (97, 131), dtype=np.uint8)]
    assert model.calibration is not None
    outs = []
    for img in imgs + imgs[:1]:
        core.clear_lookup_memo()
        fast = model.colorize(img)
        core.clear_lookup_memo()
        np.testing.assert_array_equal(fast, model.colorize(img, details=True).rgb)
        outs.append(fast)
    assert len({o.ctypes.data for o in outs}) == len(outs)  # every output its own memory
    np.testing.assert_array_equal(outs[0], outs[-1])  # the first output was not overwritten
    plain = model.with_settings(use_confidence=False, median_size=1, guided_radius=0)
    for img in imgs[:2]:
        np.testing.assert_array_equal(plain.colorize(img), plain.colorize(img, details=True).rgb)
    batch = model.colorize_batch(imgs, workers=2)
    for img, got in zip(imgs, batch):
        np.testing.assert_array_equal(got, model.colorize(img, details=True).rgb)


def test_colorize_allocates_only_its_output(model, frames):
    """After a first call at a size, ``colorize`` allocates no array but its output (numpy's allocations are
    traced by tracemalloc; the C++ kernels keep per-thread scratch)."""
    img = luma(load_image(frames[1][0]))
    for _ in range(2):
        model.colorize(img)
    tracemalloc.start()
    try:
        for memo in (True, False):
            if not memo:
                core.clear_lookup_memo()
            base = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            out = model.colorize(img)
            peak = tracemalloc.get_traced_memory()[1] - base
            assert out.nbytes <= peak < out.nbytes + 64 * 1024, (memo, peak, out.nbytes)
            del out
    finally:
        tracemalloc.stop()
