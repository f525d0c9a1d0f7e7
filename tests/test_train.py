"""The training tool: spec parsing, ONNX export against PyTorch, training with its stopping rules, the CLI."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from hyperchroma import cli
from hyperchroma import training as T
from hyperchroma.classifier import Classifier

needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="PyTorch is not installed")
TINY = "c3:4,relu,pool,c3:3,pool,fc"


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Tiny nets: one thread is fastest and does not fight other processes for the cores."""
    if importlib.util.find_spec("torch") is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ------------------------------------------------------------------------------------------------ spec
def test_default_spec_is_the_papers_net() -> None:
    layers = T.parse_spec(T.DEFAULT_SPEC)
    assert [layer.token() for layer in layers] == T.DEFAULT_SPEC.split(",")
    assert T.tap_layout(T.DEFAULT_SPEC) == [
        {"name": f"conv{i + 1}", "channels": c, "stride": s}
        for i, (c, s) in enumerate([(15, 1), (25, 1), (4, 2), (4, 2), (4, 4), (4, 4)])
    ]


def test_spec_variants() -> None:
    layers = T.parse_spec(" C3:8, ReLU ,avgpool:3,c5:2,tanh,pool,fc:16,fc")
    assert ",".join(x.token() for x in layers) == "c3:8,relu,avgpool:3,c5:2,tanh,pool,fc:16,relu,fc"
    assert [t["stride"] for t in T.tap_layout(layers)] == [1, 3]


