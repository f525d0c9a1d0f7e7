"""core.pwl_conv (the fused 1x1 conv + ReLU + KxK conv) against the two convolutions in numpy, and the
classifier's fused split (classifier/fused.py) against its whole graph."""

import numpy as np
import pytest
from hyperchroma import Classifier, core
from hyperchroma.classifier import fused


def reference(L, w1, b1, w2, b2, pads):
    """conv_KxK(relu(w1 * L + b1)) + b2 with zero padding, in float64: the obvious way."""
    N, H, W = L.shape
    cout, c1, K, _ = w2.shape
    t = np.maximum(L[:, None].astype(np.float64) * w1[None, :, None, None] + b1[None, :, None, None], 0)
    pt, pl = pads
    padded = np.zeros((N, c1, H + K - 1, W + K - 1))
    padded[:, :, pt:pt + H, pl:pl + W] = t
    out = np.zeros((N, cout, H, W)) + b2[None, :, None, None]
    for ky in range(K):
        for kx in range(K):
            out += np.einsum("nkhw,ck->nchw", padded[:, :, ky:ky + H, kx:kx + W], w2[:, :, ky, kx])
    return out


def run(L, w1, b1, w2, b2, pads, threads=1, out=None):
    breaks, A, B, bias = fused.tables(w1, b1, w2, b2)
    return core.pwl_conv(L, breaks, A, B, bias, pads[0], pads[1], out=out, threads=threads)


@pytest.mark.parametrize("K,pads", [(1, (0, 0)), (3, (1, 1)), (3, (0, 2)), (5, (2, 2)), (4, (1, 2))])
@pytest.mark.parametrize("shape", [(1, 1, 1), (1, 5, 7), (2, 19, 33), (1, 40, 9)])
def test_equals_the_two_convolutions(rng, K, pads, shape):
    for trial in range(3):
        c1, cout = int(rng.integers(1, 20)), int(rng.integers(1, 40))
        w1 = rng.normal(size=c1).astype(np.float32)
        b1 = rng.normal(size=c1).astype(np.float32)
        if trial == 1:
            w1[: c1 // 2] = 0  # constant channels: relu(b) everywhere, no breakpoint
            b1[-1] = -b1[0] * w1[-1] / w1[0] if w1[0] else b1[-1]  # a repeated breakpoint
        w2 = rng.normal(size=(cout, c1, K, K)).astype(np.float32)
        b2 = rng.normal(size=cout).astype(np.float32)
        L = rng.normal(size=shape).astype(np.float32) * 2
        L.reshape(-1)[:: 7] = 0.0  # values on a breakpoint where b = 0
        want = reference(L, w1, b1, w2, b2, pads)
        for threads in (1, 3):
            got = run(L, w1, b1, w2, b2, pads, threads)
            assert got.shape == want.shape and got.dtype == np.float32
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4 * (1 + np.abs(want).max()))


def test_breakpoints_exactly_hit(rng):
    """Values equal to a breakpoint (the channel contributes 0 either side) and far outside all of them."""
    w1 = np.array([1.0, -2.0, 0.5], np.float32)
    b1 = np.array([-0.25, 1.0, 0.0], np.float32)  # breaks 0.25, 0.5, 0
    w2 = rng.normal(size=(9, 3, 3, 3)).astype(np.float32)
    b2 = rng.normal(size=9).astype(np.float32)
    L = np.array([[[0.25, 0.5, 0.0, -1e6, 1e6, 0.3]]], np.float32).repeat(4, axis=1)
    np.testing.assert_allclose(run(L, w1, b1, w2, b2, (1, 1)), reference(L, w1, b1, w2, b2, (1, 1)),
                               rtol=1e-5, atol=1e-3)


