"""Guided filter and luma-exact composition: speed against the peers a user would pick, and the quality bound.

    PYTHONPATH=python python benchmarks/bench_guided.py [--repeats 15] [--frames 80] [--skip-speed] [--skip-quality]
        [--skip-compose-speed] [--compose-only]
        [--pipeline [--pipeline-frames 24] [--pipeline-protocol film-vtest|film-tree|photos]
                    [--pipeline-grid small:4:100,full:8:100]]
    (benchmarks/protocols.py finds the data through HYPERCHROMA_DATA, e.g. HYPERCHROMA_DATA=/work/shared/data)

Speed (same process, runs interleaved so every peer sees the same machine load; median ms):
- ours: hyperchroma.core.guided_filter(guide (h,w) float32, ab (h,w,2) float32, r, eps, threads).
- OpenCV box recipe: He et al.'s Algorithm 1 in numpy with cv2.boxFilter for every mean (the standard recipe),
  with the same edge handling as ours (unnormalized box sums with zero padding, divided by the pixel count N,
  as in the paper) and checked equal to ours; and the common shortcut with cv2.boxFilter's normalized default
  border (BORDER_REFLECT_101: different edge values, slightly cheaper), timed for reference only.
- cv2.ximgproc.guidedFilter (opencv-contrib) when installed; opencv-python-headless has no ximgproc.
cv2.setNumThreads(threads) is set to the same thread count as ours.

Composition speed (--compose-only runs just this): compose_luma against lab_to_rgb(gray_to_lightness(gray), ab)
on 8 film-vtest frames at full size, gray = convert("L"), ab = the truth's Lab ab box-blurred (15x15) and scaled
by 0.8 (like model output: smooth, moderate chroma), the truth's ab itself, and the blurred ab scaled by 1.6 (more
of it outside the gamut: the slow path). CPU time (time.process_time, so another process's load counts less),
the minimum of --repeats runs per frame, averaged over the frames; 2 threads: wall time, minimum.

Quality (--frames, from /work/shared/data/film-vtest): truth rgb, gray = Image.convert("L"), ab = truth's Lab ab;
PSNR against the truth of compose_luma(gray, ab) and of lab_to_rgb(gray_to_lightness(gray), ab) (today's
composition), and how often each one's convert("L") equals gray: the upper bound of what the luma-exact
composition gains when the colors are right.

Pipeline (--pipeline): the colorizer fit on a protocol's training images (benchmarks/protocols.py), on its
test images, with and without guided_filter after the median filter (at model size, or after upsampling with
the full-size gray as guide), composed both ways: PSNR and AUC against the truth.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import time

import cv2
import numpy as np

from hyperchroma import core

sys.path.insert(0, os.path.dirname(__file__))
from common import cpu_name  # noqa: E402

VTEST = os.path.join(os.environ.get("HYPERCHROMA_DATA", os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")), "film-vtest")


def timed(fns: dict, repeats: int) -> dict:
    """Median milliseconds of each callable; rounds interleave the callables."""
    times = {name: [] for name in fns}
    for fn in fns.values():  # warm-up
        fn()
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: 1e3 * float(np.median(t)) for name, t in times.items()}


def guided_cv2_exact(I: np.ndarray, p: np.ndarray, r: int, eps: float) -> np.ndarray:
    """He et al.'s Algorithm 1 with cv2.boxFilter sums / N (zero padding, N = pixels inside): ours, in numpy."""
    k = (2 * r + 1, 2 * r + 1)

    def box(x):
        return cv2.boxFilter(x, -1, k, normalize=False, borderType=cv2.BORDER_CONSTANT)

    N = box(np.ones(I.shape, np.float32))
    if p.ndim == 3:
        N3, I3 = N[..., None], I[..., None]
    else:
        N3, I3 = N, I
    mI = box(I) / N
    mp = box(p) / N3
    var = box(I * I) / N - mI * mI
    cov = box(I3 * p) / N3 - (mI[..., None] if p.ndim == 3 else mI) * mp
    a = cov / ((var + eps)[..., None] if p.ndim == 3 else var + eps)
    b = mp - a * (mI[..., None] if p.ndim == 3 else mI)
    return (box(a) / N3) * I3 + box(b) / N3


