"""The ONNX Runtime runner: the shipped model, tapping foreign CNNs, providers, bad models."""

from __future__ import annotations

import hashlib
import os
import pickle
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import hyperchroma
from hyperchroma import cli
from hyperchroma import classifier as C
from hyperchroma.classifier import providers as P
from hyperchroma.classifier import Classifier, TapInfo

PAPER_TAPS = [("conv1", 15, 1), ("conv2", 25, 1), ("conv3", 4, 2), ("conv4", 4, 2), ("conv5", 4, 4), ("conv6", 4, 4)]


@pytest.fixture(scope="module")
def clf() -> Classifier:
    return Classifier(providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def gray() -> np.ndarray:
    return np.random.default_rng(0).random((3, 40, 56), dtype=np.float32)


# ------------------------------------------------------------------------------------------ shipped model
def test_shipped_model_taps(clf: Classifier) -> None:
    assert [tuple(t) for t in clf.taps] == PAPER_TAPS
    assert all(isinstance(t, TapInfo) for t in clf.taps)
    assert clf.channels == 56
    assert clf.provider == "CPUExecutionProvider"
    assert clf.min_size == 8
    assert clf.normalization["space"] == "L"
    assert clf.identity == hashlib.sha256(clf.model_bytes).hexdigest()
    assert hyperchroma.Classifier is Classifier and hyperchroma.TapInfo is TapInfo
    assert C.default_model_path().is_file()


@pytest.mark.parametrize("hw", [(224, 224), (37, 53), (8, 8), (9, 17), (528, 720)])
def test_shapes_and_strides(clf: Classifier, hw: tuple[int, int]) -> None:
    h, w = hw
    maps = clf.run(np.full(hw, 0.5, np.float32))
    assert len(maps) == len(clf.taps)
    for m, t in zip(maps, clf.taps):
        assert m.dtype == np.float32 and m.flags.c_contiguous
        assert m.shape == (t.channels, h // t.stride, w // t.stride)
    assert clf.output_shapes(h, w) == [m.shape for m in maps]


def test_batch_matches_single_and_is_deterministic(clf: Classifier, gray: np.ndarray) -> None:
    batch = clf.run(gray)
    assert [b.shape[0] for b in batch] == [3] * 6
    for i in range(3):
        single = clf.run(gray[i])
        for b, s in zip(batch, single):
            np.testing.assert_allclose(b[i], s, rtol=1e-5, atol=1e-5)
    again = clf.run(gray)  # the second run at this size writes straight into fresh arrays
    for a, b in zip(batch, again):
        assert np.array_equal(a, b)
    other = Classifier(providers="cpu")
    assert other.identity == clf.identity
    for a, b in zip(batch, other.run(gray)):
        assert np.array_equal(a, b)


def test_results_are_not_overwritten_by_later_runs(clf: Classifier) -> None:
    a = clf.run(np.zeros((16, 16), np.float32))
    a_copy = [m.copy() for m in a]
    clf.run(np.ones((16, 16), np.float32))
    clf.run(np.ones((16, 16), np.float32))
    for m, c in zip(a, a_copy):
        assert np.array_equal(m, c)


def test_input_kinds(clf: Classifier, gray: np.ndarray) -> None:
    ref = clf.run(gray[0])
    wide = np.zeros((40, 112), np.float32)
    wide[:, ::2] = gray[0]
    for x in (gray[0].astype(np.float64), wide[:, ::2], np.asfortranarray(gray[0])):
        for a, b in zip(clf.run(x), ref):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def test_out_buffers(clf: Classifier, gray: np.ndarray) -> None:
    shapes = clf.output_shapes(40, 56)
    out = [np.empty(s, np.float32) for s in shapes]
    res = clf.run(gray[1], out=out)
    assert all(r is o for r, o in zip(res, out))
    for a, b in zip(out, clf.run(gray[1])):
        assert np.array_equal(a, b)
    bout = [np.empty((3, *s), np.float32) for s in shapes]
    clf.run(gray, out=bout)
    for a, b in zip(bout, clf.run(gray)):
        assert np.array_equal(a, b)
    with pytest.raises(ValueError, match="out"):
        clf.run(gray[1], out=out[:2])
    with pytest.raises(ValueError, match="shape"):
        clf.run(gray, out=out)


def test_bad_inputs(clf: Classifier) -> None:
    with pytest.raises(ValueError, match="smaller than the classifier's minimum 8x8"):
        clf.run(np.zeros((7, 100), np.float32))
    with pytest.raises(TypeError, match="divide uint8"):
        clf.run(np.zeros((16, 16), np.uint8))
    with pytest.raises(ValueError, match="convert it to gray"):
        clf.run(np.zeros((16, 16, 3), np.float32))
    with pytest.raises(ValueError, match="expected"):
        clf.run(np.zeros((2, 2, 16, 16), np.float32))
    with pytest.raises(ValueError, match="empty batch"):
        clf.run(np.zeros((0, 16, 16), np.float32))


def _lab_lightness(g: np.ndarray) -> np.ndarray:
    """CIE L* of sRGB gray values, straight from the definitions (float64)."""
    g = g.astype(np.float64)
    y = np.where(g <= 0.04045, g / 12.92, ((g + 0.055) / 1.055) ** 2.4)
    f = np.where(y > (6 / 29) ** 3, np.cbrt(y), y / (3 * (6 / 29) ** 2) + 4 / 29)
    return 116 * f - 16


def test_builtin_normalization_matches_lab(clf: Classifier) -> None:
    """The runtime model's gray -> L conversion, through the exported model itself."""
    cv2 = pytest.importorskip("cv2")
    g = np.random.default_rng(1).random((2, 24, 32), dtype=np.float32)
    g[0, 0, :6] = [0.0, 1.0, 0.03, 0.05, -0.2, 1.3]  # both sides of the sRGB and Lab knees, clamped ends
    lab_l = _lab_lightness(np.clip(g, 0, 1))
    rgb = np.repeat(np.clip(g, 0, 1)[..., None], 3, -1)
    opencv = np.stack([cv2.cvtColor(im, cv2.COLOR_RGB2Lab)[..., 0] for im in rgb])
    assert np.abs(opencv - lab_l).max() < 0.3  # OpenCV's float path approximates the gamma curve
    norm = clf.normalization
    x = ((lab_l / 100.0 - norm["mean"][0]) / norm["std"][0]).astype(np.float32)[:, None]
    sess = ort.InferenceSession(str(C.default_model_path()), providers=["CPUExecutionProvider"])
    ref = sess.run([t.name for t in clf.taps], {"L": x})
    for a, b in zip(clf.run(g), ref):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(b).max())))