def test_tables():
    breaks, A, B, bias = fused.tables(np.array([1.0, 1.0, 0.0]), np.array([-1.0, -1.0, 2.0]),
                                      np.ones((3, 3, 1, 1)), np.zeros(3))
    assert breaks.tolist() == [1.0]  # a repeated breakpoint once; a zero weight none
    assert A.shape == (1, 1, 2, 8) and B.shape == (1, 1, 2, 8) and bias.shape == (3,)
    # below 1: only the constant channel relu(2) = 2; above: also 2 * (l - 1)
    assert A[0, 0, :, :3].tolist() == [[0, 0, 0], [2, 2, 2]] and B[0, 0, :, :3].tolist() == [[2, 2, 2], [0, 0, 0]]


def test_out_and_bad_inputs(rng):
    w1, b1 = rng.normal(size=4).astype(np.float32), rng.normal(size=4).astype(np.float32)
    w2, b2 = rng.normal(size=(6, 4, 3, 3)).astype(np.float32), rng.normal(size=6).astype(np.float32)
    L = rng.normal(size=(1, 8, 10)).astype(np.float32)
    out = np.empty((1, 6, 8, 10), np.float32)
    assert run(L, w1, b1, w2, b2, (1, 1), out=out) is not None
    np.testing.assert_array_equal(out, run(L, w1, b1, w2, b2, (1, 1)))
    # non-contiguous and float64 inputs are converted
    L2 = np.asfortranarray(rng.normal(size=(1, 8, 10)))
    np.testing.assert_allclose(run(L2, w1, b1, w2, b2, (1, 1)), reference(L2, w1, b1, w2, b2, (1, 1)), atol=1e-4)
    breaks, A, B, bias = fused.tables(w1, b1, w2, b2)
    with pytest.raises(ValueError, match="out"):
        core.pwl_conv(L, breaks, A, B, bias, 1, 1, out=np.empty((1, 5, 8, 10), np.float32))
    with pytest.raises(TypeError, match="out"):
        core.pwl_conv(L, breaks, A, B, bias, 1, 1, out=np.empty((1, 6, 8, 10)))
    with pytest.raises(ValueError, match=r"\(N,H,W\)"):
        core.pwl_conv(L[0], breaks, A, B, bias, 1, 1)
    with pytest.raises(ValueError, match="breaks"):
        core.pwl_conv(L, breaks[:-1], A, B, bias, 1, 1)
    with pytest.raises(ValueError, match="ascending"):
        core.pwl_conv(L, breaks[::-1].copy(), A, B, bias, 1, 1)
    with pytest.raises(ValueError, match="B"):
        core.pwl_conv(L, breaks, A, B[:, :, :1], bias, 1, 1)
    with pytest.raises(ValueError, match="pads"):
        core.pwl_conv(L, breaks, A, B, bias, 3, 1)


# ---------------------------------------------------------------------------------------- the classifier
@pytest.fixture(scope="module")
def shipped():
    return Classifier(threads=1)


def whole(clf, gray):
    fusion = clf._fusion
    clf._fusion = None
    try:
        return clf.run(gray)
    finally:
        clf._fusion = fusion


def test_shipped_classifier_is_fused(shipped):
    assert shipped.fused
    f = shipped._fusion
    assert (f.l_name, f.mid_name, f.mid_channels) == ("L", "conv2", 25)
    assert f.source == ["before", "mid", "stage", "stage", "stage", "stage"] and f.after is None
    assert [(st.name, st.channels, st.pool, st.pads) for st in f.stages] == [
        ("conv3", 4, True, (2, 2)), ("conv4", 4, False, (2, 2)), ("conv5", 4, True, (3, 3)), ("conv6", 4, False, (7, 7))]


@pytest.mark.parametrize("shape", [(8, 8), (37, 53), (164, 224)])
def test_fused_taps_equal_the_whole_graph(shipped, rng, shape):
    gray = rng.random(shape).astype(np.float32)
    gray[: shape[0] // 2] = 0.5
    want = whole(shipped, gray)
    for got in (shipped.run(gray), [m.copy() for m in shipped.run_reusing(gray)], shipped.run_reusing(gray)):
        assert [g.shape for g in got] == [w.shape for w in want]
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=2e-5)
    batch = rng.random((3, *shape)).astype(np.float32)
    for g, w in zip(shipped.run(batch), whole(shipped, batch)):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=2e-5)
    out = [np.empty((3, *s), np.float32) for s in shipped.output_shapes(*shape)]
    shipped.run(batch, out=out)
    for g, w in zip(out, shipped.run(batch)):
        np.testing.assert_array_equal(g, w)