def guided_cv2_default(I: np.ndarray, p: np.ndarray, r: int, eps: float) -> np.ndarray:
    """The usual shortcut: normalized cv2.boxFilter with its default border (reflect 101), no N."""
    k = (2 * r + 1, 2 * r + 1)

    def box(x):
        return cv2.boxFilter(x, -1, k)

    I3 = I[..., None]
    mI = box(I)
    mp = box(p)
    var = box(I * I) - mI * mI
    cov = box(I3 * p) - mI[..., None] * mp
    a = cov / (var + eps)[..., None]
    b = mp - a * mI[..., None]
    return box(a) * I3 + box(b)


def speed(args) -> None:
    have_ximgproc = hasattr(cv2, "ximgproc") and hasattr(cv2.ximgproc, "guidedFilter")
    print(f"guided filter, guide (h,w) float32 in 0..255 + src (h,w,2) float32; {cpu_name()}, "
          f"{os.cpu_count()} logical CPUs")
    print(f"numpy {np.__version__}, OpenCV {cv2.__version__}; cv2.ximgproc.guidedFilter: "
          f"{'available' if have_ximgproc else 'not available (opencv-python-headless has no contrib modules)'}")
    print(f"median of {args.repeats} interleaved runs; times in ms; ratio = peer / ours (> 1: ours is faster)\n")
    rng = np.random.default_rng(0)
    head = "| size | r | eps | threads | ours | cv2 box recipe (same edges) | ratio | cv2 box, default border | ratio |"
    if have_ximgproc:
        head += " ximgproc | ratio |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for (h, w) in [(168, 224), (576, 768)]:
        guide = cv2.GaussianBlur(rng.uniform(0, 255, (h, w)).astype(np.float32), (0, 0), 2)
        src = (rng.standard_normal((h, w, 2)) * 20).astype(np.float32)
        for r, eps in [(4, 100.0), (8, 400.0)]:
            ref = guided_cv2_exact(guide, src, r, eps)
            got = core.guided_filter(guide, src, r, eps)
            err = float(np.abs(got - ref).max())
            assert err < 1e-2, f"ours and the cv2 recipe differ by {err}"
            for threads in (1, 2):
                cv2.setNumThreads(threads)
                args_ = (guide, src, r, eps)
                fns = {
                    "ours": lambda a=args_, t=threads: core.guided_filter(*a, threads=t),
                    "cv2": lambda a=args_: guided_cv2_exact(*a),
                    "cv2d": lambda a=args_: guided_cv2_default(*a),
                }
                if have_ximgproc:
                    fns["xi"] = lambda a=args_: cv2.ximgproc.guidedFilter(*a)
                t = timed(fns, args.repeats)
                row = (f"| ({h},{w},2) | {r} | {eps:g} | {threads} | {t['ours']:.2f} | {t['cv2']:.2f} | "
                       f"{t['cv2'] / t['ours']:.2f} | {t['cv2d']:.2f} | {t['cv2d'] / t['ours']:.2f} |")
                if have_ximgproc:
                    row += f" {t['xi']:.2f} | {t['xi'] / t['ours']:.2f} |"
                print(row)
    cv2.setNumThreads(-1)
    print()


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def quality(args) -> None:
    from PIL import Image

    files = sorted(glob.glob(os.path.join(VTEST, "*.jpg")))[: args.frames]
    if not files:
        print(f"no frames in {VTEST}: quality section skipped")
        return
    rows = {"compose_luma": [], "lab_to_rgb (today)": []}
    exact = {k: [] for k in rows}
    t_luma, t_lab = [], []
    for f in files:
        truth = np.asarray(Image.open(f).convert("RGB"))
        gray = np.asarray(Image.fromarray(truth).convert("L"))
        _, ab = core.rgb_to_lab(truth)
        t0 = time.perf_counter()
        a = core.compose_luma(gray, ab)
        t1 = time.perf_counter()
        b = core.lab_to_rgb(core.gray_to_lightness(gray), ab)
        t2 = time.perf_counter()
        t_luma.append(t1 - t0)
        t_lab.append(t2 - t1)
        for name, out in (("compose_luma", a), ("lab_to_rgb (today)", b)):
            rows[name].append(psnr(out, truth))
            exact[name].append(np.mean(np.asarray(Image.fromarray(out).convert("L")) == gray))
    h, w = gray.shape
    print(f"composition with the truth's ab on {len(files)} film-vtest frames ({h}x{w}); gray = convert('L')\n")
    print("| composition | PSNR vs truth (dB, mean) | min | max | convert('L') == gray (pixels) |")
    print("|---|---|---|---|---|")
    for name, values in rows.items():
        p = np.array(values)
        print(f"| {name} | {p.mean():.2f} | {p.min():.2f} | {p.max():.2f} | {100 * np.mean(exact[name]):.3f}% |")
    print(f"\ntime per frame, 1 thread (median): compose_luma {1e3 * np.median(t_luma):.1f} ms, "
          f"lab_to_rgb {1e3 * np.median(t_lab):.1f} ms")