@pytest.mark.parametrize("spec, match", [
    ("c2:4,fc", "odd"), ("relu,c3:4,fc", "start with a conv"), ("c3:4,pool", "end with"),
    ("c3:4,fc,fc", "only the last"), ("c3:4,fc:3,pool,fc", "after an fc"), ("c3:4,pool,relu,fc", "activation"),
    ("c3:x,fc", "not understood"), ("c3:0,fc", "at least 1 filter"), ("c3:4,pool:1,fc", "at least 2"),
    ("c3:4,relu,relu,fc", "activation"), ("", "not understood"),
])
def test_bad_specs(spec: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        T.parse_spec(spec)
    with pytest.raises(TypeError):
        T.parse_spec(None)  # type: ignore[arg-type]


def test_lab_and_bins() -> None:
    cv2 = pytest.importorskip("cv2")
    from hyperchroma import core
    from hyperchroma.images import model_gray

    rgb = np.random.default_rng(0).integers(0, 256, (17, 23, 3), dtype=np.uint8)
    lab = T.training_lab(rgb, 17)  # at the image's own size
    ref = cv2.cvtColor(rgb.astype(np.float32) / 255, cv2.COLOR_RGB2Lab)
    np.testing.assert_allclose(lab[..., 1:], ref[..., 1:], atol=0.5)  # OpenCV approximates the gamma curve
    # the net learns from the lightness inference feeds it: the classifier's gray input (rounded to 8 bits)
    gray = np.clip(np.rint(model_gray(rgb, (17, 23)) * 255), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(lab[..., 0], core.gray_to_lightness(gray))
    np.testing.assert_array_equal(T.training_lab(gray, 17)[..., 0], lab[..., 0])  # its gray version: the same L
    bins = T.AbBins(20).fit([np.array([[[0.0, 0.0], [50.0, -50.0]]], np.float32)])
    assert len(bins.centers) == 2
    np.testing.assert_array_equal(bins.classes(np.array([[1.0, 1.0], [45.0, -45.0], [100.0, -100.0]])), [0, 1, 1])
    gray_img = np.zeros((10, 10, 2), np.float32)
    assert bins.dominant(gray_img) == 0
    gray_img[:5] = [50.0, -50.0]
    assert bins.dominant(gray_img) == 1


# ---------------------------------------------------------------------------------------------- export
@needs_torch
@pytest.mark.parametrize("spec, pixel", [
    (T.DEFAULT_SPEC, False), (T.DEFAULT_SPEC, True), ("c3:5,tanh,avgpool:3,c5:3,sigmoid,pool,fc:7,fc", True)])
def test_export_matches_pytorch(spec: str, pixel: bool) -> None:
    import torch

    torch.manual_seed(0)
    net = T.build_net(spec, 6, size=48, pixel_head=pixel).eval()
    data = T.export_onnx(net, None, mean=0.45, std=0.27, classes=list("abcdef"))
    model = onnx.load_model_from_string(data)
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["hyperchroma.taps"]) == T.tap_layout(spec)
    assert json.loads(meta["hyperchroma.input"]) == {"space": "L", "mean": [0.45], "std": [0.27]}
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    assert names == ["probs"] + (["pixel_probs"] if pixel else []) + [t["name"] for t in T.tap_layout(spec)]
    for shape in [(2, 1, 48, 48), (1, 1, 29, 61)]:  # the training size and another (dynamic H, W, N)
        x = torch.randn(*shape)
        with torch.no_grad():
            logits, taps, px = net(x)
        ref = [torch.softmax(logits, 1)] + ([torch.softmax(px, 1)] if pixel else []) + list(taps)
        for name, got, want in zip(names, sess.run(None, {"L": x.numpy()}), ref):
            np.testing.assert_allclose(got, want.numpy(), rtol=1e-4, atol=1e-4, err_msg=name)


@needs_torch
def test_random_classifier_is_reproducible(tmp_path: Path) -> None:
    a = T.random_classifier(tmp_path / "a.onnx", spec=TINY, classes=3, seed=5)
    b = T.random_classifier(None, spec=TINY, classes=3, seed=5)
    c = T.random_classifier(None, spec=TINY, classes=3, seed=6)
    assert a == b == (tmp_path / "a.onnx").read_bytes() and a != c
    clf = Classifier(tmp_path / "a.onnx")
    assert [tuple(t) for t in clf.taps] == [("conv1", 4, 1), ("conv2", 3, 2)] and clf.min_size == 4


# -------------------------------------------------------------------------------------------- training
def _blob_images(n: int, seed: int, color: tuple[int, int, int] | None = None, size: int = 24) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        img = np.full((size, size + 4, 3), 128, np.uint8) + rng.integers(0, 20, (size, size + 4, 3)).astype(np.uint8)
        c = color or [(200, 40, 40), (40, 60, 200), (40, 180, 60)][i % 3]
        y, x = rng.integers(0, size // 2, 2)
        img[y:y + size // 2, x:x + size // 2] = c
        out.append(img)
    return out


@needs_torch
def test_train_pixel_labels(tmp_path: Path) -> None:
    out = tmp_path / "m.onnx"
    res = T.train_classifier(_blob_images(6, 0), out, labels="pixel", test_images=_blob_images(2, 1), spec=TINY,
                             size=16, epochs=2, batch_size=3, patience=0, progress=False)
    assert res.epochs_run == 2 and "maximum of 2 epochs" in res.stop_reason
    assert res.test_images == 2 and res.test_right + res.test_wrong == 2
    assert res.pixel_accuracy is not None and 0.0 <= res.pixel_accuracy <= 1.0
    assert len(res.history) == 2 and all(np.isfinite(h["loss"]) for h in res.history)
    assert out.read_bytes() == res.model_bytes
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert meta["hyperchroma.labels"] == "pixel" and json.loads(meta["hyperchroma.provenance"])["epochs_run"] == 2
    assert len(json.loads(meta["hyperchroma.classes"])) == len(res.classes) >= 2
    clf = Classifier(out)
    maps = clf.run(np.full((20, 20), 0.3, np.float32))
    assert [m.shape for m in maps] == [(4, 20, 20), (3, 10, 10)]


@needs_torch
def test_stopping_rules() -> None:
    imgs = _blob_images(4, 2)
    kw = dict(labels="dominant", spec=TINY, size=16, batch_size=4, progress=False)
    res = T.train_classifier(imgs, None, epochs=5, target_loss=100.0, **kw)
    assert res.epochs_run == 1 and "reached the target" in res.stop_reason and res.path is None
    res = T.train_classifier(imgs, None, epochs=9, lr=0.0, patience=2, **kw)  # lr 0: the loss cannot improve
    assert res.epochs_run == 3 and "stopped decreasing" in res.stop_reason
    res = T.train_classifier(imgs, None, epochs=0, **kw)
    assert res.epochs_run == 0 and res.test_images == 0 and "no test" in res.summary()


@needs_torch
def test_train_folder_labels_and_test_every(tmp_path: Path) -> None:
    from PIL import Image

    for cls, color in (("red", (220, 30, 30)), ("blue", (30, 30, 220))):
        (tmp_path / "data" / cls).mkdir(parents=True)
        for i, img in enumerate(_blob_images(4, hash(cls) % 100, color)):
            Image.fromarray(img).save(tmp_path / "data" / cls / f"{i}.png")
    logs: list[str] = []
    res = T.train_classifier(tmp_path / "data", tmp_path / "f.onnx", labels="folder", test_every=4, spec=TINY,
                             size=16, epochs=3, batch_size=2, progress=False, log=logs.append)
    assert res.classes == ["blue", "red"] and res.test_images == 2 and res.train_images == 6
    assert any("classified right" in line for line in logs)
    with pytest.raises(ValueError, match="one subdirectory per class|no class subdirectories"):
        T.train_classifier(tmp_path / "data" / "red", None, labels="folder", spec=TINY, size=16, progress=False)


@needs_torch
def test_train_argument_errors(tmp_path: Path) -> None:
    imgs = _blob_images(2, 3)
    with pytest.raises(ValueError, match="labels"):
        T.train_classifier(imgs, None, labels="nope", progress=False)
    with pytest.raises(ValueError, match="total stride"):
        T.train_classifier(imgs, None, spec=T.DEFAULT_SPEC, size=4, progress=False)
    with pytest.raises(ValueError, match="no such file"):
        T.train_classifier([tmp_path / "missing.png"], None, progress=False)
    with pytest.raises(TypeError, match="uint8"):
        T.train_classifier([np.zeros((8, 8, 3), np.float32)], None, spec=TINY, size=8, progress=False)
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="cannot read"):
        T.train_classifier([tmp_path / "bad.png"], None, spec=TINY, size=8, progress=False)


# ------------------------------------------------------------------------------------------------- CLI
@needs_torch
def test_cli_train_classifier(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    for i, img in enumerate(_blob_images(5, 4)):
        Image.fromarray(img).save(tmp_path / f"img{i}.png")
    out = tmp_path / "cli.onnx"
    argv = ["train-classifier", str(tmp_path), "-o", str(out), "--spec", TINY, "--size", "16", "--epochs", "2",
            "--test-every", "4", "--batch-size", "2", "-q"]
    assert cli.main(argv) == 0
    prov = json.loads({p.key: p.value for p in onnx.load(str(out)).metadata_props}["hyperchroma.provenance"])
    assert prov["command"].startswith("hyperchroma train-classifier ") and prov["test_images"] == 2
    init = tmp_path / "init.onnx"
    assert cli.main(["train-classifier", "--init-only", "-o", str(init), "--spec", TINY, "-q"]) == 0
    assert Classifier(init).taps[0].channels == 4
    assert cli.main(["train-classifier", "-o", str(out), "-q"]) == 1
    assert "no training images" in capsys.readouterr().err
    assert cli.main(["train-classifier", str(tmp_path), "-o", str(out), "--spec", "c2:3,fc", "-q"]) == 1
    assert "odd" in capsys.readouterr().err