def test_from_bytes_round_trip(clf: Classifier, gray: np.ndarray) -> None:
    again = Classifier.from_bytes(clf.model_bytes)
    assert again.identity == clf.identity and again.model_bytes == clf.model_bytes
    assert again.taps == clf.taps and again.min_size == clf.min_size
    for a, b in zip(again.run(gray), clf.run(gray)):
        assert np.array_equal(a, b)
    # the file as shipped (a full classifier with its FC head) gives the same runtime model
    shipped = Classifier.from_bytes(C.default_model_path().read_bytes())
    assert shipped.identity == clf.identity
    with pytest.raises(ValueError, match="mean/std"):
        Classifier.from_bytes(clf.model_bytes, mean=0.5)


def test_subset_of_taps(clf: Classifier, gray: np.ndarray) -> None:
    sub = Classifier(taps=["conv2", "conv6"], providers="cpu")
    assert [tuple(t) for t in sub.taps] == [PAPER_TAPS[1], PAPER_TAPS[5]]
    assert sub.identity != clf.identity
    full = clf.run(gray)
    for a, b in zip(sub.run(gray), (full[1], full[5])):
        assert np.array_equal(a, b)
    assert Classifier.from_bytes(sub.model_bytes).identity == sub.identity


def test_thread_safety(clf: Classifier) -> None:
    rng = np.random.default_rng(2)
    inputs = [rng.random(s, dtype=np.float32) for s in [(24, 24), (2, 24, 24), (31, 45), (24, 24)] * 3]
    expected = [clf.run(x) for x in inputs]
    got: list = [None] * len(inputs)
    errors: list = []

    def work(i: int) -> None:
        try:
            for _ in range(3):
                got[i] = clf.run(inputs[i])
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for e, g in zip(expected, got):
        for a, b in zip(e, g):
            assert np.array_equal(a, b)


