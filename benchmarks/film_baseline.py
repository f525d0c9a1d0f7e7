"""The peer a user would write with OpenCV: chained DIS flow propagation of keyframe colors, with cuts.

Every frame takes the ab of the nearest keyframe of its shot (either direction), warped frame by frame along
DIS flow computed at model size on the gray frames; a shot without a keyframe stays gray. Cuts: a classic
histogram test (cv2.compareHist, Bhattacharyya distance > 0.5). No table, no confidence, no blending.
Benchmarks only (holds the whole film in memory).
"""

import cv2
import numpy as np

from hyperchroma import core
from hyperchroma.images import model_shape


def _cuts(small):
    hists = [cv2.calcHist([g], [0], None, [32], [0, 256]) for g in small]
    return [0] + [t for t in range(1, len(small))
                  if cv2.compareHist(hists[t - 1], hists[t], cv2.HISTCMP_BHATTACHARYYA) > 0.5]


def _warp(plane, flow):
    h, w = flow.shape[:2]
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(plane, xs + flow[..., 0], ys + flow[..., 1], cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)


def flow_baseline(grays, keys, size=224):
    """grays: list of uint8 (H,W); keys: {frame index: uint8 RGB (H,W,3)}. Yields uint8 RGB frames."""
    H, W = grays[0].shape
    h, w = model_shape(H, W, size)
    small = [cv2.resize(g, (w, h), interpolation=cv2.INTER_AREA) for g in grays]
    key_ab = {i: cv2.resize(core.rgb_to_lab(rgb)[1], (w, h), interpolation=cv2.INTER_AREA)
              for i, rgb in keys.items()}
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)
    n = len(grays)
    starts = _cuts(small) + [n]
    ab = [None] * n
    for s, e in zip(starts[:-1], starts[1:]):
        ks = sorted(k for k in key_ab if s <= k < e)
        if not ks:
            continue
        fwd = [None] * e  # ab carried forward from the last keyframe at or before t
        for t in range(s, e):
            if t in key_ab:
                fwd[t] = key_ab[t]
            elif t > s and fwd[t - 1] is not None:
                fwd[t] = _warp(fwd[t - 1], dis.calc(small[t], small[t - 1], None))
        bwd = [None] * e
        for t in range(e - 1, s - 1, -1):
            if t in key_ab:
                bwd[t] = key_ab[t]
            elif t < e - 1 and bwd[t + 1] is not None:
                bwd[t] = _warp(bwd[t + 1], dis.calc(small[t], small[t + 1], None))
        for t in range(s, e):
            prev = max((k for k in ks if k <= t), default=None)
            nxt = min((k for k in ks if k >= t), default=None)
            use_fwd = nxt is None or (prev is not None and t - prev <= nxt - t)
            ab[t] = fwd[t] if use_fwd else bwd[t]
    for t, g in enumerate(grays):
        L = core.gray_to_lightness(g)
        a = np.zeros((h, w, 2), np.float32) if ab[t] is None else ab[t]
        full = cv2.resize(a, (W, H), interpolation=cv2.INTER_LINEAR)
        yield core.lab_to_rgb(L, np.ascontiguousarray(full, np.float32))
