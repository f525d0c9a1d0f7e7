"""Reference tests of the film kernels: each against a slow, obvious implementation."""

import numpy as np
import pytest

pytest.importorskip("cv2")

from hyperchroma.video import keyframes as kf  # noqa: E402
from hyperchroma.video import propagate as pp  # noqa: E402
from hyperchroma.video import shots  # noqa: E402


def bilinear(plane, x, y, outside=None):
    """plane sampled at (x, y); outside the image: the nearest border value, or ``outside``."""
    h, w = plane.shape[:2]
    if outside is not None and not (0 <= x <= w - 1 and 0 <= y <= h - 1):
        # OpenCV's constant border mixes the constant in per tap; reproduce by padding
        pad = np.pad(plane, ((1, 1), (1, 1)) + ((0, 0),) * (plane.ndim - 2), constant_values=outside)
        return bilinear(pad, min(max(x + 1, 0), w + 1), min(max(y + 1, 0), h + 1))
    x = min(max(x, 0.0), w - 1.0)
    y = min(max(y, 0.0), h - 1.0)
    x0, y0 = int(np.floor(x)), int(np.floor(y))
    x1, y1 = min(x0 + 1, w - 1), min(y0 + 1, h - 1)
    # OpenCV's remap quantizes the fractions to 1/32 (INTER_TAB_SIZE); so does the reference
    fx, fy = np.round((x - x0) * 32) / 32, np.round((y - y0) * 32) / 32
    return ((1 - fx) * (1 - fy) * plane[y0, x0] + fx * (1 - fy) * plane[y0, x1]
            + (1 - fx) * fy * plane[y1, x0] + fx * fy * plane[y1, x1])


def test_warp_matches_bilinear_reference(rng):
    h, w = 9, 13
    plane = rng.normal(size=(h, w, 2)).astype(np.float32)
    flow = rng.uniform(-3, 3, size=(h, w, 2)).astype(np.float32)
    got = pp.warp(plane, flow)
    for r in range(h):
        for c in range(w):
            want = bilinear(plane, c + flow[r, c, 0], r + flow[r, c, 1])
            np.testing.assert_allclose(got[r, c], want, atol=1e-3)


def test_warp_constant_border_inside_is_plain_bilinear(rng):
    plane = rng.uniform(size=(8, 8)).astype(np.float32)
    flow = np.full((8, 8, 2), 0.25, np.float32)
    got = pp.warp(plane, flow, outside=0.0)
    for r in range(7):
        for c in range(7):
            assert abs(got[r, c] - bilinear(plane, c + 0.25, r + 0.25)) < 1e-3


def test_consistency_matches_loop(rng):
    h, w = 10, 12
    f_ab = rng.uniform(-2, 2, size=(h, w, 2)).astype(np.float32)
    f_ba = -f_ab + rng.normal(scale=0.6, size=(h, w, 2)).astype(np.float32)
    got = pp.consistency(f_ab, f_ba, alpha=0.01, beta=0.5)
    agree = 0
    for r in range(h):
        for c in range(w):
            tx, ty = c + f_ab[r, c, 0], r + f_ab[r, c, 1]
            back = bilinear(f_ba, tx, ty)
            s = f_ab[r, c] + back
            ok = (s ** 2).sum() <= 0.01 * ((f_ab[r, c] ** 2).sum() + (back ** 2).sum()) + 0.5
            ok = ok and 0 <= tx <= w - 1 and 0 <= ty <= h - 1
            agree += int(ok == bool(got[r, c]))
    assert agree >= h * w - 3  # interpolation rounding may flip a pixel at the threshold


def test_photometric_matches_loop(rng):
    a = rng.integers(0, 256, size=(7, 9), dtype=np.uint8)
    b = np.roll(a, 1, axis=1)
    flow = np.zeros((7, 9, 2), np.float32)
    flow[..., 0] = 1.0  # a(x) = b(x + 1) except at the right edge
    got = pp.photometric(a, b, flow, tolerance=10)
    for r in range(7):
        for c in range(9):
            want = abs(float(b[r, min(c + 1, 8)]) - float(a[r, c])) <= 10
            assert bool(got[r, c]) == want


def test_flow_follows_a_shift():
    rng = np.random.default_rng(0)
    base = (rng.uniform(size=(60, 80)) * 255).astype(np.uint8)
    import cv2
    base = cv2.GaussianBlur(base, (7, 7), 2)
    b = np.roll(base, 2, axis=1)  # b(x + 2) = a(x)
    f = pp.Flow("medium")(base, b)
    assert abs(float(np.median(f[10:-10, 10:-10, 0])) - 2.0) < 0.3


