"""core.compose_luma_grid and core.upsample_compose against their definition: core.compose_luma (itself tested
against a float64 reference in test_color.py) of the ab rounded to the grid by a plain numpy rule, after
core.upsample_bilinear (tested against OpenCV in test_hypercolumns.py)."""

import threading

import numpy as np
import pytest
from PIL import Image

from hyperchroma import core, pipeline

STEP = np.float32(core.COMPOSE_GRID_STEP)
HALF = int(round(core.COMPOSE_GRID_LIMIT / core.COMPOSE_GRID_STEP))


def grid_ref(ab):
    """ab (2, ...) rounded to the grid: trunc(v / step + half + 0.5) in float32 arithmetic, kept as it is where
    either channel falls outside [0, 2 * half + 1) or is non-finite."""
    with np.errstate(invalid="ignore", over="ignore"):
        u = ab * np.float32(1 / STEP) + np.float32(HALF + 0.5)
        inside = np.all(np.isfinite(u) & (u >= 0) & (u < 2 * HALF + 1), axis=0)
    out = ab.copy()
    idx = np.trunc(u[:, inside]).astype(np.int64) - HALF
    out[:, inside] = (idx * STEP).astype(np.float32)
    return out


def random_ab(rng, shape, scale=40.0):
    ab = (rng.normal(0, scale, (2, *shape))).astype(np.float32)
    flat = ab.reshape(2, -1)
    k = flat.shape[1]
    # odd values: exact half-way points, the grid edges, beyond them, zero, non-finite
    picks = rng.integers(0, k, size=min(k, 12))
    specials = np.float32([1.0, -1.0, 3.0, 111.0, 112.0, 112.99, 113.0, -113.0, 0.0, np.nan, np.inf, 500.0])
    flat[0, picks] = specials[: len(picks)]
    flat[1, picks[::-1]] = specials[: len(picks)]
    return ab


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (5, 1), (17, 23), (64, 48)])
def test_grid_equals_compose_luma_of_rounded_ab(rng, shape):
    gray = rng.integers(0, 256, shape, dtype=np.uint8)
    ab = random_ab(rng, shape)
    want = core.compose_luma(gray, grid_ref(ab), planar=True)
    for threads in (1, 3):
        np.testing.assert_array_equal(core.compose_luma_grid(gray, ab, threads=threads), want)


@pytest.mark.parametrize("small,big", [((1, 1), (1, 1)), ((1, 1), (9, 13)), ((3, 4), (3, 4)), ((3, 4), (3, 11)),
                                       ((5, 7), (17, 7)), ((41, 56), (133, 181)), ((12, 9), (5, 4))])
def test_upsample_compose_equals_the_two_steps(rng, small, big):
    ab = random_ab(rng, small, scale=30.0)
    gray = rng.integers(0, 256, big, dtype=np.uint8)
    up = core.upsample_bilinear(ab, big[0], big[1])
    want = core.compose_luma(gray, grid_ref(up), planar=True)
    for threads in (1, 2, 5):
        np.testing.assert_array_equal(core.upsample_compose(gray, ab, threads=threads), want)


def test_grid_keeps_the_gray_exactly(rng):
    gray = rng.integers(0, 256, (40, 60), dtype=np.uint8)
    ab = (rng.uniform(-110, 110, (2, 10, 15))).astype(np.float32)
    rgb = core.upsample_compose(gray, ab, threads=2)
    np.testing.assert_array_equal(np.asarray(Image.fromarray(rgb).convert("L")), gray)


def test_grid_is_within_half_a_step_of_the_exact_colors(rng):
    """Off the gamut's edges, the grid's answer is the exact one of an ab at most 1 unit away per channel: its
    Lab is close to the exact composition's."""
    gray = rng.integers(60, 200, (30, 30), dtype=np.uint8)
    ab = (rng.uniform(-15, 15, (2, 30, 30))).astype(np.float32)
    grid = core.rgb_to_lab(core.compose_luma_grid(gray, ab))[1]
    exact = core.rgb_to_lab(core.compose_luma(gray, ab, planar=True))[1]
    assert np.percentile(np.abs(grid - exact), 99) <= 2.0


def test_non_contiguous_and_cast_inputs(rng):
    gray = rng.integers(0, 256, (20, 30), dtype=np.uint8)
    ab = random_ab(rng, (6, 8)).astype(np.float64)
    want = core.upsample_compose(gray.copy(), ab.astype(np.float32))
    np.testing.assert_array_equal(core.upsample_compose(np.asfortranarray(gray), ab), want)
    wide = np.zeros((2, 6, 16), np.float32)
    wide[:, :, ::2] = ab
    np.testing.assert_array_equal(core.upsample_compose(gray, wide[:, :, ::2]), want)
    full = random_ab(rng, (20, 30))
    np.testing.assert_array_equal(core.compose_luma_grid(gray[:, ::-1], full[:, :, ::-1]),
                                  core.compose_luma_grid(gray[:, ::-1].copy(), full[:, :, ::-1].copy()))


def test_bad_inputs_raise_clear_errors():
    gray = np.zeros((4, 5), np.uint8)
    with pytest.raises(TypeError, match="uint8"):
        core.upsample_compose(gray.astype(np.float32), np.zeros((2, 2, 2), np.float32))
    with pytest.raises(TypeError, match="real-valued"):
        core.upsample_compose(gray, np.zeros((2, 2, 2), np.complex64))
    with pytest.raises(ValueError, match=r"\(2, h, w\)"):
        core.upsample_compose(gray, np.zeros((2, 2), np.float32))
    with pytest.raises(ValueError, match=r"\(2, h, w\)"):
        core.upsample_compose(gray, np.zeros((3, 2, 2), np.float32))
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        core.upsample_compose(np.zeros((4, 5, 3), np.uint8), np.zeros((2, 2, 2), np.float32))
    with pytest.raises(ValueError, match="matching gray"):
        core.compose_luma_grid(gray, np.zeros((4, 5, 2), np.float32))
    with pytest.raises(ValueError, match="threads"):
        core.compose_luma_grid(gray, np.zeros((2, 4, 5), np.float32), threads=-1)


def test_concurrent_calls_agree(rng):
    """Threads filling the shared table at once get the same answers as one thread alone."""
    grays = [rng.integers(0, 256, (50, 70), dtype=np.uint8) for _ in range(4)]
    abs_ = [(rng.uniform(-100, 100, (2, 12, 17))).astype(np.float32) for _ in range(4)]
    results = [None] * 8

    def work(i):
        results[i] = core.upsample_compose(grays[i % 4], abs_[i % 4], threads=2)

    ts = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for i in range(8):
        up = core.upsample_bilinear(abs_[i % 4], 50, 70)
        np.testing.assert_array_equal(results[i], core.compose_luma(grays[i % 4], grid_ref(up), planar=True))


def test_pipeline_compose_default_and_exact(rng):
    gray = rng.integers(0, 256, (33, 47), dtype=np.uint8)
    ab = (rng.normal(0, 20, (9, 13, 2))).astype(np.float32)
    planar = np.ascontiguousarray(np.moveaxis(ab, -1, 0))
    up = core.upsample_bilinear(planar, 33, 47)
    np.testing.assert_array_equal(pipeline.compose(gray, ab), core.compose_luma(gray, grid_ref(up), planar=True))
    np.testing.assert_array_equal(pipeline.compose(gray, ab, exact=True), core.compose_luma(gray, up, planar=True))