def compose_speed(args) -> None:
    from PIL import Image

    files = sorted(glob.glob(os.path.join(VTEST, "*.jpg")))[::10][:8]
    if not files:
        print(f"no frames in {VTEST}: composition speed skipped")
        return
    frames = []
    for f in files:
        truth = np.asarray(Image.open(f).convert("RGB"))
        gray = np.asarray(Image.fromarray(truth).convert("L"))
        _, ab = core.rgb_to_lab(truth)
        frames.append((gray, ab, cv2.blur(ab, (15, 15))))

    def best(fn, clock):
        ts = []
        for _ in range(args.repeats):
            t0 = clock()
            fn()
            ts.append(clock() - t0)
        return min(ts)

    h, w = frames[0][0].shape
    print(f"composition speed on {len(frames)} film-vtest frames ({h}x{w}); {cpu_name()}; "
          f"ns per pixel = CPU time / pixels, min of {args.repeats} runs, mean over frames\n")
    print("| ab | compose_luma, 1 thread (ns/px) | ms/frame | compose_luma, 2 threads (ms/frame, wall) "
          "| lab_to_rgb, 1 thread (ns/px) | compose / lab_to_rgb |")
    print("|---|---|---|---|---|---|")
    for name, make in (("truth, blurred 15x15, x0.8 (model-like)", lambda ab, blur: blur * 0.8),
                       ("truth", lambda ab, blur: ab),
                       ("truth, blurred 15x15, x1.6 (saturated)", lambda ab, blur: blur * 1.6)):
        t1, t2, tl = [], [], []
        for gray, ab, blur in frames:
            x = np.ascontiguousarray(make(ab, blur), dtype=np.float32)
            t1.append(best(lambda g=gray, a=x: core.compose_luma(g, a), time.process_time))
            t2.append(best(lambda g=gray, a=x: core.compose_luma(g, a, threads=2), time.perf_counter))
            tl.append(best(lambda g=gray, a=x: core.lab_to_rgb(core.gray_to_lightness(g), a), time.process_time))
        n = h * w
        c, lab = 1e9 * np.mean(t1) / n, 1e9 * np.mean(tl) / n
        print(f"| {name} | {c:.1f} | {1e3 * np.mean(t1):.1f} | {1e3 * np.mean(t2):.1f} | {lab:.1f} | {c / lab:.2f} |")
    print()