def test_default_flow_follows_a_zoom_at_model_size():
    """A 4% zoom of fine texture at model size: the default ("fine", DIS fast refined to half model size) is
    within 0.1 px of the true field, several times closer than DIS fast's quarter-size field."""
    import cv2
    rng = np.random.default_rng(1)
    h, w = 164, 224
    a = cv2.resize(cv2.GaussianBlur((rng.uniform(size=(2 * h, 2 * w)) * 255).astype(np.uint8), (0, 0), 1.5),
                   (w, h), interpolation=cv2.INTER_AREA)
    s, cx, cy = 1.04, w / 2, h / 2
    b = cv2.warpAffine(a, np.float32([[s, 0, cx * (1 - s)], [0, s, cy * (1 - s)]]), (w, h),
                       flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)  # b(c + s (x - c)) = a(x)
    xs, ys = np.meshgrid(np.arange(w), np.arange(h))
    truth = np.dstack([(xs - cx) * (s - 1), (ys - cy) * (s - 1)])
    err = {p: float(np.median(np.sqrt(((pp.Flow(p)(a, b) - truth) ** 2).sum(-1))[16:-16, 16:-16]))
           for p in ("fast", "fine")}
    assert err["fine"] < 0.1 and err["fine"] < err["fast"] / 2, err
    assert pp.Flow()._dis.getFinestScale() == 1
    with pytest.raises(ValueError, match="flow preset"):
        pp.Flow("slow")


def test_match_brightness_reference(rng):
    ref = rng.integers(40, 200, size=(30, 40), dtype=np.uint8)
    for gain, offset in ((1.15, -10.0), (0.8, 20.0), (1.0, 0.0), (5.0, 0.0)):
        src = np.clip(np.rint(ref * gain + offset), 0, 255).astype(np.uint8)
        out = pp.match_brightness(src, ref)
        g = np.clip(ref.std() / max(src.std(), 1.0), 0.5, 2.0)  # the gain is limited to [0.5, 2]
        want = np.clip(np.rint(src * g + (ref.mean() - g * src.mean())), 0, 255)
        assert out.dtype == np.uint8 and out.shape == src.shape
        assert np.abs(out.astype(np.float64) - want).max() <= 1  # rounding of the float gain and offset
        if gain != 5.0:
            assert abs(out.mean() - ref.mean()) < 1.0 and abs(out.std() - ref.std()) < 1.0
    flat = np.full((5, 5), 7, np.uint8)
    assert (pp.match_brightness(flat, ref[:5, :5]) == np.rint(ref[:5, :5].mean())).all()  # no contrast: the mean


def test_locate_finds_a_shifted_frame():
    import cv2
    rng = np.random.default_rng(3)
    base = cv2.GaussianBlur((rng.uniform(size=(60, 80)) * 255).astype(np.uint8), (7, 7), 2)
    ref = np.clip(np.roll(base, 3, axis=1).astype(np.float32) * 1.1, 0, 255).astype(np.uint8)  # moved, brighter
    pos, agree = pp.locate(pp.Flow("medium"), base, ref)
    xs, ys = np.meshgrid(np.arange(80), np.arange(60))
    inner = (slice(10, -10), slice(10, -10))
    assert abs(float(np.median((pos[..., 0] - xs)[inner])) - 3.0) < 0.3
    assert abs(float(np.median((pos[..., 1] - ys)[inner]))) < 0.3
    assert pos.shape == (60, 80, 2) and pos.dtype == np.float32
    assert float(agree[inner].mean()) > 0.9 and agree.min() >= 0 and agree.max() <= 1


