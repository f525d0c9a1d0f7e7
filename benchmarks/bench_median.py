"""Median filter: hyperchroma.core.median_filter vs OpenCV medianBlur and scipy.ndimage.median_filter.

    PYTHONPATH=python python benchmarks/bench_median.py [--repeats 15] [--height 1024 --width 1024]

Prints a table of median wall times (same process, runs interleaved so all peers see the same machine load) and
the ratios. OpenCV gets each channel as its own contiguous (H,W) array (prepared outside the timing), which is
how a user would call it on an (H,W,2) ab image; scipy gets the (H,W,2) array with size=(k,k,1),
mode='nearest'. Every result is checked to be equal before timing.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import cv2
import numpy as np
import scipy
import scipy.ndimage as ndi

from hyperchroma import core

sys.path.insert(0, os.path.dirname(__file__))
from common import cpu_name  # noqa: E402


def timed(fns: dict, repeats: dict) -> dict:
    """Median seconds of each callable; rounds interleave the callables."""
    times = {name: [] for name in fns}
    for name, fn in fns.items():  # warm-up
        fn()
    for i in range(max(repeats.values())):
        for name, fn in fns.items():
            if i < repeats[name]:
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
    return {name: float(np.median(t)) for name, t in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--scipy-repeats", type=int, default=3)
    ap.add_argument("--height", type=int, default=1024)
    ap.add_argument("--width", type=int, default=1024)
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    shape = (args.height, args.width, 2)
    f32 = (rng.standard_normal(shape) * 20).astype(np.float32)
    u8 = rng.integers(0, 256, size=shape, dtype=np.uint8)

    cases = [  # (label, image, size, ours threads, OpenCV threads, run scipy)
        ("float32 5x5", f32, 5, 1, 1, True),
        ("float32 5x5 threads=2", f32, 5, 2, 2, False),
        ("float32 3x3", f32, 3, 1, 1, True),
        ("uint8 5x5", u8, 5, 1, 1, False),
        ("uint8 7x7", u8, 7, 1, 1, False),
        ("uint8 7x7 threads=2", u8, 7, 2, 2, False),
    ]

    print(f"median filter on {shape} images; {cpu_name()}, {os.cpu_count()} logical CPUs")
    print(f"numpy {np.__version__}, OpenCV {cv2.__version__}, scipy {scipy.__version__}")
    print(f"median of {args.repeats} runs ({args.scipy_repeats} for scipy); times in ms\n")
    header = f"{'case':<24}{'ours':>9}{'OpenCV':>9}{'ours/OpenCV':>13}{'scipy':>10}{'scipy/ours':>12}"
    print(header)
    print("-" * len(header))
    for label, img, size, threads, cv_threads, with_scipy in cases:
        cv2.setNumThreads(cv_threads)
        planes = [np.ascontiguousarray(img[..., c]) for c in range(img.shape[2])]
        ours = core.median_filter(img, size, threads=threads)
        ref_cv = np.stack([cv2.medianBlur(p, size) for p in planes], axis=-1)
        assert np.array_equal(ours, ref_cv), f"{label}: differs from OpenCV"
        fns = {
            "ours": lambda: core.median_filter(img, size, threads=threads),
            "cv": lambda: [cv2.medianBlur(p, size) for p in planes],
        }
        reps = {"ours": args.repeats, "cv": args.repeats}
        if with_scipy:
            assert np.array_equal(ours, ndi.median_filter(img, size=(size, size, 1), mode="nearest"))
            fns["scipy"] = lambda: ndi.median_filter(img, size=(size, size, 1), mode="nearest")
            reps["scipy"] = args.scipy_repeats
        t = timed(fns, reps)
        sp = f"{t['scipy'] * 1e3:>10.1f}{t['scipy'] / t['ours']:>11.0f}x" if with_scipy else f"{'-':>10}{'-':>12}"
        print(f"{label:<24}{t['ours'] * 1e3:>9.2f}{t['cv'] * 1e3:>9.2f}{t['ours'] / t['cv']:>13.2f}{sp}")
    cv2.setNumThreads(1)
    print("\nours/OpenCV < 1: ours is faster. threads=2 rows give OpenCV cv2.setNumThreads(2) too.")


if __name__ == "__main__":
    main()
