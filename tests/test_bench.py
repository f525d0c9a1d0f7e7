"""``hyperchroma bench``: runs on shipped data and prints a stable JSON shape (timings are not asserted)."""

import json

import pytest

from hyperchroma.cli import main


def test_bench_json_shape(capsys):
    assert main(["bench", "--repeats", "2", "--batch", "2", "--size", "96x64", "--threads", "1", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["schema"] == 1 and r["threads"] == 1 and r["batch"] == 2
    assert r["image"]["width"] == 96 and r["image"]["height"] == 64
    assert set(r["stages_ms"]) == {"decode", "prepare", "classifier", "keys", "lookup", "fallback", "smoothing",
                                   "compose"}
    assert all(v >= 0 for v in r["stages_ms"].values())
    assert set(r["latency_ms"]) == {"p50", "p99"} and r["latency_ms"]["p99"] >= r["latency_ms"]["p50"] > 0
    assert set(r["images_per_s"]) == {"single", "batch", "single_1_thread", "serial_1_thread"}
    assert min(r["images_per_s"].values()) > 0 and r["batch_speedup"] > 0 and r["rounds"] == 3
    assert 0 <= r["misses"] <= 1
    assert r["film"] is None
    assert set(r["keys_images_per_s"]) == {"serial", "graph_batch"} and min(r["keys_images_per_s"].values()) > 0
    assert set(r["environment"]) == {"torch_loaded", "OMP_WAIT_POLICY"}
    with pytest.raises(SystemExit) as e:
        main(["bench", "--size", "bad"])
    assert e.value.code == 2


def test_bench_film_sequence():
    """bench.run times a film's consecutive frames in order (the miss memo on) beside the unrelated images."""
    import numpy as np

    from hyperchroma import bench, fit
    from hyperchroma.demo import demo_frames
    from hyperchroma.images import load_image, luma

    keys, held = demo_frames()
    model = fit(keys[:1], threads=1)
    frames = [luma(load_image(p)) for p in held[:4]]
    r = bench.run(model, held[:2], repeats=2, batch=2, film=frames)
    assert r["film"]["frames"] == 3 and r["film"]["p99"] >= r["film"]["p50"] > 0 and r["film"]["images_per_s"] > 0
    assert "film (3 consecutive frames" in bench.format_result(r)
    with pytest.raises(ValueError, match="at least 3"):
        bench.run(model, held[:2], repeats=1, batch=1, film=frames[:2])
    assert np.isfinite(r["latency_ms"]["p50"])