def test_pickle(clf: Classifier, gray: np.ndarray) -> None:
    again = pickle.loads(pickle.dumps(clf))
    assert again.identity == clf.identity
    for a, b in zip(again.run(gray), clf.run(gray)):
        assert np.array_equal(a, b)


def test_threads_argument(gray: np.ndarray) -> None:
    one = Classifier(threads=1, providers="cpu")
    assert one.threads == 1
    with pytest.raises(ValueError, match="threads"):
        Classifier(threads=-1)


# ------------------------------------------------------------------------------------- foreign models
def _foreign_cnn(channels: int = 3, hw: int = 32, opset: int = 13, rank: int = 4, conv: bool = True) -> onnx.ModelProto:
    """Conv-BN-Relu-MaxPool-Conv-Relu-GlobalAveragePool-Flatten-Gemm, static input (1, channels, hw, hw)."""
    rng = np.random.default_rng(3)

    def t(name: str, *shape: int) -> onnx.TensorProto:
        return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32) * 0.3, name)

    inits = [t("w1", 6, channels, 3, 3), t("b1", 6), t("w2", 5, 6, 3, 3), t("b2", 5), t("fw", 4, 5), t("fb", 4),
             numpy_helper.from_array(np.abs(rng.standard_normal(6)).astype(np.float32) + 0.5, "bn_s"),
             t("bn_b", 6), t("bn_m", 6),
             numpy_helper.from_array(np.abs(rng.standard_normal(6)).astype(np.float32) + 0.5, "bn_v")]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv_a", pads=[1] * 4),
        helper.make_node("BatchNormalization", ["c1", "bn_s", "bn_b", "bn_m", "bn_v"], ["n1"], name="bn_a"),
        helper.make_node("Relu", ["n1"], ["r1"], name="relu_a"),
        helper.make_node("MaxPool", ["r1"], ["p1"], name="pool_a", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "w2", "b2"], ["c2"], name="conv_b", pads=[1] * 4),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu_b"),
        helper.make_node("GlobalAveragePool", ["r2"], ["gap"]),
        helper.make_node("Flatten", ["gap"], ["flat"]),
        helper.make_node("Gemm", ["flat", "fw", "fb"], ["logits"], transB=1),
    ]
    if not conv:
        nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Flatten", ["r"], ["flat"]),
                 helper.make_node("Gemm", ["flat", "fw2", "fb"], ["logits"], transB=1)]
        inits = [t("fw2", 4, channels * hw * hw), t("fb", 4)]
    shape = [1, channels, hw, hw] if rank == 4 else [1, channels * hw * hw]
    graph = helper.make_graph(nodes, "foreign", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 4])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def _reference_taps(model: onnx.ModelProto, x: np.ndarray, names: list[str]) -> list[np.ndarray]:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    m.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    for d in (2, 3):
        m.graph.input[0].type.tensor_type.shape.dim[d].dim_param = f"D{d}"
    del m.graph.output[:]
    m.graph.output.extend(helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in names)
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(names, {"x": x})


@pytest.mark.parametrize("opset", [9, 13, 17])
def test_tap_foreign_rgb_model(opset: int) -> None:
    model = _foreign_cnn(3, opset=opset)
    clf = Classifier.from_bytes(model.SerializeToString(), providers="cpu")
    assert [tuple(t) for t in clf.taps[:-1]] == [("r1", 6, 1), ("r2", 5, 2)]  # post-BN-ReLU and post-ReLU
    assert clf.min_size == 2
    assert clf.normalization == {"space": "gray", "mean": list(C.IMAGENET_MEAN), "std": list(C.IMAGENET_STD)}
    g = np.random.default_rng(4).random((2, 20, 26), dtype=np.float32)  # not the model's static 32x32
    mean = np.array(C.IMAGENET_MEAN, np.float32).reshape(1, 3, 1, 1)
    std = np.array(C.IMAGENET_STD, np.float32).reshape(1, 3, 1, 1)
    x = (np.repeat(g[:, None], 3, 1) - mean) / std
    for a, b in zip(clf.run(g), _reference_taps(model, x, ["r1", "r2"])):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    assert Classifier.from_bytes(clf.model_bytes).identity == clf.identity


