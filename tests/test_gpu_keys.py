"""Keys computed inside the ONNX graph (hyperchroma.gpu) against the C++ kernel (core.hypercolumn_keys after
the classifier running the same whole graph, not the CPU's fused first convolutions), on ONNX Runtime's CPU
execution provider: identical, bit for bit."""

import numpy as np
import pytest

pytest.importorskip("onnx")

from hyperchroma import Classifier, core  # noqa: E402
from hyperchroma.gpu import BatchKeys, axis_taps, key_layout  # noqa: E402
from hyperchroma.quantizer import Quantizer  # noqa: E402


@pytest.fixture(scope="module")
def clf():
    c = Classifier(threads=1)
    c.fused = False  # the reference taps are the whole graph's, as the keys graph runs it
    return c


def quantizer_for(clf, levels, rng):
    """Thresholds at quantiles of the taps of a random image, so every level occurs."""
    maps = clf.run(rng.random((40, 56)).astype(np.float32))
    hyper = core.hypercolumns(maps, 40, 56)
    qs = np.linspace(0, 1, levels + 1)[1:-1]
    thr = np.quantile(hyper, qs, axis=0).T.astype(np.float32)
    return Quantizer(np.sort(thr, axis=1), rng.normal(size=hyper.shape[1]).astype(np.float32))


def reference(clf, q, grays):
    return np.stack([q.keys(clf.run(g), g.shape) for g in grays])


@pytest.mark.parametrize("levels", [2, 3, 4, 5])
@pytest.mark.parametrize("shape", [(8, 8), (37, 53), (64, 48), (168, 224)])
def test_graph_keys_equal_the_kernel(clf, rng, levels, shape):
    q = quantizer_for(clf, levels, rng)
    bk = BatchKeys(clf, q, buckets=(1, 2, 4))
    grays = rng.random((3, *shape)).astype(np.float32)
    grays[0, : shape[0] // 2] = 0.5  # flat areas: values sitting on the same thresholds
    got = bk.keys(grays)
    assert got.dtype == np.uint64 and got.shape == (3, shape[0] * shape[1], key_layout(q.channels, levels)[2])
    np.testing.assert_array_equal(got, reference(clf, q, grays))


def test_buckets_chunks_and_single_images(clf, rng):
    q = quantizer_for(clf, 3, rng)
    bk = BatchKeys(clf, q, buckets=(1, 3))
    grays = rng.random((7, 20, 30)).astype(np.float32)  # chunks of 3, 3, 1
    want = reference(clf, q, grays)
    np.testing.assert_array_equal(bk.keys(grays), want)
    np.testing.assert_array_equal(bk.keys(grays[:2]), want[:2])  # padded to 3
    np.testing.assert_array_equal(bk.keys(grays[4]), want[4])  # one (h, w) image
    np.testing.assert_array_equal(bk.keys(grays.astype(np.float64)[::2]), want[::2])  # cast, strided
    assert bk.bucket(1) == 1 and bk.bucket(2) == 3 and bk.bucket(9) == 3


def test_bad_input(clf, rng):
    q = quantizer_for(clf, 3, rng)
    with pytest.raises(ValueError, match="buckets"):
        BatchKeys(clf, q, buckets=(4, 2))
    with pytest.raises(ValueError, match="buckets"):
        BatchKeys(clf, q, buckets=())
    with pytest.raises(ValueError, match="threads"):
        BatchKeys(clf, q, threads=0)
    bk = BatchKeys(clf, q)
    with pytest.raises(TypeError, match="255"):
        bk.keys(np.zeros((2, 16, 16), np.uint8))
    with pytest.raises(ValueError, match=r"\(N, h, w\)"):
        bk.keys(np.zeros((2, 16, 16, 3), np.float32))
    with pytest.raises(ValueError):
        bk.keys(np.zeros((1, 2, 2), np.float32))  # below the classifier's minimum size


def test_axis_taps_match_the_kernel_upsampling(rng):
    """The graph's separable taps reproduce core.upsample_bilinear exactly."""
    for src, dst in [(5, 5), (5, 13), (41, 164), (82, 164), (7, 3), (1, 9)]:
        x = rng.normal(size=(2, 3, src)).astype(np.float32)
        i0, i1, w0, w1, identity = axis_taps(src, dst)
        mine = x if identity else x[..., i0] * w0 + x[..., i1] * w1
        np.testing.assert_array_equal(mine, core.upsample_bilinear(x, 3, dst))
