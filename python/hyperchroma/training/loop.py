"""The training loop: the paper's stopping rules, test accuracy, export; and the randomly initialized net.

Training stops when any of the paper's three conditions holds: the epoch's training loss reached
``target_loss``, it stopped decreasing for ``patience`` epochs, or ``epochs`` epochs ran.
"""

from __future__ import annotations

import dataclasses
import math
import os
import random
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .._fs import PathLike
from .data import AbBins, ImageLike, Sample, folder_samples, list_images, training_lab
from .export import export_onnx
from .net import build_net
from .spec import DEFAULT_SPEC, parse_spec, total_stride


@dataclasses.dataclass
class TrainResult:
    """What :func:`train_classifier` did: its stop reason, history and final test accuracy."""

    path: Path | None
    model_bytes: bytes
    labels: str
    classes: list[Any]
    epochs_run: int
    stop_reason: str
    history: list[dict[str, float]]
    train_images: int
    test_images: int
    test_right: int
    test_wrong: int
    majority_baseline: float  # share of test images in the most common training class
    pixel_accuracy: float | None  # "pixel" labels: share of test pixels whose ab bin is predicted right
    pixel_baseline: float | None  # the same for always predicting the most common training bin
    seconds: float
    provenance: dict[str, Any]

    @property
    def test_accuracy(self) -> float:
        return self.test_right / self.test_images if self.test_images else float("nan")

    def summary(self) -> str:
        lines = [f"stopped after {self.epochs_run} epochs: {self.stop_reason}"]
        if self.test_images:
            t = self.test_images
            lines.append(f"test images: {self.test_right}/{t} classified right ({100 * self.test_right / t:.1f}%), "
                         f"{self.test_wrong}/{t} wrong ({100 * self.test_wrong / t:.1f}%); "
                         f"majority-class baseline {100 * self.majority_baseline:.1f}%")
        else:
            lines.append("no test images: no test accuracy")
        if self.pixel_accuracy is not None:
            lines.append(f"test pixels: {100 * self.pixel_accuracy:.1f}% in the right ab bin "
                         f"(most-common-bin baseline {100 * (self.pixel_baseline or 0):.1f}%)")
        return "\n".join(lines)



