"""The `hyperchroma` command line: the four colorizer commands, exit codes, one-line errors, no partial files."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from hyperchroma.cli import main
from hyperchroma.demo import demo_frames


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    train, _ = demo_frames()
    out = tmp_path_factory.mktemp("m") / "film.hyc"
    assert main(["fit", *map(str, train[:4]), "-o", str(out), "-q"]) == 0
    return out


def test_colorize_writes_one_png_per_input(model_path, tmp_path, capsys):
    _, test = demo_frames()
    src = tmp_path / "in"
    src.mkdir()
    for p in test[:2]:
        with Image.open(p) as im:
            im.convert("L").save(src / (p.stem + ".png"))
    out = tmp_path / "out"
    assert main(["colorize", str(src), "-m", str(model_path), "-o", str(out)]) == 0
    written = sorted(q.name for q in out.iterdir())
    assert written == sorted(p.stem + ".png" for p in test[:2])
    assert (out / written[0]).stat().st_mode & 0o644 == 0o644  # readable like any saved file, not 0600
    with Image.open(out / written[0]) as img:
        assert img.mode == "RGB" and img.size == (384, 288)


def test_colorize_bad_inputs_one_line_and_no_partial_files(model_path, tmp_path, capsys):
    good = tmp_path / "good.png"
    Image.fromarray(np.full((20, 30), 120, np.uint8)).save(good)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    out = tmp_path / "out"
    assert main(["colorize", str(good), str(bad), "-m", str(model_path), "-o", str(out), "-q"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.png" in err[0] and "Traceback" not in err[0]
    assert sorted(q.name for q in out.iterdir()) == ["good.png"]  # the good one written, nothing partial

    assert main(["colorize", str(tmp_path / "missing.png"), "-m", str(model_path), "-o", str(out)]) == 1
    assert "no such file" in capsys.readouterr().err
    # a missing video is an "input", not an "image", and is said before any other input is worked on
    fresh = tmp_path / "fresh"
    assert main(["colorize", str(good), str(tmp_path / "film.mp4"), "-m", str(model_path), "-o", str(fresh)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "input" in err[0] and "image" not in err[0] and "film.mp4" in err[0]
    assert not fresh.exists()
    assert main(["colorize", str(good), "-m", str(tmp_path / "nomodel.hyc"), "-o", str(out)]) == 1
    assert "no such file" in capsys.readouterr().err
    junk_model = tmp_path / "junk.hyc"
    junk_model.write_bytes(b"x" * 100)
    assert main(["colorize", str(good), "-m", str(junk_model), "-o", str(out)]) == 1
    assert "not a hyperchroma model" in capsys.readouterr().err
    other = tmp_path / "sub"
    other.mkdir()
    Image.fromarray(np.full((5, 5), 9, np.uint8)).save(other / "good.jpg")
    assert main(["colorize", str(good), str(other / "good.jpg"), "-m", str(model_path), "-o", str(out)]) == 1
    assert "both write" in capsys.readouterr().err


def test_evaluate_json_and_sheet(model_path, tmp_path, capsys):
    _, test = demo_frames()
    sheet = tmp_path / "sheet.png"
    assert main(["evaluate", *map(str, test[:2]), "-m", str(model_path), "--json", "--sheet", str(sheet)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["passed"] + report["failed"] == 2 and "verdict" in report
    with Image.open(sheet) as im:
        assert im.size[0] > 900
    assert main(["evaluate", *map(str, test[:1]), "-m", str(model_path), "-q"]) == 0
    text = capsys.readouterr().out
    assert "verdict" in text and "PSNR" in text


def test_fit_refuses_gray_training_images(tmp_path, capsys):
    g = tmp_path / "g.png"
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(g)
    assert main(["fit", str(g), "-o", str(tmp_path / "m.hyc"), "-q"]) == 1
    assert "color" in capsys.readouterr().err
    assert not (tmp_path / "m.hyc").exists()


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        main(["colorize"])
    assert e.value.code == 2
    assert main([]) == 2


def test_demo_runs_offline(tmp_path):
    r = subprocess.run([sys.executable, "-m", "hyperchroma", "demo", "-o", str(tmp_path / "d"), "-q"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "d" / "comparison.png").exists() and (tmp_path / "d" / "model.hyc").exists()


def test_colorize_recolor_keeps_luminance(model_path, tmp_path):
    _, test = demo_frames()
    out = tmp_path / "out"
    assert main(["colorize", str(test[0]), "-m", str(model_path), "-o", str(out), "--recolor", "--strength", "0.5",
                 "-q"]) == 0
    with Image.open(test[0]) as a, Image.open(out / (test[0].stem + ".png")) as b:
        src, res = np.asarray(a.convert("RGB")), np.asarray(b)
    same = np.asarray(Image.fromarray(res).convert("L")).astype(int) - np.asarray(Image.fromarray(src).convert("L"))
    assert np.abs(same).max() <= 1 and np.mean(same == 0) >= 0.999  # its own gray version kept
    assert main(["colorize", str(test[0]), "-m", str(model_path), "-o", str(out), "--recolor", "--strength", "3",
                 "-q"]) == 1


def test_cli_footguns(demo_small, tmp_path, capsys):
    mp = tmp_path / "m.hyc"
    demo_small.save(mp)
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(np.full((20, 30), 90, np.uint8)).save(folder / "a.png")
    before = (folder / "a.png").read_bytes()
    assert main(["colorize", str(folder), "-m", str(mp), "-o", str(folder), "-q"]) == 1
    assert "overwrite the input" in capsys.readouterr().err
    assert (folder / "a.png").read_bytes() == before
    assert main(["colorize", str(folder), "-m", str(mp), "-o", str(tmp_path / "o"), "--strength", "5"]) == 1
    assert "--recolor" in capsys.readouterr().err
    test = demo_frames()[1][:1]
    assert main(["evaluate", str(test[0]), "-m", str(mp), "--sheet", str(tmp_path / "no" / "s.png")]) == 1
    err = capsys.readouterr().err
    assert "does not exist" in err and ".tmp" not in err
    assert main(["evaluate", str(test[0]), "-m", str(mp), "--pass-share", "7", "-q"]) == 1
    assert "pass_share" in capsys.readouterr().err


def test_out_of_memory_is_one_line_and_the_batch_goes_on(model_path, tmp_path, capsys, monkeypatch):
    from hyperchroma.model import Model

    folder = tmp_path / "in"
    folder.mkdir()
    for name, rows in (("big", 21), ("ok", 20)):
        Image.fromarray(np.full((rows, 30), 90, np.uint8)).save(folder / f"{name}.png")
    real = Model.colorize

    def colorize(self, image, **kw):  # the CLI hands over the image it loaded (looked at for color first)
        if "big" in str(image) or getattr(image, "shape", None) == (21, 30):
            raise MemoryError
        return real(self, image, **kw)

    monkeypatch.setattr(Model, "colorize", colorize)
    out = tmp_path / "out"
    assert main(["colorize", str(folder), "-m", str(model_path), "-o", str(out), "-q"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "out of memory" in err[0] and "big.png" in err[0]
    assert sorted(q.name for q in out.iterdir()) == ["ok.png"]


def test_colorize_details_writes_a_confidence_map(model_path, tmp_path, capsys):
    _, test = demo_frames()
    out = tmp_path / "out"
    assert main(["colorize", str(test[0]), "-m", str(model_path), "-o", str(out), "--details"]) == 0
    conf = np.asarray(Image.open(out / (test[0].stem + ".confidence.png")))
    with Image.open(out / (test[0].stem + ".png")) as im:
        assert conf.dtype == np.uint8 and conf.ndim == 2 and im.size[0] >= conf.shape[1]
    said = capsys.readouterr().out
    assert "confidence 0." in said or "confidence 1." in said
    assert main(["evaluate", str(test[0]), "-m", str(model_path), "-q"]) == 0
    assert "conf." in capsys.readouterr().out


def test_fit_and_colorize_settings_from_the_cli(tmp_path, capsys):
    import hyperchroma as hc

    train, test = demo_frames()
    out = tmp_path / "m.hyc"
    assert main(["fit", *map(str, train[:2]), "-o", str(out), "-q", "--calibration-folds", "0", "--key-channels",
                 "0"]) == 0
    m = hc.load(out)
    assert m.calibration is None and m.fit_settings.key_channels == 0
    assert main(["fit", str(train[0]), "-o", str(out), "--taps", "conv1", "-q"]) == 1
    assert "--classifier" in capsys.readouterr().err
    assert main(["colorize", str(test[0]), "-m", str(out), "-o", str(tmp_path / "o"), "--median", "5",
                 "--no-one-step", "--min-confidence", "0.5", "-q"]) == 0
    assert main(["colorize", str(test[0]), "-m", str(out), "-o", str(tmp_path / "o"), "--median", "4", "-q"]) == 1
    assert "median_size" in capsys.readouterr().err


# ---------------------------------------------------------------- messages: one line that says what and why


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "Traceback" not in err[0] and "Errno" not in err[0]
    return err[0]


def _gray(path, size=(20, 30)):
    Image.fromarray(np.full(size, 120, np.uint8)).save(path)
    return path


def test_unreadable_image_says_permission_denied(model_path, tmp_path, capsys, monkeypatch):
    """A permission error used to be reported as 'corrupt or truncated file'."""
    import PIL.Image

    img = _gray(tmp_path / "locked.png")
    real_open = PIL.Image.open

    def open_(fp, *a, **k):
        if str(fp) == str(img):
            raise PermissionError(13, "Permission denied", str(fp))
        return real_open(fp, *a, **k)

    monkeypatch.setattr(PIL.Image, "open", open_)
    assert main(["colorize", str(img), "-m", str(model_path), "-o", str(tmp_path / "out"), "-q"]) == 1
    line = _one_error_line(capsys)
    assert "locked.png" in line and "permission denied" in line and "corrupt" not in line


def test_unwritable_output_folder_names_it_without_the_temp_file(model_path, tmp_path, capsys, monkeypatch):
    """It used to print '[Errno 13] Permission denied: '.../.hyperchroma-xxxx.tmp''."""
    from hyperchroma import _fs

    img = _gray(tmp_path / "a.png")
    out = tmp_path / "out"
    out.mkdir()

    def denied(*a, dir=None, **k):
        raise PermissionError(13, "Permission denied", os.path.join(dir, ".hyperchroma-1-abcdefgh.tmp"))

    monkeypatch.setattr(_fs.tempfile, "mkstemp", denied)
    assert main(["colorize", str(img), "-m", str(model_path), "-o", str(out), "-q"]) == 1
    line = _one_error_line(capsys)
    assert str(out) in line and "permission denied" in line and ".hyperchroma-" not in line


def test_output_folder_that_cannot_be_created(model_path, tmp_path, capsys):
    img = _gray(tmp_path / "a.png")
    (tmp_path / "file").write_bytes(b"")
    out = tmp_path / "file" / "out"
    assert main(["colorize", str(img), "-m", str(model_path), "-o", str(out), "-q"]) == 1
    line = _one_error_line(capsys)
    assert f"cannot create output folder '{out}'" in line and "not a directory" in line
    assert main(["colorize", str(img), "-m", str(model_path), "-o", str(tmp_path / "file"), "-q"]) == 1
    assert "is not a folder" in _one_error_line(capsys)


def test_output_named_like_an_image_is_refused_unless_a_folder(model_path, tmp_path, capsys):
    """`-o result.png` used to create a directory named result.png silently."""
    img = _gray(tmp_path / "a.png")
    target = tmp_path / "result.png"
    assert main(["colorize", str(img), "-m", str(model_path), "-o", str(target), "-q"]) == 1
    line = _one_error_line(capsys)
    assert "result.png" in line and "folder" in line
    assert not target.exists()
    target.mkdir()  # an existing folder of that name is fine
    assert main(["colorize", str(img), "-m", str(model_path), "-o", str(target), "-q"]) == 0
    assert os.listdir(target) == ["a.png"]


def test_oversized_header_length_in_the_cli(tmp_path, capsys):
    import struct
    import zlib

    from hyperchroma import model_file

    p = tmp_path / "m.hyc"
    model_file.save(p, {}, {"a": np.zeros(3, np.float32)})
    data = bytearray(p.read_bytes())
    struct.pack_into("<I", data, 12, 4_000_000_000)
    struct.pack_into("<I", data, 24, zlib.crc32(bytes(data[32:])))
    p.write_bytes(bytes(data))
    img = _gray(tmp_path / "a.png")
    assert main(["colorize", str(img), "-m", str(p), "-o", str(tmp_path / "out"), "-q"]) == 1
    line = _one_error_line(capsys)
    assert "header length (4000000000 bytes) is too large" in line and "header says" not in line


def test_errors_are_not_glued_to_the_progress_bar(model_path, tmp_path, capsys):
    good = _gray(tmp_path / "good.png")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    assert main(["colorize", str(bad), str(good), "-m", str(model_path), "-o", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    pieces = [s.strip() for s in re.split(r"[\r\n]", err) if s.strip()]
    errors = [s for s in pieces if "error:" in s]
    assert errors and all(s.startswith("hyperchroma colorize: error:") for s in errors), err


def test_decompression_bomb_warning_is_one_line(model_path, tmp_path, capsys, monkeypatch):
    """Pillow's DecompressionBombWarning used to print as Python's two-line warning (file:line + source)."""
    import PIL.Image

    img = _gray(tmp_path / "big.png")  # 600 pixels
    monkeypatch.setattr(PIL.Image, "MAX_IMAGE_PIXELS", 400)  # warn above 400, refuse above 800
    assert main(["colorize", str(img), "-m", str(model_path), "-o", str(tmp_path / "out"), "-q"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("hyperchroma colorize: warning: ") and "600 pixels" in err[0], err
    assert (tmp_path / "out" / "big.png").exists()


def test_sigterm_leaves_no_partial_video(tmp_path):
    """`kill` (SIGTERM) mid-film ends like Ctrl-C: one line, exit 143, neither the output nor its hidden temporary
    file left behind (a scheduler's or `docker stop`'s signal used to leave the temporary file)."""
    import signal
    import time

    pytest.importorskip("av")
    import hyperchroma as hc
    from test_video import film, write_video

    frames = film(40)
    model = tmp_path / "m.hyc"
    hc.fit([frames[3], frames[30]], size=64, samples_per_image=1024).save(str(model))
    src = write_video(str(tmp_path / "long.mp4"), [frames[t % 40] for t in range(3000)], audio=None)
    out = tmp_path / "out"
    out.mkdir()
    p = subprocess.Popen([sys.executable, "-m", "hyperchroma", "colorize", src, "-m", str(model), "-o", str(out)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not os.listdir(out) and p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)  # the temporary file appears as the output opens, before the first frame
    assert p.poll() is None, "the film finished before the signal could be sent"
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 143, err
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip() and "frame" not in line]
    assert lines[-1] == "hyperchroma colorize: terminated" and "Traceback" not in err
    assert os.listdir(out) == []
