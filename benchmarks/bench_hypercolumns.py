"""Fused hypercolumn keys vs OpenCV resize per channel + numpy quantize/pack (the paper's tap pyramid).

Run: python benchmarks/bench_hypercolumns.py
"""

import os
import sys

import cv2
import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from common import median_time, print_table  # noqa: E402

from hyperchroma import core  # noqa: E402


def opencv_numpy_keys(maps, H, W, thresholds, weights, levels):
    """What a user would write without our kernel: cv2.resize every channel, then quantize and pack in numpy."""
    hc = np.concatenate(
        [np.stack([cv2.resize(ch, (W, H), interpolation=cv2.INTER_LINEAR) for ch in m]) for m in maps]
    ).reshape(-1, H * W)
    C = hc.shape[0]
    bits = int(np.ceil(np.log2(levels)))
    fpw = 64 // bits
    keys = np.zeros((-(-C // fpw), H * W), np.uint64)
    sums = np.zeros(H * W, np.float32)
    for c in range(C):
        q = (hc[c][None, :] >= thresholds[c][:, None]).sum(axis=0, dtype=np.uint8)
        keys[c // fpw] |= q.astype(np.uint64) << np.uint64((c % fpw) * bits)
        sums += weights[c] * q
    return keys.T.copy(), sums


def main():
    cv2.setNumThreads(1)
    rng = np.random.default_rng(0)
    H = W = 224
    specs = [(15, 1), (25, 1), (4, 2), (4, 2), (4, 4), (4, 4)]  # the paper's net: 56 channels
    maps = [rng.standard_normal((c, H // s, W // s)).astype(np.float32) for c, s in specs]
    rows = []
    for levels in (3, 4):
        thr = np.sort(rng.standard_normal((56, levels - 1)).astype(np.float32), axis=1)
        w = rng.standard_normal(56).astype(np.float32)
        ref_keys, _ = opencv_numpy_keys(maps, H, W, thr, w, levels)
        ours_keys, _ = core.hypercolumn_keys(maps, H, W, thr, w)
        # OpenCV rounds differently in the last bit, so a value sitting on a threshold may land one level off.
        agree = float(np.mean(np.all(ref_keys == ours_keys, axis=1)))
        t_ref = median_time(lambda: opencv_numpy_keys(maps, H, W, thr, w, levels))
        t1 = median_time(lambda: core.hypercolumn_keys(maps, H, W, thr, w, threads=1))
        t2 = median_time(lambda: core.hypercolumn_keys(maps, H, W, thr, w, threads=2))
        t_hc = median_time(lambda: core.hypercolumns(maps, H, W))
        rows.append([levels, f"{t_ref * 1e3:.2f}", f"{t1 * 1e3:.2f}", f"{t_ref / t1:.1f}x", f"{t2 * 1e3:.2f}",
                     f"{t_ref / t2:.1f}x", f"{t_hc * 1e3:.2f}", f"{agree:.5f}"])
    print("Paper pyramid (15,25 ch @224; 4,4 @112; 4,4 @56) -> 224x224 keys; median ms")
    print_table(["levels", "OpenCV+numpy", "fused 1 thr", "speedup", "fused 2 thr", "speedup",
                 "materialized hypercolumns", "keys equal"], rows)


if __name__ == "__main__":
    main()
