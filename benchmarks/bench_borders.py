"""Edge bars (letterbox, thin black frame, noisy near-black bars, pillarbox): PSNR against the truth and the
model's confidence, with the bar handling on and off (``borders``), and whether unbordered images come out bit
for bit the same with it on as with it off.

    PYTHONPATH=python python benchmarks/bench_borders.py            # the packaged demo data
    PYTHONPATH=python python benchmarks/bench_borders.py --photos   # also ../shared/data/photos (train 3 of 4)

The bordered truth is the truth with the same bars (black bars are neutral, so leaving them gray is right);
PSNR is on the whole frame and on the picture inside the bars alone.
"""

from __future__ import annotations

import argparse
import glob
import os
from typing import Callable, Dict, List, Tuple

import numpy as np

import hyperchroma as hc
from hyperchroma import demo
from hyperchroma.borders import content_box
from hyperchroma.images import load_image, luma
from hyperchroma.metrics import psnr

Box = Tuple[int, int, int, int]


def letterbox(img: np.ndarray, rng: np.random.Generator) -> Tuple[np.ndarray, Box]:
    """Black bars top and bottom making the frame 4:3 -> 1:1 taller (an eighth of the height each)."""
    H, W = img.shape[:2]
    b = H // 6
    out = np.zeros((H + 2 * b, W, 3), np.uint8)
    out[b:b + H] = img
    return out, (b, b + H, 0, W)


def pillarbox(img: np.ndarray, rng: np.random.Generator) -> Tuple[np.ndarray, Box]:
    """Dark gray (16) bars left and right."""
    H, W = img.shape[:2]
    b = W // 6
    out = np.full((H, W + 2 * b, 3), 16, np.uint8)
    out[:, b:b + W] = img
    return out, (0, H, b, b + W)


def thin(img: np.ndarray, rng: np.random.Generator) -> Tuple[np.ndarray, Box]:
    """A 4-pixel black frame all round, its inner edge ragged by 0-2 pixels (eating into the picture)."""
    H, W = img.shape[:2]
    out = img.copy()
    for side in range(4):
        depth = 4 + rng.integers(0, 3, size=(W if side < 2 else H))
        for k, d in enumerate(depth):
            if side == 0:
                out[:d, k] = 0
            elif side == 1:
                out[H - d:, k] = 0
            elif side == 2:
                out[k, :d] = 0
            else:
                out[k, W - d:] = 0
    return out, (6, H - 6, 6, W - 6)


def noisy(img: np.ndarray, rng: np.random.Generator) -> Tuple[np.ndarray, Box]:
    """Letterbox bars of near-black noise (level 8, sigma 3), like a film scan's."""
    out, box = letterbox(img, rng)
    bars = np.ones(out.shape[:2], bool)
    bars[box[0]:box[1], box[2]:box[3]] = False
    noise = np.clip(np.rint(rng.normal(8, 3, size=out.shape[:2])), 0, 255).astype(np.uint8)
    out[bars] = noise[bars][:, None]
    return out, box


KINDS: Dict[str, Callable[[np.ndarray, np.random.Generator], Tuple[np.ndarray, Box]]] = {
    "letterbox": letterbox, "pillarbox": pillarbox, "thin-ragged": thin, "noisy-bars": noisy}


def _same_table(a: "hc.Model", b: "hc.Model") -> bool:
    ea, eb = a.color_table.entries(), b.color_table.entries()
    return ea.keys() == eb.keys() and all(np.array_equal(ea[k], eb[k]) for k in ea)


def run(name: str, train: List[str], test: List[str]) -> None:
    model = hc.fit(train, keep_keyframes=False)
    off = model.with_settings(borders=False)
    truths = [load_image(p) for p in test]
    bare = [t for t in truths if content_box(luma(t)).is_full(*t.shape[:2])]
    same = sum(np.array_equal(model.colorize(luma(t)), off.colorize(luma(t))) for t in bare)
    print(f"\n{name}: {len(train)} train, {len(test)} test ({len(test) - len(bare)} with bars of their own); "
          f"outputs of the {len(bare)} without identical with borders on and off: {same} of {len(bare)}")
    rng = np.random.default_rng(1)
    boxed = [letterbox(load_image(p), rng)[0] for p in train]
    for b in (True, False):
        m = hc.fit(boxed, keep_keyframes=False, borders=b)
        print(f"fit on letterboxed training images, borders={b}: same table as the plain fit: "
              f"{_same_table(m, model)}, mean PSNR of the test images "
              f"{np.mean([psnr(m.colorize(luma(t)), t) for t in truths]):.2f} "
              f"(plain fit {np.mean([psnr(model.colorize(luma(t)), t) for t in truths]):.2f}), "
              f"confidence {np.mean([m.colorize(luma(t), details=True).image_confidence for t in truths]):.3f}")
    print(f"{'kind':12} {'conf off':>8} {'conf on':>8} {'conf plain':>10} {'PSNR off':>8} {'PSNR on':>8} "
          f"{'pic off':>8} {'pic on':>8} {'pic plain':>9} {'gray':>6}")
    rng = np.random.default_rng(0)
    for kind, make in KINDS.items():
        rows = []
        for t in truths:
            framed, (y0, y1, x0, x1) = make(t, rng)
            g = luma(framed)
            r_off = off.colorize(g, details=True)
            r_on = model.colorize(g, details=True)
            plain = model.colorize(luma(t), details=True)
            pic = np.s_[y0:y1, x0:x1]
            gray3 = np.repeat(g[..., None], 3, axis=2)
            rows.append((r_off.image_confidence or 0, r_on.image_confidence or 0, plain.image_confidence or 0,
                         psnr(r_off.rgb, framed), psnr(r_on.rgb, framed),
                         psnr(r_off.rgb[pic], framed[pic]), psnr(r_on.rgb[pic], framed[pic]),
                         psnr(plain.rgb, t), psnr(gray3, framed)))
        m = np.mean(rows, axis=0)
        print(f"{kind:12} {m[0]:8.3f} {m[1]:8.3f} {m[2]:10.3f} {m[3]:8.2f} {m[4]:8.2f} {m[5]:8.2f} {m[6]:8.2f} "
              f"{m[7]:9.2f} {m[8]:6.2f}")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--photos", action="store_true", help="also ../shared/data/photos")
    args = p.parse_args()
    root = os.path.join(os.path.dirname(demo.__file__), "demo_data")
    run("demo data", sorted(glob.glob(os.path.join(root, "train", "*"))), sorted(glob.glob(os.path.join(root, "test", "*"))))
    if args.photos:
        here = os.path.dirname(os.path.abspath(__file__))
        fs = sorted(glob.glob(os.path.join(here, "..", "..", "shared", "data", "photos", "*")))
        run("photos", [f for i, f in enumerate(fs) if i % 4], [f for i, f in enumerate(fs) if i % 4 == 0])


if __name__ == "__main__":
    main()
