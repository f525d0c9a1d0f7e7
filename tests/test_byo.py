"""Bring your own CNN: the inputs any CNN accepts (stride multiples, fixed sizes, NHWC, float16, external
data, metadata normalization), the default tap choice, and clean errors (no ONNX Runtime log lines)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import hyperchroma as hc
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hyperchroma import cli
from hyperchroma.classifier import Classifier
from hyperchroma.images import resize_float
from hyperchroma.quantizer import Quantizer, sample_taps
from onnx import TensorProto, helper, numpy_helper


def _w(rng: np.random.Generator, name: str, *shape: int, dtype: Any = np.float32) -> onnx.TensorProto:
    return numpy_helper.from_array((rng.standard_normal(shape) * 0.4).astype(dtype), name)


def _model(nodes: list, inits: list, inp: Any, opset: int = 13, extra_opsets: tuple = ()) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "byo", [inp], [helper.make_tensor_value_info(nodes[-1].output[0],
                                                                                  TensorProto.FLOAT, None)],
                              initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset), *extra_opsets])
    model.ir_version = 8
    return model


def _fpn(channels: int = 3) -> onnx.ModelProto:
    """conv (stride 1) -> a stride-32 branch (pool, conv, upsample x32) -> Concat with the stride-1 map -> conv:
    the Concat fails unless both sides are multiples of 32."""
    rng = np.random.default_rng(1)
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="stem", pads=[1] * 4),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("AveragePool", ["r1"], ["p"], kernel_shape=[32, 32], strides=[32, 32]),
        helper.make_node("Conv", ["p", "w2", "b2"], ["c2"], name="deep"),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("Resize", ["r2", "", "scales"], ["up"], mode="nearest"),
        helper.make_node("Concat", ["r1", "up"], ["cat"], axis=1),
        helper.make_node("Conv", ["cat", "w3"], ["c3"], name="head", pads=[1] * 4),
        helper.make_node("Relu", ["c3"], ["r3"]),
    ]
    inits = [_w(rng, "w1", 4, channels, 3, 3), _w(rng, "b1", 4), _w(rng, "w2", 5, 4, 1, 1), _w(rng, "w3", 3, 9, 3, 3),
             numpy_helper.from_array(np.full(5, 0.5, np.float32), "b2"),
             numpy_helper.from_array(np.array([1, 1, 32, 32], np.float32), "scales")]
    return _model(nodes, inits, helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", channels, "H", "W"]))


def _plain(channels: int = 1, layout: str = "NCHW", dtype: int = TensorProto.FLOAT, hw: Any = ("H", "W"),
           meta: dict | None = None) -> onnx.ModelProto:
    """conv -> relu -> maxpool -> conv -> relu, any input size; NHWC models transpose first; float16 models
    compute (and are tapped) in float16."""
    rng = np.random.default_rng(2)
    half = dtype == TensorProto.FLOAT16 or meta == {"fp16_inside": "1"}
    wt = np.float16 if half else np.float32
    nodes: list = []
    x = "x"
    if layout == "NHWC":
        nodes.append(helper.make_node("Transpose", [x], ["xt"], perm=[0, 3, 1, 2]))
        x = "xt"
    if half and dtype == TensorProto.FLOAT:
        nodes.append(helper.make_node("Cast", [x], ["xh"], to=TensorProto.FLOAT16))
        x = "xh"
    nodes += [
        helper.make_node("Conv", [x, "w1"], ["c1"], name="conv_a", pads=[1] * 4),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "w2"], ["c2"], name="conv_b", pads=[1] * 4),
        helper.make_node("Relu", ["c2"], ["r2"]),
    ]
    if half:
        nodes.append(helper.make_node("Cast", ["r2"], ["out"], to=TensorProto.FLOAT))
    inits = [_w(rng, "w1", 6, channels, 3, 3, dtype=wt), _w(rng, "w2", 5, 6, 3, 3, dtype=wt)]
    shape = ["N", channels, *hw] if layout == "NCHW" else ["N", *hw, channels]
    model = _model(nodes, inits, helper.make_tensor_value_info("x", dtype, shape))
    if meta and "fp16_inside" not in meta:
        helper.set_model_props(model, meta)
    return model


def _session(model: onnx.ModelProto, outputs: list[str]) -> ort.InferenceSession:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    del m.graph.output[:]
    m.graph.output.extend(helper.make_empty_tensor_value_info(n) for n in outputs)
    needed, keep = set(outputs), []
    for node in reversed(list(m.graph.node)):  # only what the outputs need (ONNX Runtime runs every node)
        if set(node.output) & needed:
            keep.insert(0, node)
            needed |= set(node.input)
    del m.graph.node[:]
    m.graph.node.extend(keep)
    return ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])


# ----------------------------------------------------------------------------------------- stride multiple
def test_stride_multiple_model_on_odd_sizes_keeps_keys_aligned() -> None:
    model = _fpn(1)
    with pytest.raises(ort.capi.onnxruntime_pybind11_state.Fail):  # as it is, the model fails at odd sizes
        _session(model, ["r3"]).run(None, {"x": np.zeros((1, 1, 171, 205), np.float32)})
    clf = Classifier.from_bytes(model.SerializeToString(), providers="cpu")
    assert clf.geometry.multiple == 32 and clf.geometry.fixed is None
    assert [t.name for t in clf.taps[:-1]] == ["r1", "r2", "r3"]
    h, w = 171, 205
    assert clf.frame(h, w) == (192, 224)
    g = np.random.default_rng(0).random((h, w), dtype=np.float32)
    maps = clf.run(g)
    assert [m.shape for m in maps] == [(4, 192, 224), (5, 6, 7), (3, 192, 224), (3, 192, 224)]
    # the stride-1 tap, sampled through the frame, is the model's own map of the unpadded image
    # (away from the last row and column, where zero padding and the reflection differ)
    ref = _session(model, ["r1"]).run(None, {"x": g[None, None]})[0][0]
    ys, xs = np.mgrid[0:h - 1, 0:w - 1]
    got = sample_taps(maps[:1], clf.frame(h, w), ys.ravel(), xs.ravel())
    np.testing.assert_allclose(got, ref[:, :h - 1, :w - 1].reshape(4, -1).T, rtol=1e-5, atol=1e-5)
    # keys made on the frame and cropped == keys of the whole frame, cropped
    rng = np.random.default_rng(1)
    samples = sample_taps(maps, clf.frame(h, w), rng.integers(0, h, 500), rng.integers(0, w, 500))
    for key_channels in (0, 4):  # identity and a projection
        q = Quantizer.learn(samples, 3, [t.channels for t in clf.taps], key_channels)
        keys = q.keys(maps, (h, w), 1, clf.frame(h, w))
        whole = q.keys(maps, clf.frame(h, w), 1).reshape(192, 224, -1)
        assert np.array_equal(keys.reshape(h, w, -1), whole[:h, :w])
    with pytest.raises(ValueError, match="smaller"):
        q.keys(maps, (h, w), 1, (100, 100))


def test_stride_multiple_model_fits_and_colorizes() -> None:
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 255, (171, 205, 3), np.uint8) for _ in range(2)]
    clf = Classifier.from_bytes(_fpn(3).SerializeToString(), providers="cpu")
    model = hc.fit(images, classifier=clf, size=205, calibration_folds=0)
    out = model.colorize(images[0][..., 0])
    assert out.shape == (171, 205, 3)
    again = Classifier.from_bytes(clf.model_bytes)  # the geometry travels with the runtime model
    assert again.geometry == clf.geometry and again.identity == clf.identity


# -------------------------------------------------------------------------------------------- fixed size
def _fixed(hw: int = 32) -> onnx.ModelProto:
    """A model whose first op reshapes to its declared (1, 1, 32, 32): runs only at that size."""
    rng = np.random.default_rng(4)
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["xr"]),
             helper.make_node("Conv", ["xr", "w1"], ["c1"], pads=[1] * 4),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Conv", ["p1", "w2"], ["c2"], pads=[1] * 4)]
    inits = [numpy_helper.from_array(np.array([1, 1, hw, hw], np.int64), "shape"), _w(rng, "w1", 3, 1, 3, 3),
             _w(rng, "w2", 2, 3, 3, 3)]
    return _model(nodes, inits, helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, hw, hw]))


def test_fixed_size_model_gets_resized_input() -> None:
    model = _fixed(32)
    clf = Classifier.from_bytes(model.SerializeToString(), providers="cpu")
    assert clf.geometry.fixed == (32, 32)
    assert [(t.channels, t.stride) for t in clf.taps[:-1]] == [(3, 1), (2, 2)]
    g = np.random.default_rng(5).random((50, 70), dtype=np.float32)
    assert clf.frame(50, 70) == (50, 70)  # the maps cover the whole (resized) image
    maps = clf.run(g)
    ref = _session(model, ["r1", "c2"]).run(None, {"x": resize_float(g, (32, 32))[None, None]})
    for a, b in zip(maps, ref):
        np.testing.assert_allclose(a, b[0], rtol=1e-5, atol=1e-5)
    assert clf.run(np.zeros((3, 20, 90), np.float32))[0].shape == (3, 3, 32, 32)  # batches too
    with pytest.raises(ValueError, match="fails on a 224x224 input .nor at its declared 32x32"):
        bad = _fixed(32)
        bad.graph.initializer[0].CopyFrom(numpy_helper.from_array(np.array([1, 1, 31, 33], np.int64), "shape"))
        Classifier.from_bytes(bad.SerializeToString())


# -------------------------------------------------------------------------------------------- layouts, types
def test_nhwc_model_is_transposed() -> None:
    model = _plain(3, "NHWC")
    clf = Classifier.from_bytes(model.SerializeToString(), providers="cpu", mean=0.5, std=0.25)
    assert [t.name for t in clf.taps[:-1]] == ["r1", "r2"] and clf.metadata["source_layout"] == "NHWC"
    g = np.random.default_rng(6).random((20, 26), dtype=np.float32)
    x = np.repeat(((g - 0.5) / 0.25)[None, :, :, None], 3, axis=3)
    for a, b in zip(clf.run(g), _session(model, ["r1", "r2"]).run(None, {"x": x})):
        np.testing.assert_allclose(a, b[0], rtol=1e-5, atol=1e-5)
    gray = Classifier.from_bytes(_plain(1, "NHWC").SerializeToString())
    assert gray.run(g)[0].shape == (6, 20, 26)


@pytest.mark.parametrize("shape, match", [([1, 3, 32, 3], "could be NCHW or NHWC"),
                                          ([1, 5, 32, 7], "NCHW .* or NHWC"), (["N", "C", "H", "W"], "NHWC")])
def test_unsupported_layouts_say_so(shape: list, match: str) -> None:
    model = _plain(3)
    model.graph.input[0].CopyFrom(helper.make_tensor_value_info("x", TensorProto.FLOAT, shape))
    with pytest.raises(ValueError, match=match):
        Classifier.from_bytes(model.SerializeToString())


@pytest.mark.parametrize("io", ["float32 io", "float16 io"])
def test_float16_models(io: str) -> None:
    model = _plain(1, dtype=TensorProto.FLOAT16) if io == "float16 io" else _plain(1, meta={"fp16_inside": "1"})
    clf = Classifier.from_bytes(model.SerializeToString(), providers="cpu")
    assert [t.name for t in clf.taps[:-1]] == ["r1", "r2"]
    g = np.random.default_rng(7).random((18, 22), dtype=np.float32)
    maps = clf.run(g)
    assert all(m.dtype == np.float32 for m in maps)
    x = g[None, None].astype(np.float16 if io == "float16 io" else np.float32)
    for a, b in zip(maps, _session(model, ["r1", "r2"]).run(None, {"x": x})):
        np.testing.assert_allclose(a, b[0].astype(np.float32), rtol=2e-2, atol=2e-2)


def test_normalization_from_metadata_or_given() -> None:
    model = _plain(3, meta={"mean": "123.675, 116.28, 103.53", "std": "[58.395, 57.12, 57.375]"})
    clf = Classifier.from_bytes(model.SerializeToString())
    np.testing.assert_allclose(clf.normalization["mean"], [0.485, 0.456, 0.406], atol=1e-6)
    np.testing.assert_allclose(clf.normalization["std"], [0.229, 0.224, 0.225], atol=1e-6)
    given = Classifier.from_bytes(model.SerializeToString(), mean=0.5, std=0.5)
    assert given.normalization == {"space": "gray", "mean": [0.5], "std": [0.5]}
    one = Classifier.from_bytes(_plain(1, meta={"mean": "0.5"}).SerializeToString())
    assert one.normalization == {"space": "gray", "mean": [0.5], "std": [1.0]}


# ----------------------------------------------------------------------------------------- external data
def test_external_data_is_read_beside_the_model_and_embedded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "models"
    src.mkdir()
    path = src / "cnn.onnx"
    onnx.save(_plain(3), str(path), save_as_external_data=True, all_tensors_to_one_file=True,
              location="cnn.onnx.data", size_threshold=0)
    assert (src / "cnn.onnx.data").is_file()
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    clf = Classifier(path, providers="cpu")
    assert len(clf.taps) == 3
    with pytest.raises(ValueError, match="external file.*cnn.onnx.data.*Classifier\\(path\\)"):
        Classifier.from_bytes(path.read_bytes())
    rng = np.random.default_rng(8)
    images = [rng.integers(0, 255, (24, 30, 3), np.uint8) for _ in range(2)]
    model = hc.fit(images, classifier=clf, size=30, calibration_folds=0)
    model.save(tmp_path / "m.hyc")
    moved = tmp_path / "far" / "away.hyc"
    moved.parent.mkdir()
    shutil.move(str(tmp_path / "m.hyc"), moved)
    shutil.rmtree(src)  # the model and its weights file are gone: the .hyc holds them
    loaded = hc.load(moved)
    assert loaded.classifier.identity == clf.identity
    assert loaded.colorize(images[0]).shape == (24, 30, 3)
    onnx.save(_plain(3), str(tmp_path / "lost.onnx"), save_as_external_data=True, location="lost.data",
              size_threshold=0)
    (tmp_path / "lost.data").unlink()
    with pytest.raises(ValueError, match="weights file 'lost.data' is missing"):
        Classifier(tmp_path / "lost.onnx")


# ------------------------------------------------------------------------------------ no ONNX Runtime lines
def test_onnx_runtime_prints_nothing(capfd: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    Classifier.from_bytes(_fpn(1).SerializeToString())  # its probes fail at odd sizes inside ONNX Runtime
    broken = _plain(1)
    broken.graph.node[1].op_type = "NoSuchOp"
    with pytest.raises(ValueError, match="ONNX Runtime cannot load the model"):
        Classifier.from_bytes(broken.SerializeToString())
    path = tmp_path / "broken.onnx"
    onnx.save(broken, str(path))
    assert cli.main(["info", "--classifier", str(path)]) == 1
    _out, err = capfd.readouterr()
    assert "onnxruntime" not in err.replace("ONNX Runtime", "") and "\x1b[" not in err
    assert len(err.strip().splitlines()) == 1 and err.startswith("hyperchroma info: error:")


# ------------------------------------------------------------------------------------------------ tap choice
def _with_twin_and_fused() -> onnx.ModelProto:
    """conv_a and conv_twin compute the same values; a com.microsoft FusedConv (conv + relu) follows."""
    rng = np.random.default_rng(9)
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv_a", pads=[1] * 4),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["x", "w1"], ["t1"], name="conv_twin", pads=[1] * 4),
        helper.make_node("Relu", ["t1"], ["rt"]),
        helper.make_node("Add", ["r1", "rt"], ["s"]),
        helper.make_node("FusedConv", ["s", "w2", "b2"], ["f"], name="fused", domain="com.microsoft",
                         activation="Relu", pads=[1] * 4),
        helper.make_node("Conv", ["f", "w3"], ["c3"], name="conv_c", pads=[1] * 4, strides=[2, 2]),
    ]
    inits = [_w(rng, "w1", 6, 1, 3, 3), _w(rng, "w2", 7, 6, 3, 3), _w(rng, "b2", 7), _w(rng, "w3", 8, 7, 3, 3)]
    return _model(nodes, inits, helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, "H", "W"]),
                  extra_opsets=(helper.make_opsetid("com.microsoft", 1),))


def test_tap_choice_skips_duplicates_and_taps_fused_convs() -> None:
    clf = Classifier.from_bytes(_with_twin_and_fused().SerializeToString(), providers="cpu")
    assert [t.name for t in clf.taps[:-1]] == ["r1", "f", "c3"]
    why = {c.name: c for c in clf.tap_choice}
    assert not why["rt"].chosen and "same values as r1" in why["rt"].reason
    assert why["f"].chosen and why["f"].channels == 7


def test_tap_channel_cap() -> None:
    data = _with_twin_and_fused().SerializeToString()
    clf = Classifier.from_bytes(data, max_channels=10)
    assert [t.name for t in clf.taps[:-1]] == ["f", "c3"]  # stride 1 keeps its deepest tap; stride 2 its only one
    why = {c.name: c for c in clf.tap_choice}
    assert "10-channel cap" in why["r1"].reason
    assert [t.name for t in Classifier.from_bytes(data, max_channels=0).taps[:-1]] == ["r1", "f", "c3"]
    named = Classifier.from_bytes(data, taps=["conv_twin"], max_channels=1)  # named taps are never capped
    assert [t.name for t in named.taps[:-1]] == ["rt"] and named.tap_choice[0].reason == "named by the user"
    with pytest.raises(ValueError, match="max_channels"):
        Classifier.from_bytes(data, max_channels=-1)


def test_cli_info_shows_the_choice(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "fpn.onnx"
    onnx.save(_fpn(3), str(path))
    assert cli.main(["info", "--classifier", str(path), "--max-tap-channels", "8"]) == 0
    out = capsys.readouterr().out
    assert "multiples of 32" in out and "chosen" in out and "8-channel cap" in out
    assert cli.main(["info", "--json", "--classifier", str(path)]) == 0
    info = json.loads(capsys.readouterr().out)["classifier"]
    assert info["geometry"] == {"multiple": 32, "fixed": None}
    assert [c["name"] for c in info["tap_choice"] if c["chosen"]] == ["r1", "r2", "r3"]


def test_cli_fit_with_taps_by_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    path = tmp_path / "cnn.onnx"
    onnx.save(_plain(3), str(path))
    rng = np.random.default_rng(10)
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (20, 28, 3), np.uint8)).save(tmp_path / f"im{i}.png")
    out = tmp_path / "m.hyc"
    assert cli.main(["fit", str(tmp_path / "im0.png"), str(tmp_path / "im1.png"), "-o", str(out), "-q",
                     "--classifier", str(path), "--taps", "conv_b", "--mean", "0.5", "--std", "0.25",
                     "--calibration-folds", "0"]) == 0
    assert [t.name for t in hc.load(out).classifier.taps[:-1]] == ["r2"]
    assert cli.main(["fit", str(tmp_path / "im0.png"), "-o", str(out), "--classifier", str(path),
                     "--taps", "nope"]) == 1
    err = capsys.readouterr().err
    assert "no tensor or node named 'nope'" in err and len(err.strip().splitlines()) == 1


# --------------------------------------------------------------------------------------------- memory
def test_huge_fit_allocation_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from hyperchroma import fitting

    monkeypatch.setattr(fitting, "available_memory", lambda: 1 << 20)  # 1 MiB free
    rng = np.random.default_rng(11)
    images = [rng.integers(0, 255, (40, 40, 3), np.uint8) for _ in range(3)]
    with pytest.raises(ValueError, match="samples_per_image"):
        hc.fit(images, calibration_folds=0)


def test_balanced_projection_is_pca_of_taps_scaled_to_equal_variance() -> None:
    from hyperchroma.quantizer import Projection

    rng = np.random.default_rng(12)
    # a wide, loud tap (40 channels, large values) and a narrow quiet one (6 channels)
    x = np.concatenate([rng.standard_normal((800, 40)) * 10.0, rng.standard_normal((800, 6)) @ rng.random((6, 6))],
                       axis=1).astype(np.float32)
    p = Projection.learn(x, [40, 6], 5, balance=True)
    xc = x.astype(np.float64) - x.mean(axis=0)
    scale = np.concatenate([np.full(40, 1 / np.sqrt(xc[:, :40].var(axis=0).sum())),
                            np.full(6, 1 / np.sqrt(xc[:, 40:].var(axis=0).sum()))])
    _, vecs = np.linalg.eigh((xc * scale).T @ (xc * scale))
    ref = (xc * scale) @ vecs[:, ::-1][:, :5]
    got = p.project_samples(x)
    for k in range(5):  # each component up to its sign
        a, b = got[:, k], ref[:, k]
        assert min(np.abs(a - b).max(), np.abs(a + b).max()) < 1e-3 * np.abs(b).max()
    # the quiet tap gets a share of the components; unbalanced, the loud one takes them all
    assert np.abs(p.matrices[1]).sum() > 0.1 * np.abs(p.matrices[0]).sum()
    plain = Projection.learn(x, [40, 6], 5)
    assert np.abs(plain.matrices[1]).max() < 0.05


def test_quantized_convs_are_tapped_after_dequantization() -> None:
    rng = np.random.default_rng(13)
    wq = numpy_helper.from_array(rng.integers(-20, 20, (4, 1, 3, 3)).astype(np.int8), "wq")
    nodes = [helper.make_node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xz"]),
             helper.make_node("ConvInteger", ["xq", "wq", "xz"], ["ci"], name="qconv", pads=[1] * 4),
             helper.make_node("Cast", ["ci"], ["cf"], to=TensorProto.FLOAT),
             helper.make_node("Mul", ["cf", "xs"], ["deq"]),
             helper.make_node("Relu", ["deq"], ["r"])]
    model = _model(nodes, [wq], helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 64, "W"]))
    clf = Classifier.from_bytes(model.SerializeToString(), providers="cpu")
    assert [t.name for t in clf.taps[:-1]] == ["r"]  # not the int32 ConvInteger output
    g = np.random.default_rng(14).random((64, 41), dtype=np.float32)
    np.testing.assert_allclose(clf.run(g)[0], _session(model, ["r"]).run(None, {"x": g[None, None]})[0][0],
                               rtol=1e-5, atol=1e-5)
