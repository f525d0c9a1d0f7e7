"""Kernel benchmarks with pytest-benchmark: each group holds our kernel and the peers a user would pick instead
(OpenCV, scipy, numpy, a Python dict, faiss), on the same inputs, in the same process. Outputs are checked
against the peer before timing (where the peer computes the same thing).

    PYTHONPATH=python pytest benchmarks/test_bench_kernels.py --benchmark-group-by=group \
        --benchmark-columns=median,iqr,rounds --benchmark-sort=mean

Add ``--benchmark-json FILE`` to keep the numbers. Single-threaded everywhere unless a name says otherwise
(``cv2.setNumThreads(1)``, faiss ``omp_set_num_threads(1)``). A benchmark is not a test: nothing here asserts
a timing; ``tests/`` never runs this file.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

from hyperchroma import core

cv2 = pytest.importorskip("cv2")
pytest.importorskip("pytest_benchmark")
sys.path.insert(0, os.path.dirname(__file__))

cv2.setNumThreads(1)
RNG = np.random.default_rng(0)


# ---------------------------------------------------------------- median filter, (512, 512, 2) float32, 5x5
MED = (RNG.standard_normal((512, 512, 2)) * 20).astype(np.float32)
MED_PLANES = [np.ascontiguousarray(MED[..., c]) for c in range(2)]


@pytest.mark.benchmark(group="median 512x512x2 float32 5x5")
def test_median_ours(benchmark):
    out = benchmark(core.median_filter, MED, 5)
    ref = np.dstack([cv2.medianBlur(p, 5) for p in MED_PLANES])
    np.testing.assert_array_equal(out, ref)


@pytest.mark.benchmark(group="median 512x512x2 float32 5x5")
def test_median_opencv(benchmark):
    benchmark(lambda: [cv2.medianBlur(p, 5) for p in MED_PLANES])


@pytest.mark.benchmark(group="median 512x512x2 float32 5x5")
def test_median_scipy(benchmark):
    ndi = pytest.importorskip("scipy.ndimage")
    benchmark.pedantic(ndi.median_filter, args=(MED,), kwargs={"size": (5, 5, 1), "mode": "nearest"}, rounds=3)


# ---------------------------------------------------------------- fused hypercolumn keys (the paper's pyramid)
SPECS = [(15, 1), (25, 1), (4, 2), (4, 2), (4, 4), (4, 4)]
MAPS = [RNG.standard_normal((c, 224 // s, 224 // s)).astype(np.float32) for c, s in SPECS]
THR = np.sort(RNG.standard_normal((56, 2)).astype(np.float32), axis=1)
WTS = RNG.standard_normal(56).astype(np.float32)


@pytest.mark.benchmark(group="keys 224x224, 56 channels, 3 levels")
def test_keys_ours(benchmark):
    from bench_hypercolumns import opencv_numpy_keys

    keys, _ = benchmark(core.hypercolumn_keys, MAPS, 224, 224, THR, WTS)
    ref, _ = opencv_numpy_keys(MAPS, 224, 224, THR, WTS, 3)
    assert np.mean(np.all(ref == keys, axis=1)) > 0.99  # OpenCV rounds differently in the last bit


@pytest.mark.benchmark(group="keys 224x224, 56 channels, 3 levels")
def test_keys_opencv_numpy(benchmark):
    from bench_hypercolumns import opencv_numpy_keys

    benchmark(opencv_numpy_keys, MAPS, 224, 224, THR, WTS, 3)


# ---------------------------------------------------------------- hash table lookup, 100k entries, 50k queries
N_TABLE, N_Q = 100_000, 50_000
TLV = np.unique(RNG.integers(0, 3, (N_TABLE, 56), dtype=np.uint8), axis=0)
TKEYS = core.pack_keys(TLV, 3)
TAB = RNG.uniform(-60, 60, (len(TKEYS), 2)).astype(np.float32)
QKEYS = TKEYS[RNG.integers(0, len(TKEYS), N_Q)]


@pytest.fixture(scope="module")
def table():
    t = core.Table(56, 3, "mean")
    t.insert(TKEYS, TAB)
    return t


@pytest.mark.benchmark(group="table lookup 50k of 100k")
def test_table_ours(benchmark, table):
    ab, hit = benchmark(table.lookup, QKEYS)
    assert (hit == core.STATUS_HIT).all()


@pytest.mark.benchmark(group="table lookup 50k of 100k")
def test_table_dict(benchmark):
    d = {k.tobytes(): (a[0], a[1]) for k, a in zip(TKEYS, TAB)}
    qb = [k.tobytes() for k in QKEYS]  # the dict's best case: keys already bytes
    get = d.get
    benchmark.pedantic(lambda: [get(k) for k in qb], rounds=5)


# ---------------------------------------------------------------- distinct missing keys (the fallback's dedup)
UQ = TKEYS[RNG.integers(0, 4000, 16_000)]


@pytest.mark.benchmark(group="distinct keys 16k rows, 4k distinct")
def test_unique_ours(benchmark):
    first, inverse = benchmark(core.unique_keys, UQ)
    assert len(first) == len(np.unique(UQ, axis=0))


@pytest.mark.benchmark(group="distinct keys 16k rows, 4k distinct")
def test_unique_numpy(benchmark):
    benchmark(np.unique, UQ, axis=0, return_inverse=True)


# ---------------------------------------------------------------- nearest stored key, 20k entries, 5k queries
NLV = TLV[:20_000]
NQ = NLV[RNG.integers(0, len(NLV), 5000)].copy()
flip = RNG.random(NQ.shape) < 0.05
NQ[flip] = RNG.integers(0, 3, int(flip.sum()))


@pytest.fixture(scope="module")
def index():
    w = np.linalg.svd(NLV.astype(np.float32) - NLV.mean(0), full_matrices=False)[2][0]
    return core.SortedIndex(core.pack_keys(NLV, 3), RNG.uniform(-60, 60, (len(NLV), 2)).astype(np.float32), w, 56, 3)


@pytest.mark.benchmark(group="nearest key 5k queries in 20k")
def test_nearest_ours_bounded(benchmark, index):
    benchmark(index.search, core.pack_keys(NQ, 3), max_distance=5.0, max_scan=64)


@pytest.mark.benchmark(group="nearest key 5k queries in 20k")
def test_nearest_ours_exact(benchmark, index):
    benchmark(index.search, core.pack_keys(NQ, 3), exact=True)


@pytest.mark.benchmark(group="nearest key 5k queries in 20k")
def test_nearest_faiss_flat(benchmark, index):
    faiss = pytest.importorskip("faiss")
    faiss.omp_set_num_threads(1)
    flat = faiss.IndexFlatL2(56)
    flat.add(NLV.astype(np.float32))
    q = NQ.astype(np.float32)
    d, _ = benchmark.pedantic(flat.search, args=(q, 1), rounds=3)
    _, ours = index.search(core.pack_keys(NQ, 3), exact=True)
    np.testing.assert_allclose(np.sqrt(d[:, 0]), ours, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- composition: model-size ab -> 720x528 RGB
CH, CW, CSH, CSW = 528, 720, 164, 224
yy, xx = np.mgrid[0:CSH, 0:CSW].astype(np.float32)
CAB = np.stack([30 * np.sin(xx / 17) + 10, 25 * np.cos(yy / 13) - 5]).astype(np.float32)  # smooth, like film ab
CGRAY = np.clip(128 + 60 * np.sin(np.mgrid[0:CH, 0:CW][1] / 9.0) + RNG.normal(0, 8, (CH, CW)), 0, 255).astype(np.uint8)


@pytest.mark.benchmark(group="compose 720x528 from 224x164 ab")
def test_compose_ours_grid(benchmark):
    core.upsample_compose(CGRAY, CAB)  # the grid cells this image meets, filled once
    benchmark(core.upsample_compose, CGRAY, CAB)


@pytest.mark.benchmark(group="compose 720x528 from 224x164 ab")
def test_compose_ours_exact(benchmark):
    benchmark(lambda: core.compose_luma(CGRAY, core.upsample_bilinear(CAB, CH, CW), planar=True))


@pytest.mark.benchmark(group="compose 720x528 from 224x164 ab")
def test_compose_opencv_lab(benchmark):
    """OpenCV: resize each ab plane, join with L from the gray, Lab -> RGB (does not keep the gray's luma)."""

    def run():
        a = cv2.resize(CAB[0], (CW, CH), interpolation=cv2.INTER_LINEAR)
        b = cv2.resize(CAB[1], (CW, CH), interpolation=cv2.INTER_LINEAR)
        lab = np.dstack([core.gray_to_lightness(CGRAY), a, b])
        return cv2.cvtColor(lab, cv2.COLOR_Lab2RGB)

    benchmark(run)


# ---------------------------------------------------------------- classifier input: 720x528 uint8 -> 224x164 float32
RG = RNG.integers(0, 256, (528, 720), dtype=np.uint8)


@pytest.mark.benchmark(group="classifier input 720x528 -> 224x164")
def test_resize_ours(benchmark):
    from PIL import Image

    out = benchmark(core.resize_gray, RG, 164, 224)
    ref = np.asarray(Image.fromarray(RG * np.float32(1 / 255), mode="F").resize((224, 164), Image.Resampling.BILINEAR))
    np.testing.assert_allclose(out, ref, rtol=0, atol=3e-7)


@pytest.mark.benchmark(group="classifier input 720x528 -> 224x164")
def test_resize_pillow_float(benchmark):
    """Pillow's antialiased BILINEAR on the float plane: the same filter (what images.py called before)."""
    from PIL import Image

    benchmark(lambda: np.asarray(Image.fromarray(RG * np.float32(1 / 255), mode="F")
                                 .resize((224, 164), Image.Resampling.BILINEAR)))


@pytest.mark.benchmark(group="classifier input 720x528 -> 224x164")
def test_resize_opencv_area(benchmark):
    """OpenCV INTER_AREA on the float plane (a different, box-shaped filter)."""
    benchmark(lambda: cv2.resize(RG.astype(np.float32) * np.float32(1 / 255), (224, 164),
                                 interpolation=cv2.INTER_AREA))


# ---------------------------------------------------------------- one-step neighbours, 10k missing keys in 100k
@pytest.fixture(scope="module")
def one_step_table():
    from bench_table import one_step_inputs

    keys, ab, q = one_step_inputs(100_000)
    t = core.Table(56, 3, "mean")
    t.insert(keys, ab)
    q = q[t.lookup(q)[1] == core.STATUS_MISS][:10_000]
    t.lookup_one_step(q[:1])  # builds the neighbour index (once per content)
    return t, keys, ab, q


@pytest.mark.benchmark(group="one-step neighbours of 10k missing keys in 100k")
def test_one_step_index(benchmark, one_step_table):
    t, _, _, q = one_step_table
    ab, hits = benchmark(t.lookup_one_step, q)
    ab0, hits0 = t.lookup_one_step(q, indexed=False)
    np.testing.assert_array_equal(hits, hits0)
    np.testing.assert_array_equal(ab, ab0)


@pytest.mark.benchmark(group="one-step neighbours of 10k missing keys in 100k")
def test_one_step_probes(benchmark, one_step_table):
    t, _, _, q = one_step_table
    benchmark(t.lookup_one_step, q, indexed=False)


@pytest.mark.benchmark(group="one-step neighbours of 10k missing keys in 100k")
def test_one_step_dict(benchmark, one_step_table):
    """A Python dict of the stored keys (unpacked bytes), every +-1 neighbour of a query probed."""
    t, keys, ab, q = one_step_table
    d = {k.tobytes(): a for k, a in zip(core.unpack_keys(keys, 56, 3), ab)}
    qs = core.unpack_keys(q, 56, 3)[:1000]  # a tenth of the queries (the dict takes ~ms each); x10 when comparing

    def run():
        out = []
        for k in qs:
            s, n = 0.0, 0
            for c in range(56):
                for to in (int(k[c]) - 1, int(k[c]) + 1):
                    if 0 <= to < 3:
                        m = k.copy()
                        m[c] = to
                        a = d.get(m.tobytes())
                        if a is not None:
                            s, n = s + a[0], n + 1
            out.append((s, n))
        return out

    benchmark.pedantic(run, rounds=3)
