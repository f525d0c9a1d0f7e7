"""hyperchroma against a paper-style prototype, each in its own process, alternating rounds.

Run: python benchmarks/bench_prototype.py [--rounds 8] [--frames 6]

The prototype is what the paper describes, written the straightforward way: the shipped classifier's conv
layers in PyTorch on one thread (its weights read from ``classifier.onnx``), every tap resized to the model
size by OpenCV bilinear resize one channel at a time, quantized with the fitted model's thresholds
(``np.searchsorted`` per channel), the levels of each pixel as a ``bytes`` key of a Python ``dict`` (mean ab per
key, built from the same keyframes), misses by binary search (``np.searchsorted``) in the list of stored keys sorted by
the model's projection and the 64 nearest projections scanned (numpy distances), a 3x3 median filter
(``cv2.medianBlur``), ab resized to the frame and joined with its L (``cv2.cvtColor`` Lab -> RGB). Decoding is
excluded from both sides. Protocol: :func:`protocols.film_720` (720x528 frames, one keyframe: ~40% of keys miss).

hyperchroma runs ``model.colorize`` with every default on, in the parent process, which never imports torch;
the prototype runs in a spawned child. Each round times ``--frames`` frames on one side, then the other.
"""

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))


class Prototype:
    """The paper's pipeline, straightforwardly (runs in the child process)."""

    def __init__(self, onnx_path, thresholds, weights, train, size=224, max_scan=64, max_distance=5.0):
        import numpy as np
        import onnx
        import torch
        from onnx import numpy_helper

        torch.set_num_threads(1)
        m = onnx.load(onnx_path)
        self.w = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in m.graph.initializer}
        meta = {p.key: p.value for p in m.metadata_props}
        import json

        norm = json.loads(meta["hyperchroma.input"])
        self.mean, self.std = float(norm["mean"][0]), float(norm["std"][0])
        self.size, self.max_scan, self.max_distance = size, max_scan, max_distance
        self.thresholds = np.asarray(thresholds, np.float32)
        self.proj_w = np.asarray(weights, np.float64) / np.linalg.norm(weights)
        sums = {}
        for img in train:
            levels, shape = self._levels(self._gray_small(self._luma(img)))
            _, ab = self._lab(img, shape)
            for k, c in zip(map(bytes, levels), ab.reshape(-1, 2)):
                s = sums.get(k)
                if s is None:
                    sums[k] = [c[0], c[1], 1]
                else:
                    s[0] += c[0]
                    s[1] += c[1]
                    s[2] += 1
        self.table = {k: (s[0] / s[2], s[1] / s[2]) for k, s in sums.items()}
        keys = list(self.table)
        lv = np.frombuffer(b"".join(keys), np.uint8).reshape(len(keys), -1).astype(np.int32)
        proj = lv @ self.proj_w
        order = np.argsort(proj, kind="stable")
        self.sorted_proj = proj[order]
        self.sorted_levels = lv[order].astype(np.int16)
        self.sorted_ab = np.array([self.table[keys[i]] for i in order], np.float32)

    @staticmethod
    def _luma(img):
        import numpy as np

        if img.ndim == 2:
            return img
        r, g, b = (img[..., i].astype(np.uint32) for i in range(3))
        return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).astype(np.uint8)

    def _shape(self, H, W):
        s = self.size / max(H, W)
        return max(8, round(H * s)), max(8, round(W * s))

    def _gray_small(self, gray):
        import cv2
        import numpy as np

        h, w = self._shape(*gray.shape)
        return cv2.resize(gray.astype(np.float32) / 255, (w, h), interpolation=cv2.INTER_LINEAR)

    def _lab(self, img, shape):
        import cv2
        import numpy as np

        lab = cv2.cvtColor(img.astype(np.float32) / 255, cv2.COLOR_RGB2Lab)
        small = cv2.resize(lab, (shape[1], shape[0]), interpolation=cv2.INTER_AREA)
        return lab[..., 0], small[..., 1:]

    def _levels(self, g):
        import cv2
        import numpy as np
        import torch
        import torch.nn.functional as F

        h, w = g.shape
        w_ = self.w
        with torch.no_grad():
            x = (torch.from_numpy(g)[None, None] - self.mean) / self.std
            c1 = torch.relu(F.conv2d(x, w_["conv1.weight"], w_["conv1.bias"]))
            c2 = F.conv2d(c1, w_["conv2.weight"], w_["conv2.bias"], padding=1)
            p = F.max_pool2d(c2, 2)
            c3 = F.conv2d(p, w_["conv3.weight"], w_["conv3.bias"], padding=2)
            c4 = F.conv2d(c3, w_["conv4.weight"], w_["conv4.bias"], padding=2)
            p = F.max_pool2d(c4, 2)
            c5 = F.conv2d(p, w_["conv5.weight"], w_["conv5.bias"], padding=3)
            c6 = F.conv2d(c5, w_["conv6.weight"], w_["conv6.bias"], padding=7)
        channels = []
        for t in (c1, c2, c3, c4, c5, c6):  # the hypercolumn: every channel resized to the model size
            for c in t[0].numpy():
                channels.append(c if c.shape == (h, w) else cv2.resize(c, (w, h), interpolation=cv2.INTER_LINEAR))
        hyper = np.stack(channels, -1).reshape(h * w, -1)
        levels = np.empty(hyper.shape, np.uint8)
        for c in range(hyper.shape[1]):
            levels[:, c] = np.searchsorted(self.thresholds[c], hyper[:, c], side="right")
        return levels, (h, w)

    def _nearest(self, lv):
        """ab of the nearest stored keys of the missing levels (m, C): binary search of each projection in the
        sorted list, then the ``max_scan`` entries around it (numpy distances, in chunks)."""
        import numpy as np

        q = lv.astype(np.int16)
        pos = np.searchsorted(self.sorted_proj, q @ self.proj_w)
        n = len(self.sorted_proj)
        lo = np.clip(pos - self.max_scan // 2, 0, max(0, n - self.max_scan))
        out = np.zeros((len(q), 2), np.float32)
        window = np.arange(min(self.max_scan, n))
        for s in range(0, len(q), 1024):
            idx = lo[s:s + 1024, None] + window
            d = ((self.sorted_levels[idx] - q[s:s + 1024, None, :]) ** 2).sum(-1)
            j = d.argmin(1)
            best = idx[np.arange(len(idx)), j]
            ok = np.sqrt(d[np.arange(len(idx)), j]) <= self.max_distance
            out[s:s + 1024][ok] = self.sorted_ab[best[ok]]
        return out

    def colorize(self, gray):
        import cv2
        import numpy as np

        levels, (h, w) = self._levels(self._gray_small(gray))
        table = self.table
        found = [table.get(k) for k in map(bytes, levels)]
        miss = [i for i, c in enumerate(found) if c is None]
        ab = np.array([c if c is not None else (0.0, 0.0) for c in found], np.float32)
        if miss:
            ab[miss] = self._nearest(levels[miss])
        ab = cv2.medianBlur(ab.reshape(h, w, 2), 3)
        H, W = gray.shape
        ab = cv2.resize(ab, (W, H), interpolation=cv2.INTER_LINEAR)
        L = gray.astype(np.float32) * np.float32(100 / 255)  # the paper overlays the input's luminance
        lab = np.dstack([L, ab])
        return (np.clip(cv2.cvtColor(lab, cv2.COLOR_Lab2RGB), 0, 1) * 255 + 0.5).astype(np.uint8)


def child(conn, onnx_path, thresholds, weights, train, frames):
    proto = Prototype(onnx_path, thresholds, weights, train)
    for g in frames[:2]:
        proto.colorize(g)  # warm up
    conn.send("ready")
    while True:
        n = conn.recv()
        if n is None:
            return
        times = []
        for i in range(n):
            t = time.perf_counter()
            proto.colorize(frames[i % len(frames)])
            times.append(time.perf_counter() - t)
        conn.send(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--frames", type=int, default=6, help="frames per round and side")
    args = ap.parse_args()
    import hyperchroma as hc
    from hyperchroma import core
    from protocols import film_720

    train, test = film_720(1)
    model = hc.fit(train)
    frames = test[: args.frames]
    onnx_path = os.path.join(os.path.dirname(hc.__file__), "models", "classifier.onnx")
    ctx = mp.get_context("spawn")
    parent, conn = ctx.Pipe()
    p = ctx.Process(target=child, args=(conn, onnx_path, model.thresholds, model.weights, train, frames))
    p.start()
    assert parent.recv() == "ready"
    for g in frames[:3]:
        model.colorize(g)
    ours, theirs = [], []
    for _ in range(args.rounds):
        parent.send(args.frames)
        theirs += parent.recv()
        for i in range(args.frames):
            core.clear_lookup_memo()  # each frame as an unrelated image, as the prototype has no memo (not timed)
            t = time.perf_counter()
            model.colorize(frames[i % len(frames)])
            ours.append(time.perf_counter() - t)
    parent.send(None)
    p.join()
    a, b = statistics.median(theirs) * 1e3, statistics.median(ours) * 1e3
    print(f"{model}; {os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f}; "
          f"{args.rounds} alternating rounds of {args.frames} 720x528 frames per side")
    print("| what | median ms a frame |\n|---|---|")
    print(f"| paper-style prototype (PyTorch 1 thread, cv2, dict, sorted list), own process | {a:.1f} |")
    print(f"| hyperchroma `colorize`, defaults, {model.threads} threads | {b:.1f} |")
    print(f"| ratio | {a / b:.1f}x |")


if __name__ == "__main__":
    main()