def test_tap_foreign_gray_model_with_mean_std_and_named_taps() -> None:
    model = _foreign_cnn(1)
    data = model.SerializeToString()
    clf = Classifier.from_bytes(data, providers="cpu", taps=["conv_b", "c1"], mean=0.5, std=0.2)
    assert [tuple(t) for t in clf.taps[:-1]] == [("r2", 5, 2), ("c1", 6, 1)]  # a conv node -> its activation
    g = np.random.default_rng(5).random((16, 24), dtype=np.float32)
    ref = _reference_taps(model, ((g - 0.5) / 0.2)[None, None], ["r2", "c1"])
    for a, b in zip(clf.run(g), ref):
        np.testing.assert_allclose(a, b[0], rtol=1e-5, atol=1e-5)
    plain = Classifier.from_bytes(data, providers="cpu")  # 1 channel, no metadata: no normalization
    assert plain.normalization == {"space": "gray", "mean": [0.0], "std": [1.0]}
    for a, b in zip(plain.run(g), _reference_taps(model, g[None, None], ["r1", "r2"])):
        np.testing.assert_allclose(a, b[0], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="no tensor or node named 'nope'"):
        Classifier.from_bytes(data, taps=["nope"])
    with pytest.raises(ValueError, match="1 or 1 values"):
        Classifier.from_bytes(data, mean=[0.1, 0.2, 0.3])


def test_foreign_model_from_file(tmp_path: Path) -> None:
    path = tmp_path / "cnn.onnx"
    onnx.save(_foreign_cnn(3), str(path))
    clf = Classifier(path, providers="cpu")
    assert len(clf.taps) == 3 and clf.identity == hashlib.sha256(clf.model_bytes).hexdigest()
    assert "cnn.onnx" in repr(clf)


