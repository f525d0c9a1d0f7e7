"""The test stage: metrics against the gray baseline, pass rate and verdict, argument checks."""

import pytest

from hyperchroma.demo import demo_frames


def test_beats_gray_on_held_back_frames(model, frames):
    report = model.evaluate(frames[1])
    m = report["mean"]
    assert m["auc"] > m["auc_gray"] and m["psnr"] > m["psnr_gray"]
    assert report["passed"] + report["failed"] == len(frames[1])
    assert report["verdict"] in ("fit", "not fit")
    assert set(report["images"][0]) >= {"name", "psnr", "psnr_gray", "auc", "auc_gray", "colorfulness", "passed"}


def test_evaluate_argument_checks(demo_small):
    test = demo_frames()[1][:2]
    with pytest.raises(ValueError, match="names"):
        demo_small.evaluate(test, names=["a"])
    with pytest.raises(ValueError, match="pass_share"):
        demo_small.evaluate(test, pass_share=7)


def test_a_gray_output_does_not_pass(model, frames):
    gray_model = model.with_settings(min_confidence=1.0)  # every image refused: output gray
    r = gray_model.evaluate(frames[1][:2])
    assert r["passed"] == 0 and r["verdict"] == "not fit"
    assert all(i["colored"] == 0.0 for i in r["images"])