def train_classifier(
    images: Sequence[ImageLike] | PathLike,
    output: PathLike | None = None,
    *,
    labels: str = "pixel",
    test_images: Sequence[ImageLike] | PathLike | None = None,
    test_every: int = 0,
    test_fraction: float = 0.0,
    spec: str = DEFAULT_SPEC,
    size: int = 224,
    epochs: int = 30,
    batch_size: int = 8,
    lr: float = 2e-3,
    target_loss: float = 0.0,
    patience: int = 5,
    min_delta: float = 1e-3,
    ab_step: float = 20.0,
    rebalance: float = 0.5,
    seed: int = 0,
    threads: int | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    provenance: dict[str, Any] | None = None,
) -> TrainResult:
    """Train a formula-(1) CNN and export it to ONNX (see the module docstring).

    Args:
        images: training images (paths, directories, uint8 arrays, PIL images); for ``labels="folder"`` one or
            more root directories with a subdirectory per class.
        output: where to write the ONNX model (atomically); ``None`` to only return its bytes.
        labels: ``"folder"``, ``"dominant"`` (each image's dominant ab bin) or ``"pixel"`` (each pixel's ab bin).
        test_images: held-out images (same kinds as ``images``); else ``test_every``: every n-th training file,
            sorted by name (index % n == 0), is held out; else ``test_fraction`` of them at random (seeded).
        spec, size: the net and the square training crop size (the paper: 224).
        epochs, target_loss, patience, min_delta: the stopping rules (any one stops training): ``epochs`` epochs
            ran; the epoch's mean training loss fell to ``target_loss``; it did not improve by ``min_delta`` for
            ``patience`` epochs (0 disables).
        ab_step, rebalance: color labels: ab bin side, and how far pixel classes are reweighted toward uniform
            (Zhang et al. 2016's lambda; 0 = plain cross-entropy).
        threads: torch CPU threads (default: torch's; this sets torch's global thread count).
        progress: show a progress bar per epoch (on stderr).
        log: where the summary lines go (default: print to stderr when ``progress``).
    """
    import torch
    from torch.nn import functional as F

    t_start = time.perf_counter()
    if labels not in ("folder", "dominant", "pixel"):
        raise ValueError(f"labels: expected 'folder', 'dominant' or 'pixel', got {labels!r}")
    for name, v, lo in (("size", size, 1), ("epochs", epochs, 0), ("batch_size", batch_size, 1)):
        if not isinstance(v, int) or v < lo:
            raise ValueError(f"{name}: expected an int >= {lo}, got {v!r}")
    if not isinstance(test_every, int) or test_every < 0 or test_every == 1:
        raise ValueError(f"test_every: expected 0 (off) or an int >= 2, got {test_every!r}")
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction: expected 0 <= f < 1, got {test_fraction}")
    layers = parse_spec(spec)
    if size < total_stride(layers):
        raise ValueError(f"size {size} is smaller than the net's total stride {total_stride(layers)}")
    say = log if log is not None else ((lambda s: print(s, file=sys.stderr)) if progress else (lambda s: None))
    if threads:
        torch.set_num_threads(int(threads))
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    random.seed(seed)

    # ---- gather (name, image, class name) for train and test
    def expand(items: Any) -> list[Any]:
        if isinstance(items, (str, os.PathLike)):
            items = [items]
        out: list[Any] = []
        for it in items:
            if isinstance(it, (str, os.PathLike)):
                out += list_images([it])
            else:
                out.append(it)
        return out

    train_pairs: list[tuple[Any, Any]]
    test_pairs: list[tuple[Any, Any]]
    class_names: list[Any]
    if labels == "folder":
        roots: list[Any] = [images] if isinstance(images, (str, os.PathLike)) else list(images)
        train_pairs, class_names = folder_samples(roots)
        if test_images is not None:
            troots: list[Any] = [test_images] if isinstance(test_images, (str, os.PathLike)) else list(test_images)
            test_pairs, tclasses = folder_samples(troots)
            unknown = set(tclasses) - set(class_names)
            if unknown:
                raise ValueError(f"test classes not in training: {sorted(unknown)}")
        else:
            test_pairs = []
    else:
        train_pairs = [(it, None) for it in expand(images)]
        test_pairs = [(it, None) for it in expand(test_images)] if test_images is not None else []
        class_names = []
    if test_images is None and (test_every or test_fraction):
        if test_every:  # files only (in-memory images always train), sorted by name
            files = [i for i, (it, _) in enumerate(train_pairs) if isinstance(it, (str, os.PathLike))]
            order = sorted(files, key=lambda i: (Path(train_pairs[i][0]).name, str(train_pairs[i][0])))
            held = {order[k] for k in range(len(order)) if k % test_every == 0}
        else:
            held = set(rng.permutation(len(train_pairs))[: int(round(test_fraction * len(train_pairs)))].tolist())
        test_pairs = [p for i, p in enumerate(train_pairs) if i in held]
        train_pairs = [p for i, p in enumerate(train_pairs) if i not in held]
    if not train_pairs:
        raise ValueError("no training images")

    crop_src = int(round(size * 256 / 224))

    def load(pairs: list[tuple[Any, Any]], short: int) -> list[Sample]:
        out = []
        for i, (it, cls) in enumerate(pairs):
            name = it if isinstance(it, str) else (str(it) if isinstance(it, os.PathLike) else f"image[{i}]")
            out.append(Sample(str(name), training_lab(it, short), class_names.index(cls) if cls is not None else -1))
        return out

    say(f"loading {len(train_pairs)} training and {len(test_pairs)} test images")
    train = load(train_pairs, crop_src)
    test = load(test_pairs, size)

    # ---- normalization and color classes
    ls = np.concatenate([s.lab[..., 0].ravel() / 100.0 for s in train])
    mean, std = float(ls.mean()), float(max(ls.std(), 1e-3))
    bins: AbBins | None = None
    pixel_weights = None
    if labels != "folder":
        bins = AbBins(ab_step).fit(s.lab[..., 1:] for s in train)
        for s in train + test:
            s.label = bins.dominant(s.lab[..., 1:])
        class_names = [[round(float(a), 2), round(float(b), 2)] for a, b in bins.centers]
        counts = np.zeros(len(bins.centers))
        for s in train:
            counts += np.bincount(bins.classes(s.lab[..., 1:]).ravel(), minlength=len(counts))
        prior = counts / counts.sum()
        w = 1.0 / ((1 - rebalance) * prior + rebalance / len(prior))
        w /= (prior * w).sum()
        pixel_weights = torch.tensor(w, dtype=torch.float32)
        pixel_prior = prior
    n_classes = max(len(class_names), 2)
    counts_img = np.bincount([s.label for s in train], minlength=n_classes)
    say(f"{len(train)} training images, {len(test)} test images, {n_classes} classes ({labels} labels)")

    net = build_net(spec, n_classes, size=size, pixel_head=labels == "pixel")
    net.detach_head = labels == "pixel"
    opt = torch.optim.Adam(net.parameters(), lr=lr)

    def batch_tensors(samples: list[Sample], train_mode: bool) -> tuple[Any, Any, Any]:
        xs, ys, ps = [], [], []
        for s in samples:
            h, w = s.lab.shape[:2]
            if train_mode:
                y0, x0 = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
            else:
                y0, x0 = (h - size) // 2, (w - size) // 2
            crop = s.lab[y0:y0 + size, x0:x0 + size]
            if train_mode and rng.random() < 0.5:
                crop = crop[:, ::-1]
            xs.append((crop[..., 0] / 100.0 - mean) / std)
            ys.append(s.label)
            if labels == "pixel":
                ps.append(bins.classes(crop[..., 1:]))  # type: ignore[union-attr]
        x = torch.from_numpy(np.stack(xs)[:, None].astype(np.float32))
        y = torch.tensor(ys, dtype=torch.long)
        p = torch.from_numpy(np.stack(ps)) if ps else None
        return x, y, p

    def loss_of(out: Any, y: Any, p: Any) -> Any:
        logits, taps, pixel = out
        if labels == "pixel":
            return F.cross_entropy(pixel, p, weight=pixel_weights)
        return F.cross_entropy(logits, y)

    from tqdm import tqdm

    history: list[dict[str, float]] = []
    best, since_best = math.inf, 0
    stop_reason = f"maximum of {epochs} epochs reached"
    epoch = 0
    for epoch in range(1, epochs + 1):
        net.train()
        perm = rng.permutation(len(train))
        steps = [perm[i:i + batch_size] for i in range(0, len(perm), batch_size)]
        total, right, seen = 0.0, 0, 0
        bar = tqdm(steps, desc=f"epoch {epoch}/{epochs}", unit="batch", disable=not progress, leave=True,
                   file=sys.stderr, dynamic_ncols=True)
        for idx in bar:
            x, y, p = batch_tensors([train[i] for i in idx], True)
            out = net(x)
            loss = loss_of(out, y, p)
            opt.zero_grad(set_to_none=True)
            if labels == "pixel":  # the FC head learns the dominant color on the detached conv features
                (loss + F.cross_entropy(out[0], y)).backward()
            else:
                loss.backward()
            opt.step()
            total += loss.item() * len(idx)
            seen += len(idx)
            if labels == "pixel":
                right_px = (out[2].argmax(1) == p).float().mean().item()
                right += right_px * len(idx)
            else:
                right += int((out[0].argmax(1) == y).sum())
            bar.set_postfix(loss=f"{total / seen:.4f}", acc=f"{right / seen:.3f}")
        bar.close()
        ep_loss = total / seen
        history.append({"epoch": epoch, "loss": ep_loss, "train_accuracy": right / seen})
        if ep_loss <= target_loss:
            stop_reason = f"training loss {ep_loss:.4f} reached the target {target_loss}"
            break
        if ep_loss < best - min_delta:
            best, since_best = ep_loss, 0
        else:
            since_best += 1
            if patience and since_best >= patience:
                stop_reason = f"training loss stopped decreasing ({patience} epochs without a {min_delta} gain)"
                break
    epochs_run = epoch if epochs else 0
    if not epochs:
        stop_reason = "no training (0 epochs)"

    # ---- test
    net.eval()
    t_right = 0
    px_right = px_total = px_base = 0
    majority = int(np.argmax(counts_img))
    with torch.no_grad():
        for s in test:
            x, y, p = batch_tensors([s], False)
            logits, taps, pixel = net(x)
            t_right += int(logits.argmax(1).item() == s.label)
            if labels == "pixel":
                px_right += int((pixel.argmax(1) == p).sum())
                px_total += p.numel()
                px_base += int((p == int(np.argmax(pixel_prior))).sum())
    majority_share = (sum(s.label == majority for s in test) / len(test)) if test else float("nan")

    prov = {
        "tool": "hyperchroma.train", "spec": net.spec, "labels": labels, "seed": seed, "size": size,
        "epochs_run": epochs_run, "stop_reason": stop_reason, "train_images": len(train), "test_images": len(test),
        "test_accuracy": round(t_right / len(test), 4) if test else None,
        "pixel_accuracy": round(px_right / px_total, 4) if px_total else None,
        "final_train_loss": round(history[-1]["loss"], 5) if history else None,
        "torch": torch.__version__,
    }
    prov.update(provenance or {})
    data = export_onnx(net, output, mean=mean, std=std, classes=class_names or list(range(n_classes)),
                       labels=labels, provenance=prov)
    result = TrainResult(
        path=Path(output) if output is not None else None, model_bytes=data, labels=labels,
        classes=list(class_names), epochs_run=epochs_run, stop_reason=stop_reason, history=history,
        train_images=len(train), test_images=len(test), test_right=t_right, test_wrong=len(test) - t_right,
        majority_baseline=majority_share, pixel_accuracy=(px_right / px_total) if px_total else None,
        pixel_baseline=(px_base / px_total) if px_total else None, seconds=time.perf_counter() - t_start,
        provenance=prov,
    )
    say(result.summary())
    return result


def random_classifier(
    output: PathLike | None = None,
    *,
    spec: str = DEFAULT_SPEC,
    classes: int = 10,
    size: int = 224,
    seed: int = 0,
    mean: float = 0.5,
    std: float = 0.25,
    provenance: dict[str, Any] | None = None,
) -> bytes:
    """Export the randomly initialized net of ``spec`` (PyTorch's default init under ``torch.manual_seed(seed)``)
    with the input normalization ``(L/100 - mean) / std``; return the ONNX bytes (and write ``output``)."""
    import torch

    torch.manual_seed(seed)
    net = build_net(spec, classes, size=size)
    prov = {"tool": "hyperchroma.train", "spec": net.spec, "init": "random", "seed": seed, "torch": torch.__version__}
    prov.update(provenance or {})
    return export_onnx(net, output, mean=mean, std=std, classes=list(range(classes)), labels="none", provenance=prov)

