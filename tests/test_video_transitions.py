"""Dissolves and fades: carried keyframe colors checked against the keyframe itself (keyframe_match) and
scaled with the frame's exposure (relight)."""

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from hyperchroma import core  # noqa: E402
from hyperchroma.video.film import (GATE_SIGMA, SHAPE_SIGMA, TEXTURE, _identity, keyframe_match,  # noqa: E402
                                    match_grid, relight)

from test_video import H, W, chroma, run_engine, scene  # noqa: E402


def _box(img, r):
    """Mean over the (2r+1)^2 window around each pixel, the border mirrored without repeating the edge (as
    OpenCV's default), by explicit loops."""
    p = np.pad(img, r, mode="reflect")
    out = np.zeros_like(img)
    for y in range(img.shape[0]):
        for x in range(img.shape[1]):
            out[y, x] = p[y:y + 2 * r + 1, x:x + 2 * r + 1].mean()
    return out


def match_grid_reference(ks, soft, c, tolerance):
    """match_grid written out: the gain refit once on the agreeing pixels, the gray-level agreement, SSIM's
    contrast-structure term over 5x5, a 3x3 mean."""
    ks64, s64 = ks.astype(np.float64), soft.astype(np.float64)
    w = c.astype(np.float64)
    for _ in range(2):
        gain = (w * s64 * ks64).sum() / (w * ks64 * ks64).sum()
        a = np.clip(2 - np.abs(s64 - gain * ks64) / tolerance, 0, 1)
        w = c * a
    x = cv2.GaussianBlur(soft, (0, 0), SHAPE_SIGMA).astype(np.float64)
    y = cv2.GaussianBlur(ks, (0, 0), SHAPE_SIGMA).astype(np.float64) * gain
    mx, my = _box(x, 2), _box(y, 2)
    vx = _box(x * x, 2) - mx * mx
    vy = _box(y * y, 2) - my * my
    cxy = _box(x * y, 2) - mx * my
    cs = (2 * cxy + TEXTURE ** 2) / (np.maximum(vx, 0) + np.maximum(vy, 0) + TEXTURE ** 2)
    shape = np.clip((cs - 0.25) * 2, 0, 1)
    return _box(a * shape, 1), gain


def _soft(g):
    return cv2.GaussianBlur(g.astype(np.float32), (0, 0), GATE_SIGMA)