def test_histogram_distance_reference(rng):
    a = rng.integers(0, 256, size=(20, 30), dtype=np.uint8)
    b = rng.integers(0, 128, size=(20, 30), dtype=np.uint8)
    ha, hb = shots.histogram(a), shots.histogram(b)
    ref_a = np.array([np.sum((a // 8) == i) for i in range(32)]) / a.size
    np.testing.assert_allclose(ha, ref_a)
    want = 0.5 * sum(abs(x - y) for x, y in zip(ha, hb))
    assert abs(shots.histogram_distance(ha, hb) - want) < 1e-12
    assert shots.histogram_distance(ha, ha) == 0


def offline_placements(S, lookahead, threshold, ratio, identical):
    """The locator's rule applied to a whole score matrix S (frames x keys) with plain loops."""
    n, k = S.shape
    closed = [False] * k
    best = [np.inf] * k
    out = []
    for c in range(n):
        found = []
        for j in range(k):
            sc = S[c, j]
            if sc >= threshold:
                closed[j] = False
                continue
            lo, hi = max(0, c - lookahead), min(n - 1, c + lookahead)
            if closed[j] and not sc < 0.8 * best[j] - 0.005:
                continue
            if any(S[f, j] <= sc for f in range(lo, c)) or any(S[f, j] < sc for f in range(c + 1, hi + 1)):
                continue
            ctx = [S[f, j] for f in range(lo, hi + 1) if abs(f - c) > 1]
            if sc < identical or (ctx and sc < ratio * np.median(ctx)):
                found.append((sc, j))
        if found:
            for _, j in found:
                closed[j] = True
            sc, j = min(found)
            best[j] = min(best[j], sc)
            out.append((c, j))
    return out


def test_locator_matches_offline_rule(rng):
    n, k = 60, 3
    S = rng.uniform(0.05, 0.4, size=(n, k))
    S[10, 0] = 0.0
    S[40, 0] = 0.01
    S[25, 1] = 0.02
    S[25, 2] = 0.03  # two keys on one frame: the better wins
    S[50:, 2] = 0.005  # a still stretch: placed once, at its first frame
    S[15:18, 1] = 0.15  # a weak first match of key 1 at 16, then its true frame at 25: both placed
    S[16, 1] = 0.04
    # drive the locator with signatures whose scores are S: keys are unit images, frames constant offsets
    loc = kf.KeyframeLocator([np.zeros((36, 48), np.float32)] * k, threshold=0.2, lookahead=6)
    loc.keys = np.zeros((k, 1, 1), np.float32)
    got = []
    orig = kf.scores
    try:
        for t in range(n):
            kf.scores = lambda keys, sig, t=t: S[t]
            got += loc.feed(t, None, cut=False)
        got += loc.flush()
    finally:
        kf.scores = orig
    want = offline_placements(S, 6, 0.2, 0.6, 0.01)
    assert got == want
    assert (10, 0) in got and (16, 1) in got and (25, 1) in got and (50, 2) in got
    assert not [c for c, j in got if j == 2 and c > 50]


def test_locate_whole_film_prefers_the_best_match():
    S = np.full((40, 2), 0.3)
    S[5, 0] = 0.05   # a near-repeat of keyframe 0
    S[30, 0] = 0.0   # its own frame
    S[12, 1] = 0.02  # keyframe 1 and a real repeat of its shot
    S[33, 1] = 0.021
    assert kf.locate(S, lookahead=6) == {12: 1, 30: 0, 33: 1}


def test_signature_ignores_level_and_contrast(rng):
    g = rng.integers(30, 200, size=(36, 48)).astype(np.uint8)
    g2 = np.clip(g.astype(np.float32) * 1.1 + 5, 0, 255).astype(np.uint8)
    s1, s2 = kf.signature(g), kf.signature(g2)
    assert kf.scores(s1[None], s2)[0] < 0.02
    other = rng.integers(30, 200, size=(36, 48)).astype(np.uint8)
    assert kf.scores(s1[None], kf.signature(other))[0] > 0.5


def test_fixed_point_maps_warp_like_float_maps(rng):
    plane = rng.normal(size=(12, 16, 3)).astype(np.float32)
    flow = rng.uniform(-4, 4, size=(12, 16, 2)).astype(np.float32)
    # both quantize the sampling position to 1/32 pixel, rounding differently: at most one step apart
    got = pp.warp(plane, pp.Maps(flow))
    for r in range(12):
        for c in range(16):
            x, y = c + flow[r, c, 0], r + flow[r, c, 1]
            assert np.all(np.abs(got[r, c] - bilinear(plane, x, y)) <= 0.2)
    f_ba = -flow + rng.normal(scale=0.5, size=(12, 16, 2)).astype(np.float32)
    same = pp.consistency(pp.Maps(flow), f_ba) == pp.consistency(flow, f_ba)
    assert same.mean() > 0.95


def test_locate_places_a_keyframe_of_a_still_shot():
    """A still shot scores alike in every frame (no dip), above ``identical`` in a lossy film: its best frame
    counts where it stands out from the film; a keyframe that matches nothing better than the rest does not."""
    S = np.full((60, 3), 0.16)
    S[20:35, 0] = 0.069 + 0.0002 * np.cos(np.arange(15))  # keyframe 0's still shot, codec noise only
    S[28, 0] = 0.0686
    S[:, 1] = 0.15 + 0.0001 * np.sin(np.arange(60))       # keyframe 1: like every frame alike, nowhere better
    S[:, 2] = 0.3
    S[45:, 2] = 0.02                                        # keyframe 2: a one-still-shot film's near-copy
    S[50, 2] = 0.019
    got = kf.locate(S, lookahead=6)
    assert got == {28: 0, 50: 2}
    one = np.full((30, 1), 0.03)  # a film of one still shot: nothing to stand out from, but nearly the keyframe
    one[7, 0] = 0.0299
    assert kf.locate(one, lookahead=6) == {7: 0}
    assert kf.locate(np.full((30, 1), 0.1), lookahead=6) == {}  # as alike, and not nearly the keyframe