@pytest.mark.parametrize(
    "model, match",
    [
        (lambda: _foreign_cnn(3, conv=False), "no Conv layer"),
        (lambda: _foreign_cnn(3, rank=2, conv=False), "4-D image input"),
        (lambda: _foreign_cnn(2), "1 \\(gray\\) or 3 \\(RGB\\) input channels"),
        (lambda: _foreign_cnn(3, opset=8), "opset 8 is too old"),
    ],
)
def test_refuses_unusable_models(model, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Classifier.from_bytes(model().SerializeToString())


def test_bad_model_files(tmp_path: Path) -> None:
    data = C.default_model_path().read_bytes()
    cases = {"text.onnx": b"this is not an ONNX model at all\n" * 10, "empty.onnx": b"",
             "truncated.onnx": data[: len(data) // 2], "head.onnx": data[:100]}
    for name, content in cases.items():
        p = tmp_path / name
        p.write_bytes(content)
        with pytest.raises(ValueError, match="ONNX model|empty file"):
            Classifier(p)
    with pytest.raises(FileNotFoundError):
        Classifier(tmp_path / "missing.onnx")
    with pytest.raises(TypeError):
        Classifier.from_bytes("not bytes")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Classifier(123)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------- providers
def test_provider_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    have = ort.get_available_providers()
    monkeypatch.setattr(P, "cuda_status", lambda: (False, "no CUDA device"))
    assert P.resolve_providers(None) == ["CPUExecutionProvider"]
    assert P.resolve_providers(["cuda", "cpu"]) == ["CPUExecutionProvider"]
    assert P.resolve_providers("cpu") == ["CPUExecutionProvider"]
    assert P.resolve_providers([("CPUExecutionProvider", {"arena_extend_strategy": "kSameAsRequested"})]) == [
        ("CPUExecutionProvider", {"arena_extend_strategy": "kSameAsRequested"})]
    with pytest.raises(ValueError, match="none of the requested execution providers"):
        P.resolve_providers(["cuda"])
    with pytest.raises(ValueError, match="none of the requested"):
        P.resolve_providers(["NoSuchExecutionProvider"])
    assert "CUDAExecutionProvider" not in P.available_providers()
    if "CUDAExecutionProvider" in have:
        monkeypatch.setattr(P, "cuda_status", lambda: (True, "1 CUDA device(s)"))
        assert P.resolve_providers(None) == [("CUDAExecutionProvider", {}), "CPUExecutionProvider"]
        assert P.resolve_providers(["cuda"]) == ["CUDAExecutionProvider"]
        assert P.available_providers()[0] == "CUDAExecutionProvider"


def test_cuda_probe_without_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_lib(name: str, *a, **k):
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(P.ctypes, "CDLL", no_lib)
    assert P._cuda_device_count() == 0
    status = P.cuda_status.__wrapped__()
    assert status[0] is False and ("no CUDA" in status[1] or "no CUDA provider" in status[1] or "build" in status[1])


def _run_quietly(code: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(hyperchroma.__file__).resolve().parents[1]) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)


def test_nothing_printed_when_choosing_providers() -> None:
    code = ("import numpy as np; from hyperchroma.classifier import Classifier, cuda_usable; "
            "c = Classifier(); c.run(np.zeros((16, 16), np.float32)); cuda_usable(); "
            "d = Classifier(providers=['cuda', 'cpu']) if not cuda_usable() else c; "
            "d.run(np.zeros((16, 16), np.float32)); print(c.provider)")
    res = _run_quietly(code)
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""
    assert res.stdout.strip() in ("CPUExecutionProvider", "CUDAExecutionProvider")


# ------------------------------------------------------------------------------------------------- CLI
def test_cli_info(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    assert "CPUExecutionProvider" in out and "conv6" in out and "56 hypercolumn channels" in out
    assert cli.main(["info", "--json", "--providers", "cpu", "--taps", "conv1,conv3"]) == 0
    import json

    info = json.loads(capsys.readouterr().out)
    assert [t["name"] for t in info["classifier"]["taps"]] == ["conv1", "conv3"]
    assert info["classifier"]["provider"] == "CPUExecutionProvider"
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"garbage")
    assert cli.main(["info", "--classifier", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("hyperchroma info: error:") and len(err.strip().splitlines()) == 1
    assert cli.main([]) == 2


def _se_cnn() -> onnx.ModelProto:
    """conv -> relu -> squeeze-excitation (global pool, 1x1 conv, sigmoid, multiply) -> conv."""
    rng = np.random.default_rng(3)

    def t(name: str, *shape: int) -> onnx.TensorProto:
        return numpy_helper.from_array(rng.normal(0, 0.3, shape).astype(np.float32), name)

    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("GlobalAveragePool", ["r1"], ["g"]),
        helper.make_node("Conv", ["g", "wse"], ["se"]),
        helper.make_node("Sigmoid", ["se"], ["gate"]),
        helper.make_node("Mul", ["r1", "gate"], ["m"]),
        helper.make_node("Conv", ["m", "w2"], ["c2"], pads=[1, 1, 1, 1]),
    ]
    graph = helper.make_graph(nodes, "se", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, "H", "W"])],
                              [helper.make_tensor_value_info("c2", TensorProto.FLOAT, None)],
                              initializer=[t("w1", 4, 1, 3, 3), t("wse", 4, 4, 1, 1), t("w2", 3, 4, 3, 3)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


def test_pooled_gates_are_not_tapped_by_default() -> None:
    data = _se_cnn().SerializeToString()  # its output has no declared shape: onnx.checker refuses, ORT runs it
    c = Classifier.from_bytes(data)
    assert all(t.stride == 1 for t in c.taps) and c.min_size == 1  # the 1x1 gate would have made it 224
    assert len(c.run(np.zeros((20, 30), np.float32))) == len(c.taps)
    named = Classifier.from_bytes(data, taps=["se"])  # still tappable by name
    assert [t.stride for t in named.taps] == [224, 1]


def test_onnx_runtime_refusals_read_as_one_clear_reason() -> None:
    model = _se_cnn()
    model.ir_version = 99  # newer than any onnxruntime reads
    with pytest.raises(ValueError) as e:
        Classifier.from_bytes(model.SerializeToString())
    msg = str(e.value)
    assert "ONNX Runtime cannot load the model" in msg and "onnxruntime_src" not in msg and "\n" not in msg
    assert "ir_version" in msg  # says how to fix it
