"""Training data: images and their labels (class folders, or the images' own colors as ab bins).

Images are read with :func:`hyperchroma.images.load_image` and listed with
:func:`hyperchroma.images.image_paths`, like everywhere else; the net's input lightness is computed the way
inference computes it (the classifier's gray input at the training size, from the full-resolution
lightness).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .. import core
from .._fs import PathLike
from ..images import ImageError, ImageLike, image_paths, load_image, model_gray, resize_rgb


class AbBins:
    """A uniform grid of Lab ab bins of side ``step``; the classes are the bins kept (seen in training)."""

    LIMIT = 110.0

    def __init__(self, step: float = 20.0, centers: np.ndarray | None = None):
        if step <= 0:
            raise ValueError(f"ab step must be positive, got {step}")
        self.step = float(step)
        self.n = int(math.ceil(2 * self.LIMIT / self.step))
        self.centers = np.zeros((0, 2), np.float32) if centers is None else np.asarray(centers, np.float32)
        self._lut = np.zeros(0, np.int64)
        if centers is not None:
            self._build_lut()

    def grid_index(self, ab: np.ndarray) -> np.ndarray:
        q = np.clip(((ab + self.LIMIT) / self.step).astype(np.int64), 0, self.n - 1)
        return q[..., 0] * self.n + q[..., 1]

    def fit(self, abs_: Iterable[np.ndarray]) -> "AbBins":
        seen = np.zeros(self.n * self.n, bool)
        for ab in abs_:
            seen[np.unique(self.grid_index(ab))] = True
        idx = np.flatnonzero(seen)
        qa, qb = idx // self.n, idx % self.n
        self.centers = np.stack([(qa + 0.5) * self.step - self.LIMIT, (qb + 0.5) * self.step - self.LIMIT], 1)
        self.centers = self.centers.astype(np.float32)
        self._build_lut()
        return self

    def _build_lut(self) -> None:
        """Grid cell -> class: the kept bin itself, else the nearest kept bin center."""
        g = np.arange(self.n * self.n)
        cells = np.stack([(g // self.n + 0.5) * self.step - self.LIMIT, (g % self.n + 0.5) * self.step - self.LIMIT], 1)
        d = ((cells[:, None, :] - self.centers[None, :, :]) ** 2).sum(-1)
        self._lut = d.argmin(1)

    def classes(self, ab: np.ndarray) -> np.ndarray:
        return self._lut[self.grid_index(ab)]

    def dominant(self, ab: np.ndarray, min_chroma: float = 10.0, min_share: float = 0.05) -> int:
        """The image's dominant color class: the most frequent bin among its chromatic pixels (chroma >
        ``min_chroma``), or the bin of ab = (0, 0) when fewer than ``min_share`` of the pixels are chromatic."""
        flat = ab.reshape(-1, 2)
        chroma = np.hypot(flat[:, 0], flat[:, 1])
        chromatic = flat[chroma > min_chroma]
        if len(chromatic) < min_share * len(flat):
            return int(self.classes(np.zeros((1, 2), np.float32))[0])
        return int(np.bincount(self.classes(chromatic), minlength=len(self.centers)).argmax())



def skimage_photos() -> list[tuple[str, np.ndarray]]:
    """scikit-image's bundled color photos (no download): ``[(name, uint8 (H,W,3))]``. Needs scikit-image."""
    try:
        from skimage import data as skdata
    except ImportError:
        raise ImportError("the scikit-image photos need scikit-image: pip install scikit-image") from None
    out = []
    for name in ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry",
                 "retina", "stereo_motorcycle"):
        try:
            img = getattr(skdata, name)()
        except Exception:  # noqa: BLE001 - some scikit-image versions need a download for some images
            continue
        img = img[0] if isinstance(img, tuple) else img
        if img.ndim == 3 and img.shape[2] >= 3:
            out.append((f"skimage:{name}", np.ascontiguousarray(img[..., :3])))
    return out



@dataclasses.dataclass
class Sample:
    name: str
    lab: np.ndarray  # (H, W, 3) float32, short side = the crop source size
    label: int = -1  # image class (folder or dominant color)



def folder_samples(roots: Sequence[PathLike]) -> tuple[list[tuple[Path, str]], list[str]]:
    pairs: list[tuple[Path, str]] = []
    for root in roots:
        r = Path(root)
        if not r.is_dir():
            raise ValueError(f"{r}: folder labels need a directory with one subdirectory per class")
        subdirs = sorted(d for d in r.iterdir() if d.is_dir())
        if not subdirs:
            raise ValueError(f"{r}: no class subdirectories (folder labels: ROOT/CLASS/image.jpg)")
        for d in subdirs:
            try:
                pairs += [(f, d.name) for f in image_paths([d])]
            except ImageError:  # an empty class folder
                continue
    classes = sorted({c for _, c in pairs})
    if len(classes) < 2:
        raise ValueError(f"folder labels need at least 2 classes with images, found {classes}")
    return pairs, classes



def list_images(inputs: Iterable[PathLike]) -> list[Path]:
    """Files given, and the image files found recursively in the folders given (as ``fit`` finds them)."""
    return image_paths(inputs)


def training_lab(image: ImageLike, short: int) -> np.ndarray:
    """Lab (H', W', 3) float32 of an image scaled to short side ``short``: L is the lightness of the
    classifier's gray input at that size, made as inference makes it (full-resolution lightness, gray, then
    resized, rounded to 8 bits like a gray image); ab is the resized color image's."""
    img = load_image(image)
    h, w = img.shape[:2]
    s = short / min(h, w)
    shape = (max(short, round(h * s)), max(short, round(w * s)))
    gray = model_gray(img, shape)
    L = core.gray_to_lightness(np.clip(np.rint(gray * 255), 0, 255).astype(np.uint8))
    if img.ndim == 2:
        ab = np.zeros(shape + (2,), np.float32)
    else:
        ab = core.rgb_to_lab(resize_rgb(img, shape))[1]
    return np.concatenate([L[..., None], ab], axis=2)