def test_fused_off_and_on(rng):
    clf = Classifier(threads=1)
    gray = rng.random((20, 30)).astype(np.float32)
    on = clf.run(gray)
    clf.fused = False
    assert not clf.fused
    off = clf.run(gray)
    clf.fused = True
    assert clf.fused
    for a, b in zip(on, off):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=2e-5)


def pool_conv_reference(x, w, b, pads, pool=True):
    """conv_KxK(maxpool_2x2(x)) + b, zero padding, in float64."""
    x = x.astype(np.float64)
    if pool:
        N, C, H, W = x.shape
        x = x[:, :, : H // 2 * 2, : W // 2 * 2].reshape(N, C, H // 2, 2, W // 2, 2).max(axis=(3, 5))
    N, C, H, W = x.shape
    cout, _, K, _ = w.shape
    padded = np.zeros((N, C, H + K - 1, W + K - 1))
    padded[:, :, pads[0]:pads[0] + H, pads[1]:pads[1] + W] = x
    out = np.zeros((N, cout, H, W)) + b[None, :, None, None]
    for ky in range(K):
        for kx in range(K):
            out += np.einsum("nchw,oc->nohw", padded[:, :, ky:ky + H, kx:kx + W], w[:, :, ky, kx])
    return out


@pytest.mark.parametrize("K,pads", [(1, (0, 0)), (3, (1, 1)), (5, (2, 2)), (5, (0, 4)), (4, (2, 1))])
@pytest.mark.parametrize("shape", [(1, 1, 2, 2), (1, 3, 7, 9), (2, 5, 20, 33), (1, 25, 16, 8)])
@pytest.mark.parametrize("pool", [True, False])
def test_pool_conv_equals_the_two_operators(rng, K, pads, shape, pool):
    for cout in (1, 3, 4, 6, 9):
        x = rng.normal(size=shape).astype(np.float32)
        w = rng.normal(size=(cout, shape[1], K, K)).astype(np.float32)
        b = rng.normal(size=cout).astype(np.float32)
        want = pool_conv_reference(x, w, b, pads, pool)
        for threads in (1, 3):
            got = core.pool_conv(x, w, b, pads[0], pads[1], pool=pool, threads=threads)
            assert got.shape == want.shape and got.dtype == np.float32
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4 * (1 + np.abs(want).max()))


@pytest.mark.parametrize("pool", [True, False])
def test_pool_conv_threads_on_a_large_map(rng, pool):
    """Large enough (over 6M multiply-adds) to be split among threads; the same bits as one thread. The odd
    width leaves a single 8-pixel block after the pairs."""
    x = rng.normal(size=(1, 25, 100, 2 * 75 if pool else 75)).astype(np.float32)
    w = rng.normal(size=(4, 25, 5, 5)).astype(np.float32)
    b = rng.normal(size=4).astype(np.float32)
    one = core.pool_conv(x, w, b, 2, 2, pool=pool, threads=1)
    want = pool_conv_reference(x, w, b, (2, 2), pool)
    np.testing.assert_allclose(one, want, rtol=1e-5, atol=1e-4 * (1 + np.abs(want).max()))
    for threads in (2, 3, 0):
        np.testing.assert_array_equal(core.pool_conv(x, w, b, 2, 2, pool=pool, threads=threads), one)