def pipeline(args) -> None:
    """The colorizer end to end on a development protocol: ab at model size (table + median, as the
    model does it, through hyperchroma.pipeline with the model's own guided filter off), then optionally the
    guided filter, then upsampling and either composition."""
    import sys

    from PIL import Image

    sys.path.insert(0, os.path.dirname(__file__))
    from protocols import PROTOCOLS

    import hyperchroma as hc
    from hyperchroma import metrics, pipeline

    train, test = PROTOCOLS[args.pipeline_protocol]()
    test = test[: args.pipeline_frames]
    model = hc.fit(train, seed=0)
    plain = model.colorize_settings.replace(guided_radius=0, use_confidence=False)
    # (where, r, eps): "small" filters the model-size ab (guide: model-size gray) before upsampling, "full" the
    # upsampled ab (guide: the full-resolution gray), i.e. guided upsampling
    # (a wider grid on 6 frames: r 1..4 at model size and 2..16 at full size, eps 1..400, all below "nothing"
    # except r <= 2 by <= 0.05 dB)
    grid = [None]
    for item in args.pipeline_grid.split(","):
        where, r, eps = item.split(":")
        if where not in ("small", "full"):
            raise SystemExit(f"--pipeline-grid: expected small:r:eps or full:r:eps, got {item}")
        grid.append((where, int(r), float(eps)))
    score = {g: {"psnr_lab": [], "psnr_luma": [], "auc": []} for g in grid}
    for f in test:
        truth = np.asarray(Image.open(f).convert("RGB"))
        gray = np.asarray(Image.fromarray(truth).convert("L"))
        L, ab_true = core.rgb_to_lab(truth)
        prepared = pipeline.prepare(truth, model.fit_settings.size)
        ab_small, _ = pipeline.model_colors(model.classifier, model.quantizer, model.color_table, prepared, plain,
                                            model.threads)
        guide = prepared.gray * np.float32(255)
        up = np.moveaxis(core.upsample_bilinear(np.ascontiguousarray(np.moveaxis(ab_small, -1, 0)),
                                                truth.shape[0], truth.shape[1]), 0, -1)
        for g in grid:
            if g is None:
                ab_full = np.ascontiguousarray(up)
            elif g[0] == "small":
                ab = core.guided_filter(guide, ab_small, g[1], g[2])
                planar = np.ascontiguousarray(np.moveaxis(ab, -1, 0))
                ab_full = np.ascontiguousarray(np.moveaxis(core.upsample_bilinear(planar, *truth.shape[:2]), 0, -1))
            else:
                ab_full = core.guided_filter(gray, up, g[1], g[2])
            lab = core.lab_to_rgb(L, ab_full)
            luma = core.compose_luma(gray, ab_full)
            score[g]["psnr_lab"].append(metrics.psnr(lab, truth))
            score[g]["psnr_luma"].append(metrics.psnr(luma, truth))
            score[g]["auc"].append(metrics.auc(core.rgb_to_lab(luma)[1], ab_true))
    print(f"\ncolorizer on {args.pipeline_protocol} (fit on {len(train)} images, {len(test)} test images), "
          f"median_size={model.settings.median_size}, model size {model.settings.size} (long side)")
    print("guides in 0..255 (eps in their units squared); AUC of the compose_luma output\n")
    print("| after the median filter | PSNR, lab_to_rgb (today) | PSNR, compose_luma | AUC (compose_luma) |")
    print("|---|---|---|---|")
    for g in grid:
        if g is None:
            name = "nothing (today)"
        elif g[0] == "small":
            name = f"guided_filter(model-size gray, ab, r={g[1]}, eps={g[2]:g}), then upsample"
        else:
            name = f"upsample, then guided_filter(full-size gray, ab, r={g[1]}, eps={g[2]:g})"
        m = {k: float(np.mean(v)) for k, v in score[g].items()}
        print(f"| {name} | {m['psnr_lab']:.3f} | {m['psnr_luma']:.3f} | {m['auc']:.4f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--frames", type=int, default=80)
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--skip-quality", action="store_true")
    ap.add_argument("--skip-compose-speed", action="store_true")
    ap.add_argument("--compose-only", action="store_true", help="only the composition speed table")
    ap.add_argument("--pipeline", action="store_true", help="also run the colorizer end to end (fits a model)")
    ap.add_argument("--pipeline-frames", type=int, default=24)
    ap.add_argument("--pipeline-protocol", default="film-vtest", help="film-vtest, film-tree or photos")
    ap.add_argument("--pipeline-grid", default="small:1:10,small:2:10,small:4:100,full:2:10,full:4:100,full:8:100",
                    help="comma-separated where:r:eps, where = small (model size) or full (after upsampling)")
    args = ap.parse_args()
    if args.compose_only:
        compose_speed(args)
        return
    if not args.skip_speed:
        speed(args)
    if not args.skip_compose_speed:
        compose_speed(args)
    if not args.skip_quality:
        quality(args)
    if args.pipeline:
        pipeline(args)


if __name__ == "__main__":
    main()
