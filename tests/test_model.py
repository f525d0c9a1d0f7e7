"""The colorizer end to end on the demo frames that ship inside the package and on generated images."""

import threading

import numpy as np
import pytest
from PIL import Image

import hyperchroma as hc
from hyperchroma import core
from hyperchroma.images import ImageError


def gray_of(rgb):
    """What a user has: the gray version made the usual way."""
    return np.asarray(Image.fromarray(rgb).convert("L"))


def test_output_shape_dtype_and_luminance(model, frames):
    truth = np.asarray(Image.open(frames[1][0]).convert("RGB"))
    gray = gray_of(truth)
    out = model.colorize(gray)
    assert out.shape == truth.shape and out.dtype == np.uint8
    back = np.asarray(Image.fromarray(out).convert("L")).astype(int) - gray
    assert np.abs(back).max() <= 1 and np.mean(back == 0) >= 0.999  # the input's tones kept (convert("L"))
    assert np.hypot(*core.rgb_to_lab(out)[1].reshape(-1, 2).T).mean() > 2  # and it is colored



def test_inputs_of_every_kind_agree(model, frames, tmp_path):
    path = frames[1][1]
    rgb = np.asarray(Image.open(path).convert("RGB"))
    a = model.colorize(path)
    np.testing.assert_array_equal(a, model.colorize(str(path)))
    np.testing.assert_array_equal(a, model.colorize(Image.open(path)))
    np.testing.assert_array_equal(a, model.colorize(rgb))
    # a color image is colorized from its gray version only: the gray version gives the same picture
    np.testing.assert_array_equal(model.colorize(gray_of(rgb)), a)
    d = model.colorize(gray_of(rgb), details=True)
    status, distance = d.status, d.distance
    assert isinstance(d, hc.Colorization) and d.ab.shape == status.shape + (2,)
    with pytest.warns(DeprecationWarning, match="details"):
        rgb_old, status_old, distance_old = model.colorize(gray_of(rgb), return_status=True)
    np.testing.assert_array_equal(rgb_old, d.rgb)
    np.testing.assert_array_equal(status_old, status)
    assert status.dtype == np.uint8 and set(np.unique(status)) <= {hc.STATUS_GRAY, hc.STATUS_EXACT, hc.STATUS_NEAREST}
    assert distance.shape == status.shape and np.all(distance[status == hc.STATUS_EXACT] == 0)


def test_training_frames_are_mostly_exact_hits(model, frames):
    status = model.colorize(frames[0][0], details=True).status
    assert np.mean(status == hc.STATUS_EXACT) > 0.9


@pytest.mark.parametrize("shape", [(1, 1), (5, 17), (300, 7), (17, 5, 3)])
def test_odd_sizes(model, rng, shape):
    img = rng.integers(0, 256, shape, dtype=np.uint8)
    out = model.colorize(img)
    assert out.shape == shape[:2] + (3,)






def test_concurrent_colorize_equals_serial(model, frames):
    inputs = list(frames[1]) * 2
    serial = [model.colorize(f) for f in inputs]
    results = [None] * len(inputs)

    def work(i):
        results[i] = model.colorize(inputs[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for a, b in zip(serial, results):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(serial, model.colorize_batch(inputs, workers=2)):
        np.testing.assert_array_equal(a, b)


def test_batch_workers_are_kept_and_nest(model, frames):
    """colorize_batch's worker threads outlive a batch (same threads next time); a batch started inside one of
    them runs in that worker instead of waiting on the pool it occupies."""
    import threading

    from hyperchroma import model as model_module

    inputs = list(frames[1])[:4]
    two = model.with_settings(threads=2)
    want = [two.colorize(f) for f in inputs]
    names = set()

    def record(img):
        names.add(threading.current_thread().name)
        return img

    for _ in range(2):
        for a, b in zip(want, two.colorize_batch(inputs)):
            np.testing.assert_array_equal(a, b)
    pool = model_module._batch_pool(2)
    list(pool.map(record, range(8)))
    assert names and all(n.startswith("hyperchroma-batch") for n in names)
    assert model_module._batch_pool(2) is pool
    nested = pool.submit(two.colorize_batch, inputs).result(timeout=120)
    for a, b in zip(want, nested):
        np.testing.assert_array_equal(a, b)


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs fork")
def test_batch_in_a_forked_child(model, frames):
    """A child forked after the parent used its batch workers makes its own (the parent's threads are not there)."""
    import multiprocessing as mp

    inputs = list(frames[1])[:3]
    two = model.with_settings(threads=2)
    want = [int(a.astype(np.int64).sum()) for a in two.colorize_batch(inputs)]
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_batch_sums, args=(two, inputs, q))
    p.start()
    try:
        got = q.get(timeout=120)  # before join: a child cannot exit while its queue still holds data
    finally:
        p.join(30)
        if p.is_alive():
            p.kill()
    assert got == want and p.exitcode == 0


def _batch_sums(m, inputs, q):
    q.put([int(a.astype(np.int64).sum()) for a in m.colorize_batch(inputs)])


def test_recolor(model, frames):
    rgb = np.asarray(Image.open(frames[1][0]).convert("RGB"))
    np.testing.assert_array_equal(model.recolor(rgb, strength=0.0), rgb)  # strength 0: the image itself
    almost = model.recolor(rgb, strength=1e-6)  # its own colors, recomposed on its own luma
    assert np.abs(almost.astype(int) - rgb).mean() < 0.5
    full = model.recolor(rgb, strength=1.0)
    back = np.asarray(Image.fromarray(full).convert("L")).astype(int) - np.asarray(Image.fromarray(rgb).convert("L"))
    assert np.abs(back).max() <= 1 and np.mean(back == 0) >= 0.999
    with pytest.raises(ValueError, match="strength"):
        model.recolor(rgb, strength=2)
    with pytest.raises(ImageError, match="color image"):
        model.recolor(rgb[..., 0])





def test_one_thread_budget(model, frames):
    inputs = list(frames[1])
    two = model.with_settings(threads=2)
    serial = [two.colorize(f) for f in inputs]
    batch = two.colorize_batch(inputs, workers=2)  # 2 workers x 1 thread each, ONNX Runtime included
    for a, b in zip(serial, batch):
        np.testing.assert_array_equal(a, b)
    clf = two.classifier  # the workers ran the classifier on 1-thread sessions (the fused split's on the CPU)
    assert 1 in (clf._fused_sessions if clf.fused else clf._sessions)
    one = model.with_settings(threads=1)
    np.testing.assert_array_equal(one.colorize(inputs[0]), serial[0])
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="threads"):
            model.with_settings(threads=bad)