def test_pool_conv_out_and_bad_inputs(rng):
    x = rng.normal(size=(1, 3, 9, 10)).astype(np.float32)
    w = rng.normal(size=(2, 3, 3, 3)).astype(np.float32)
    b = rng.normal(size=2).astype(np.float32)
    out = np.empty((1, 2, 4, 5), np.float32)
    core.pool_conv(x, w, b, 1, 1, out=out)
    np.testing.assert_array_equal(out, core.pool_conv(x, w, b, 1, 1))
    np.testing.assert_allclose(core.pool_conv(x.astype(np.float64)[:, :, ::-1], w, b, 1, 1),
                               pool_conv_reference(x[:, :, ::-1], w, b, (1, 1)), atol=1e-4)
    with pytest.raises(ValueError, match="out"):
        core.pool_conv(x, w, b, 1, 1, out=np.empty((1, 2, 9, 10), np.float32))
    with pytest.raises(ValueError, match="weights"):
        core.pool_conv(x, w[:, :2], b, 1, 1)
    with pytest.raises(ValueError, match="bias"):
        core.pool_conv(x, w, b[:1], 1, 1)
    with pytest.raises(ValueError, match="pads"):
        core.pool_conv(x, w, b, 3, 1)
    with pytest.raises(ValueError, match="small"):
        core.pool_conv(x[:, :, :1], w, b, 1, 1)
    with pytest.raises(ValueError, match=r"\(N,C,H,W\)"):
        core.pool_conv(x[0], w, b, 1, 1)


def test_pool_stage_only_when_the_pooled_map_is_internal():
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    def graph(pool_out=False, k=2):
        inits = [numpy_helper.from_array(np.ones((4, 1, 1, 1), np.float32), "w1"),
                 numpy_helper.from_array(np.ones((3, 4, 3, 3), np.float32), "w2"),
                 numpy_helper.from_array(np.ones((2, 3, 5, 5), np.float32), "w3")]
        nodes = [helper.make_node("Conv", ["x", "w1"], ["a"]), helper.make_node("Relu", ["a"], ["r"]),
                 helper.make_node("Conv", ["r", "w2"], ["y"], pads=[1, 1, 1, 1]),
                 helper.make_node("MaxPool", ["y"], ["p"], kernel_shape=[k, k], strides=[k, k]),
                 helper.make_node("Conv", ["p", "w3"], ["z"], pads=[2, 2, 2, 2])]
        outs = ["r", "y", "z"] + (["p"] if pool_out else [])
        g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])],
                              [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outs], inits)
        return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString()

    f = fused.plan(graph())
    assert f is not None and [st.name for st in f.stages] == ["z"] and f.source == ["before", "mid", "stage"]
    assert f.after is None and f.stages[0].pool
    for other in (graph(pool_out=True), graph(k=3)):
        f = fused.plan(other)
        assert f is not None and not f.stages


def test_other_graphs_are_not_fused():
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    def graph(k1=1, relu=True, cin=1, extra_use=False):
        w1 = numpy_helper.from_array(np.ones((4, cin, k1, k1), np.float32), "w1")
        w2 = numpy_helper.from_array(np.ones((3, 4, 3, 3), np.float32), "w2")
        nodes = [helper.make_node("Conv", ["x", "w1"], ["a"], pads=[k1 // 2] * 4)]
        nodes.append(helper.make_node("Relu", ["a"], ["r"]) if relu else helper.make_node("Sigmoid", ["a"], ["r"]))
        nodes.append(helper.make_node("Conv", ["r", "w2"], ["y"], pads=[1, 1, 1, 1]))
        outs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
        if extra_use:  # a skip connection from the 1x1 map past the second conv
            nodes.append(helper.make_node("Add", ["y", "r"], ["z"]))
            outs = [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)]
        g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, cin, 8, 8])],
                              outs, [w1, w2])
        return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString()

    assert fused.plan(graph()) is not None
    assert fused.plan(graph(k1=3)) is None  # not a 1x1 first conv
    assert fused.plan(graph(relu=False)) is None
    assert fused.plan(graph(cin=3)) is None  # more than one input channel
    assert fused.plan(graph(extra_use=True)) is None
    assert fused.plan(b"not onnx") is None
    assert onnx is not None