@pytest.mark.parametrize("case", ["same", "dimmed", "unrelated", "half"])
def test_keyframe_match_reference(rng, case):
    h, w = 44, 60
    key = cv2.resize(rng.uniform(30, 220, (h // 4, w // 4)).astype(np.float32), (w, h))
    other = cv2.resize(rng.uniform(30, 220, (h // 4, w // 4)).astype(np.float32), (w, h))
    frame = {"same": key, "dimmed": 0.4 * key, "unrelated": other,
             "half": np.where(np.arange(w) < w // 2, key, other)}[case]
    frame = np.clip(frame + rng.normal(0, 2, frame.shape), 0, 255).astype(np.float32)
    c = rng.uniform(0.2, 1.0, (h, w)).astype(np.float32)
    ks, fs = _soft(key), _soft(frame)
    # the grid's kernel against the loops, on the half-size grid keyframe_match uses
    half = (w // 2, h // 2)
    gk, gf, gc = (cv2.resize(x, half, interpolation=cv2.INTER_AREA) for x in (ks, fs, c))
    got, gain = match_grid(gk, gf, gc, 16.0)
    want, want_gain = match_grid_reference(gk, gf, gc, 16.0)
    assert gain == pytest.approx(want_gain, rel=1e-4)
    np.testing.assert_allclose(got, want, atol=2e-3)
    # and keyframe_match's answer, at full size
    a, gain = keyframe_match(ks, _identity((h, w)), fs, c, 16.0)
    assert a.shape == (h, w)
    if case in ("same", "dimmed"):
        assert a.mean() > 0.9
        assert gain == pytest.approx(1.0 if case == "same" else 0.4, abs=0.03)
    elif case == "unrelated":
        assert a.mean() < 0.3
    else:
        assert a[:, :w // 2 - 8].mean() > 0.8 and a[:, w // 2 + 8:].mean() < 0.3


def test_keyframe_match_outside_the_keyframe_is_not_judged(rng):
    h, w = 44, 60
    ks = _soft(rng.uniform(30, 220, (h, w)).astype(np.float32))
    frame = _soft(rng.uniform(30, 220, (h, w)).astype(np.float32))
    ones = np.ones((h, w), np.float32)
    assert keyframe_match(ks, _identity((h, w)), frame, ones, 16.0)[0].mean() < 0.3  # unrelated: judged
    P = _identity((h, w)) + np.float32(w)  # every pixel points past the keyframe's right edge
    assert (keyframe_match(ks, P, frame, ones, 16.0)[0] == 1).all()
    # pixels a pan brought into the frame after the keyframe: the warps replicate the border, so they carry
    # the keyframe's edge position
    P = _identity((h, w))
    P[:, : w // 2, 0] = 0.0
    a, _ = keyframe_match(ks, P, frame, ones, 16.0)
    assert (a[:, : w // 2 - 2] == 1).all() and a[:, w // 2 + 4:].mean() < 0.3


def test_keyframe_match_leaves_a_local_change_to_the_flow(rng):
    """A small part of the picture changed (a limb moved) barely counts; the same change over most of the
    frame (a dissolve) counts fully."""
    h, w = 44, 60
    key = cv2.resize(rng.uniform(30, 220, (h // 4, w // 4)).astype(np.float32), (w, h))
    other = cv2.resize(rng.uniform(30, 220, (h // 4, w // 4)).astype(np.float32), (w, h))
    ones = np.ones((h, w), np.float32)
    local = key.copy()
    local[10:22, 20:36] = other[10:22, 20:36]  # 7% of the frame
    a, _ = keyframe_match(_soft(key), _identity((h, w)), _soft(local), ones, 16.0)
    assert a[12:20, 22:34].min() > 0.7
    wide = key.copy()
    wide[:, 8:] = other[:, 8:]
    a, _ = keyframe_match(_soft(key), _identity((h, w)), _soft(wide), ones, 16.0)
    assert a[:, 14:].mean() < 0.3


def test_relight_follows_cielab():
    assert relight(1.0) == 1.0
    # gray levels halved: linear light times 0.5 ** 2.2, CIELAB a, b times its cube root
    assert relight(0.5) == pytest.approx(0.5 ** (2.2 / 3))
    assert relight(0.0) == 0.0
    assert relight(100.0) == 3.0


def dissolve(n_a=14, n=8, n_b=10):
    """Shot A (scene 0), an n-frame dissolve into shot B (scene 1), shot B."""
    a = [scene(t, 0) for t in range(n_a + n)]
    b = [scene(t, 1) for t in range(n + n_b)]
    mix = [np.clip(a[n_a + i] * (1 - s) + b[i] * s + 0.5, 0, 255).astype(np.uint8)
           for i, s in enumerate((np.arange(n) + 1) / (n + 1))]
    return a[:n_a] + mix + b[n:]


def test_a_dissolve_does_not_carry_the_next_shot_back():
    frames = dissolve()
    key = frames[-3]  # shot B's only keyframe, after the dissolve
    ab, stats = run_engine(frames, [key])
    off, _ = run_engine(frames, [key], gate=False)
    assert stats["shots"] == 1  # no cut anywhere: frame to frame, a dissolve is a slow change
    assert stats["keyframes_placed"] == {0: [len(frames) - 3]}
    assert chroma(ab[-1]) > 10  # shot B keeps its keyframe's colors ...
    assert min(chroma(a) for a in ab[-10:]) > 10
    # ... which do not travel back through the dissolve into shot A, as they do without the check (a little is
    # left where the two shots' smooth gray gradients happen to cross)
    assert min(chroma(a) for a in off[:10]) > 25
    assert max(chroma(a) for a in ab[:10]) < 0.3 * min(chroma(a) for a in off[:10])


def test_a_fade_dims_the_carried_colors():
    gains = np.r_[np.ones(10), np.linspace(1, 0.25, 11)[1:]]
    frames = [np.clip(scene(t, 0) * g + 0.5, 0, 255).astype(np.uint8) for t, g in enumerate(gains)]
    ab, stats = run_engine(frames, [frames[3]])
    flat, _ = run_engine(frames, [frames[3]], relight=False)
    assert stats["shots"] == 1
    base = chroma(ab[3])
    for t in range(12, len(frames)):
        # the truth's chroma: the dimmed frame's own (CIELAB of the scaled RGB)
        _, truth = core.rgb_to_lab(frames[t])
        want = chroma(cv2.resize(truth, (W, H)))
        assert chroma(ab[t]) == pytest.approx(want, rel=0.2), t
        assert chroma(ab[t]) < base * relight(gains[t]) * 1.2
    assert chroma(flat[-1]) > 0.8 * base  # without relight the colors stay as bright as the keyframe's
