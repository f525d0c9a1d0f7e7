"""Film benchmark: quality of the streaming engine against the flow peer and the per-frame table; speed.

Command (from the repository root, extension built with ./dev-build.sh, data in ../shared/data or
HYPERCHROMA_DATA):

    PYTHONPATH=python:benchmarks python benchmarks/bench_film.py            # quality on both films + speed
    PYTHONPATH=python:benchmarks python benchmarks/bench_film.py --films tree --no-speed
    PYTHONPATH=python:benchmarks python benchmarks/bench_film.py --films vtest tree --no-speed --methods  # engine only
    PYTHONPATH=python:benchmarks python benchmarks/bench_film.py --speed-only --presets "" veryfast
    PYTHONPATH=python:benchmarks python benchmarks/bench_film.py --speed-only --speed-size 720x528
    ... --variants "" "table_every=8"   # engine options side by side (quality and speed)

Protocol (../shared/data/README.md): 8 keyframes evenly spread (``step = n // 8; key = range(step//2, n,
step)[:8]``), color frames of the video itself; every other non-key frame tests; the gray input is
``PIL.Image.fromarray(rgb).convert("L")``. Second protocol ("first half"): only the keyframes in the film's
first half. Metrics: PSNR (RGB), AuC, warp error at model size (mean over consecutive frames of the mean
||ab_t(x) - ab_{t-1}(x + f(x))||, f = DIS (medium) flow on the truth's luminance, pixels failing a
forward-backward check excluded; the truth's own warp error alongside; "low-passed": the same after a Gaussian
blur of sigma LOWPASS_SIGMA = 2 model-size pixels of every method's ab and the truth's, which removes a lossy
truth's pixel-scale chroma noise and keeps the color regions whose flicker a viewer sees), and the largest warp error on
transitions into or out of a keyframe against the largest on ordinary transitions; "reversed": the same largest
values with each transition compensated the other way (``||ab_{t-1}(x) - ab_t(x + g(x))||``, g = the truth's
flow from t-1 to t, on t-1's consistent pixels). The one-way metric is not symmetric in time: a frame colored
from the keyframe after it is a warp of the keyframe, and compensating it back onto the keyframe warps it a
second time (two bilinear resamplings of a textured image), while a frame after a keyframe is compared with one
resampling each side; the reversed metric has the opposite bias, so a jump at a keyframe that shows in only one
of them comes from the ruler, one in both from the colors.

``--flicker A``: the same protocols on a flickering copy of each film (old film's frame-to-frame exposure
changes): every color frame multiplied by its own gain, uniform in [1 - A, 1 + A] (seeded), before anything
else, so keyframes, gray input and truth all flicker alike.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

import av
import cv2
import numpy as np
from PIL import Image

import hyperchroma as hc
from hyperchroma import core
from hyperchroma.images import model_shape
from hyperchroma.metrics import auc, psnr
from hyperchroma.video import colorize_frames, colorize_video
from hyperchroma.video.film import locate_keyframes
from hyperchroma.video import propagate as pp

sys.path.insert(0, os.path.dirname(__file__))
from common import print_table  # noqa: E402
from film_baseline import flow_baseline  # noqa: E402
from montage import clean, montage, returns, transitions  # noqa: E402
from protocols import DATA  # noqa: E402


def decode(path):
    with av.open(path) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])]


def flicker(rgbs, amp, seed=0):
    """The frames, each multiplied by its own gain, uniform in [1 - amp, 1 + amp] (seeded)."""
    gains = 1 + amp * np.random.default_rng(seed).uniform(-1, 1, len(rgbs))
    return [np.clip(r.astype(np.float32) * g, 0, 255).astype(np.uint8) for r, g in zip(rgbs, gains)]


def small_ab(rgb, shape):
    h, w = shape
    return cv2.resize(core.rgb_to_lab(rgb)[1], (w, h), interpolation=cv2.INTER_AREA)


class Truth:
    def __init__(self, rgbs, shape):
        self.shape = shape
        h, w = shape
        dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        sm = [cv2.resize(cv2.cvtColor(r, cv2.COLOR_RGB2GRAY), (w, h), interpolation=cv2.INTER_AREA) for r in rgbs]
        self.flows, self.masks = [None], [None]
        self.flows_fwd, self.masks_fwd = [None], [None]  # the same transitions compensated the other way
        for t in range(1, len(rgbs)):
            fb = dis.calc(sm[t], sm[t - 1], None)
            ff = dis.calc(sm[t - 1], sm[t], None)
            self.flows.append(fb)
            self.masks.append(pp.consistency(fb, ff) > 0)
            self.flows_fwd.append(ff)
            self.masks_fwd.append(pp.consistency(ff, fb) > 0)


#: Gaussian sigma (model-size pixels) of the low-passed warp error: it leaves color regions and removes the
#: pixel-scale chroma noise of a lossy truth (Cinepak's 4x4 blocks are ~1.2 model-size pixels on tree.avi).
LOWPASS_SIGMA = 2.0


def lowpass(ab):
    return cv2.GaussianBlur(ab, (0, 0), LOWPASS_SIGMA, borderType=cv2.BORDER_REFLECT)


def evaluate(name, outputs, rgbs, test, keyset, truth):
    ps, au, we, wl, wr = [], [], {}, [], {}
    prev = prev_l = None
    for t, out in enumerate(outputs):
        a = small_ab(out, truth.shape)
        al = lowpass(a)
        if t in test:
            ps.append(psnr(out, rgbs[t]))
            au.append(auc(core.rgb_to_lab(out)[1], core.rgb_to_lab(rgbs[t])[1]))
        if prev is not None and truth.masks[t].mean() > 0.2:
            d = np.sqrt(((a - pp.warp(prev, truth.flows[t])) ** 2).sum(-1))
            we[t] = float(d[truth.masks[t]].mean())
            dl = np.sqrt(((al - pp.warp(prev_l, truth.flows[t])) ** 2).sum(-1))
            wl.append(float(dl[truth.masks[t]].mean()))
            if truth.masks_fwd[t].mean() > 0.2:
                dr = np.sqrt(((prev - pp.warp(a, truth.flows_fwd[t])) ** 2).sum(-1))
                wr[t] = float(dr[truth.masks_fwd[t]].mean())
        prev, prev_l = a, al
    def jumps(w):
        at_key = [v for t, v in w.items() if t in keyset or t - 1 in keyset]
        ordinary = [v for t, v in w.items() if not (t in keyset or t - 1 in keyset)]
        return max(at_key) if at_key else float("nan"), max(ordinary) if ordinary else float("nan")

    (jk, jo), (rk, ro) = jumps(we), jumps(wr)
    return {"method": name, "psnr": statistics.mean(ps), "auc": statistics.mean(au),
            "warp": statistics.mean(we.values()), "warp_lowpass": statistics.mean(wl),
            "jump_key": jk, "jump_other": jo, "jump_key_rev": rk, "jump_other_rev": ro}


def quality(film, rgbs, first_half, methods, variants=("",)):
    n = len(rgbs)
    step = n // 8
    keys = list(range(step // 2, n, step))[:8]
    if first_half:
        keys = [k for k in keys if k < n // 2]
    keyset = set(keys)
    test = {t for t in range(0, n, 2) if t not in keyset}
    grays = [np.asarray(Image.fromarray(r).convert("L")) for r in rgbs]
    shape = model_shape(*grays[0].shape, 224)
    truth = Truth(rgbs, shape)
    key_rgb = [rgbs[k] for k in keys]
    m = hc.fit(key_rgb)
    rows = [evaluate("truth", iter(rgbs), rgbs, test, keyset, truth)]
    rows[0]["psnr"] = rows[0]["auc"] = float("nan")
    if "table" in methods:
        rows.append(evaluate("per-frame table", (m.colorize(g) for g in grays), rgbs, test, keyset, truth))
    if "flow" in methods:
        rows.append(evaluate("flow peer", flow_baseline(grays, dict(zip(keys, key_rgb))), rgbs, test, keyset,
                             truth))
    placements = locate_keyframes(m, grays, key_rgb)  # as colorize_video does (whole-film pass)
    print(f"\n{film} {'first half' if first_half else 'all'}: keys {keys}; located at {sorted(placements)}")
    for v in variants:
        stats = {}
        kw = eval(f"dict({v})")
        t0 = time.perf_counter()
        rows.append(evaluate(f"film engine {v}".strip(), colorize_frames(m, grays, keyframes=key_rgb, stats=stats,
                                                                       placements=placements, **kw), rgbs, test, keyset, truth))
        rows[-1]["s"] = time.perf_counter() - t0
        placed = sorted(f for fs in stats["keyframes_placed"].values() for f in fs)
        print(f"  {v or 'defaults'}: placed {placed}; shots {stats['shots']}; "
              f"table calls {stats['table_calls']}/{n}", flush=True)
    return rows


def speed(path, presets, variants):
    rgb_frames = decode(path)
    n = len(rgb_frames)
    step = n // 8
    keys = [rgb_frames[k] for k in list(range(step // 2, n, step))[:8]]
    del rgb_frames
    m = hc.fit(keys)
    rows = []
    for preset in presets:
      with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        with av.open(path) as src, av.open(os.path.join(d, "plain.mp4"), "w") as dst:
            vs = src.streams.video[0]
            vs.thread_type = "AUTO"
            opts = {"crf": "18", **({"preset": preset} if preset else {})}
            os_ = dst.add_stream("libx264", rate=vs.average_rate, options=opts)
            os_.width, os_.height, os_.pix_fmt = vs.codec_context.width, vs.codec_context.height, "yuv420p"
            for f in src.decode(vs):
                img = f.to_ndarray(format="rgb24")
                for p in os_.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    dst.mux(p)
            for p in os_.encode():
                dst.mux(p)
        plain = time.perf_counter() - t0
        name = preset or "medium"
        rows.append([f"plain decode+encode (rgb24, x264 crf 18 {name})", n, f"{plain:.1f}", f"{n / plain:.1f}"])
        for v in variants:
            t0 = time.perf_counter()
            stats = colorize_video(m, path, os.path.join(d, "film.mp4"), keyframes=keys, progress=False,
                                   preset=preset, **eval(f"dict({v})"))
            ours = time.perf_counter() - t0
            rows.append([f"colorize_video {v} (x264 {name})".replace("  ", " "), stats["frames"], f"{ours:.1f}",
                         f"{stats['frames'] / ours:.1f}  (table calls {stats['table_calls']})"])
    H, W = keys[0].shape[:2]
    print_table(["path", "frames", "seconds", "frames/s"], rows)
    print(f"({W}x{H}, {os.cpu_count()} cores, load average before: {os.getloadavg()[0]:.1f})")


def resized_copy(path, size, folder):
    """``path`` re-encoded (MPEG-4 Part 2, 4 Mbit/s, like the source) at ``size`` (W, H) into ``folder``."""
    W, H = size
    out = os.path.join(folder, f"{os.path.splitext(os.path.basename(path))[0]}_{W}x{H}.avi")
    with av.open(path) as src, av.open(out, "w") as dst:
        vs = src.streams.video[0]
        o = dst.add_stream("mpeg4", rate=vs.average_rate)
        o.width, o.height, o.pix_fmt, o.bit_rate = W, H, "yuv420p", 4_000_000
        for f in src.decode(vs):
            img = cv2.resize(f.to_ndarray(format="rgb24"), (W, H), interpolation=cv2.INTER_AREA)
            for p in o.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                dst.mux(p)
        for p in o.encode():
            dst.mux(p)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--films", nargs="*", default=["vtest", "tree"],
                    help="vtest, tree (../shared/data/video), montage (10 shots built from them and photos, montage.py) "
                         "clean (7 lossless shots over photos, montage.py: a truth without codec noise) and transitions "
                         "(6 of them joined by dissolves and fades) and returns (shot and reverse shot, montage.py)")
    ap.add_argument("--methods", nargs="*", default=["table", "flow"])
    ap.add_argument("--no-speed", action="store_true")
    ap.add_argument("--speed-only", action="store_true")
    ap.add_argument("--no-half", action="store_true")
    ap.add_argument("--presets", nargs="*", default=["", "veryfast"], help="x264 presets for the speed run")
    ap.add_argument("--variants", nargs="*", default=[""], help='engine options, e.g. "decay=0.99"')
    ap.add_argument("--speed-size", default=None, metavar="WxH",
                    help="speed run on vtest.avi re-encoded at this size first (e.g. 720x528, the bar's size)")
    ap.add_argument("--flicker", type=float, default=0.0, metavar="A",
                    help="multiply each frame by a random gain in [1-A, 1+A] first (old film's flicker)")
    a = ap.parse_args()
    for film in a.films if not a.speed_only else []:
        rgbs = {"montage": montage, "clean": clean, "transitions": transitions,
                "returns": returns}.get(film, lambda: decode(os.path.join(DATA, "video", film + ".avi")))()
        if a.flicker:
            rgbs = flicker(rgbs, a.flicker)
            print(f"\n{film}: every frame times a gain in [{1 - a.flicker:.2f}, {1 + a.flicker:.2f}]")
        for half in ([False] if a.no_half else [False, True]):
            rows = quality(film, rgbs, half, a.methods, a.variants)
            print_table(["method", "PSNR dB", "AuC", "warp err", "warp err, low-passed", "max jump at keys",
                         "max jump elsewhere", "reversed: at keys", "elsewhere"],
                        [[r["method"], f"{r['psnr']:.2f}", f"{r['auc']:.4f}", f"{r['warp']:.2f}",
                          f"{r['warp_lowpass']:.2f}", f"{r['jump_key']:.2f}", f"{r['jump_other']:.2f}",
                          f"{r['jump_key_rev']:.2f}", f"{r['jump_other_rev']:.2f}"]
                         for r in rows], )
            sys.stdout.flush()
    if not a.no_speed:
        print(f"\nspeed on vtest.avi (load average {os.getloadavg()[0]:.1f})")
        path = os.path.join(DATA, "video", "vtest.avi")
        with tempfile.TemporaryDirectory() as d:
            if a.speed_size:
                path = resized_copy(path, tuple(int(v) for v in a.speed_size.lower().split("x")), d)
            speed(path, [p or None for p in a.presets], a.variants)


if __name__ == "__main__":
    main()
