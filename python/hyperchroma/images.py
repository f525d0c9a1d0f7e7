"""Image input: paths, PIL images or uint8 arrays -> uint8 (H,W) gray or (H,W,3) RGB, the way Pillow users expect.

EXIF orientation is applied; palette, RGBA/LA (alpha dropped), CMYK, YCbCr and 16-bit images are converted.
Every failure is an :class:`ImageError` (a ``ValueError``) with one line saying which input and why.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from . import core

ImageLike = Union[str, os.PathLike, Image.Image, np.ndarray]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm", ".pnm")


class ImageError(ValueError):
    """An input image that cannot be used (missing, unreadable, corrupt, wrong type or shape)."""


def _describe(image: object) -> str:
    if isinstance(image, (str, os.PathLike)):
        return f"'{os.fspath(image)}'"
    return type(image).__name__


def _from_pil(img: Image.Image) -> np.ndarray:
    img = ImageOps.exif_transpose(img) or img
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img, dtype=np.float64)
        scale = 257.0 if mode.startswith("I;16") or arr.max(initial=0) > 255 else 1.0
        return np.clip(np.rint(arr / scale), 0, 255).astype(np.uint8)
    if mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        scale = 255.0 if arr.max(initial=0) <= 1.0 else 1.0
        return np.clip(np.rint(arr * scale), 0, 255).astype(np.uint8)
    if mode in ("1", "L", "LA", "La"):
        return np.asarray(img.convert("L"), dtype=np.uint8)
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def load_image(image: ImageLike) -> np.ndarray:
    """Return a C-contiguous uint8 array: (H,W) for gray inputs, (H,W,3) RGB for color ones."""
    if isinstance(image, (str, os.PathLike)):
        path = os.fspath(image)
        if not os.path.exists(path):
            raise ImageError(f"cannot read image '{path}': no such file")
        if os.path.isdir(path):
            raise ImageError(f"cannot read image '{path}': it is a directory")
        try:
            with Image.open(path) as img:
                img.load()
                arr = _from_pil(img)
        except (UnidentifiedImageError, Image.DecompressionBombError) as e:
            raise ImageError(f"cannot read image '{path}': {e}") from None
        except OSError as e:
            if e.errno is None:  # Pillow's own errors ("image file is truncated") carry no errno
                raise ImageError(f"cannot read image '{path}': corrupt or truncated file ({e})") from None
            # the system refused (permission denied, an I/O error, ...): say so, it is not the file's fault
            raise ImageError(f"cannot read image '{path}': {(e.strerror or str(e)).lower()}") from None
        except (SyntaxError, ValueError) as e:  # truncated or corrupt data
            raise ImageError(f"cannot read image '{path}': corrupt or truncated file ({e})") from None
    elif isinstance(image, Image.Image):
        try:
            arr = _from_pil(image)
        except (OSError, ValueError) as e:
            raise ImageError(f"cannot use PIL image: {e}") from None
    elif isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise TypeError(
                f"image arrays must be uint8, got {image.dtype} (scale to 0..255 and use .astype(np.uint8))"
            )
        arr = image
        if arr.ndim == 3 and arr.shape[2] == 1:
            arr = arr[:, :, 0]
        elif arr.ndim == 3 and arr.shape[2] == 4:
            arr = arr[:, :, :3]
        if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3)):
            raise ImageError(f"expected an image array of shape (H,W), (H,W,1), (H,W,3) or (H,W,4), got {image.shape}")
    else:
        raise TypeError(f"expected an image path, PIL image or uint8 numpy array, got {type(image).__name__}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageError(f"image {_describe(image)} is empty ({arr.shape[1]}x{arr.shape[0]})")
    return np.ascontiguousarray(arr)


#: A pixel whose RGB channels spread over more than this many levels is colored (a gray image saved as RGB,
#: JPEG's chroma noise included, stays within a few); an image is in color when COLOR_SHARE of its pixels are.
COLOR_LEVELS = 14
COLOR_SHARE = 0.02


def image_in_color(img: np.ndarray) -> bool:
    """Whether a loaded image (:func:`load_image`) carries color: RGB, with at least :data:`COLOR_SHARE` of its
    pixels (one in 16 looked at: every fourth of every fourth row) spreading over more than
    :data:`COLOR_LEVELS` levels across their channels. A gray image, or gray content stored as RGB, is not."""
    if img.ndim != 3:
        return False
    step = 4 if img.shape[0] * img.shape[1] >= 4096 else 1
    s = img[::step, ::step]
    spread = s.max(axis=2).astype(np.int16) - s.min(axis=2)
    return bool(spread.size) and float((spread > COLOR_LEVELS).mean()) >= COLOR_SHARE


def luma(img: np.ndarray) -> np.ndarray:
    """The gray version of an image as users make it: uint8 (H, W) ITU-R 601 luma of the sRGB values, exactly
    Pillow's ``convert("L")`` (integer weights 19595, 38470, 7471 over 2^16, rounded); a gray image itself."""
    if img.ndim == 2:
        return img
    r, g, b = (img[..., i].astype(np.uint32) for i in range(3))
    return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).astype(np.uint8)


def lightness(img: np.ndarray, threads: int = 1) -> np.ndarray:
    """CIE L (H,W) float32 of a gray or RGB uint8 image."""
    if img.ndim == 2:
        return core.gray_to_lightness(img)
    return core.rgb_to_lab(img, threads=threads)[0]


def model_shape(height: int, width: int, size: int) -> tuple:
    """(h, w) the classifier works at: the long side scaled to `size`, aspect kept, short side >= 16."""
    scale = size / max(height, width)
    return max(16, round(height * scale)), max(16, round(width * scale))


def resize_float(plane: np.ndarray, shape: tuple) -> np.ndarray:
    """Antialiased bilinear resize of a float32 (H,W) plane to (h,w) with Pillow."""
    h, w = shape
    if plane.shape == (h, w):
        return np.ascontiguousarray(plane, dtype=np.float32)
    out = Image.fromarray(np.asarray(plane, dtype=np.float32), mode="F").resize((w, h), Image.Resampling.BILINEAR)
    return np.asarray(out, dtype=np.float32)


def resize_rgb(rgb: np.ndarray, shape: tuple) -> np.ndarray:
    h, w = shape
    if rgb.shape[:2] == (h, w):
        return rgb
    return np.asarray(Image.fromarray(rgb).resize((w, h), Image.Resampling.BILINEAR), dtype=np.uint8)


def model_gray(img: np.ndarray, shape: tuple, gray: Optional[np.ndarray] = None,
               out: Optional[np.ndarray] = None) -> np.ndarray:
    """The classifier's input: gray intensity in [0,1] at model size, from the image's :func:`luma`.

    A color image and its gray version (``convert("L")``, what a black-and-white film or scan is) give the
    same input, so a table fit on color frames serves their black-and-white versions exactly. Pass the
    image's luma ``gray`` if it is at hand. The resize is :func:`hyperchroma.core.resize_gray`: Pillow's
    antialiased BILINEAR filter of the float plane restated in C++ (its sums in Pillow's order before version 13,
    so independent of the Pillow installed), about 3x faster. ``out``: an (h, w) float32 array to write the
    input of a uint8 image into (a reused buffer) instead of allocating.
    """
    g = luma(img) if gray is None else gray
    h, w = shape
    if g.dtype == np.uint8:
        return core.resize_gray(g, h, w, out=out)
    plane = np.asarray(g, dtype=np.float32) * np.float32(1 / 255)
    return plane if plane.shape == (h, w) else resize_float(plane, shape)


def image_paths(inputs: Iterable[Union[str, os.PathLike]]) -> List[Path]:
    """Expand files and folders into a list of paths: a file as given; a folder's image files (by suffix),
    searched recursively and sorted by path. The one listing every command and the training tool use."""
    out: List[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise ImageError(f"directory '{p}' holds no images ({', '.join(IMAGE_SUFFIXES)})")
            out.extend(found)
        elif p.exists():
            out.append(p)
        else:
            raise ImageError(f"cannot read image '{p}': no such file or directory")
    return out


def expand_inputs(images: Union[ImageLike, Sequence[ImageLike]]) -> list:
    """Accept one image or a sequence of them; directories among paths expand to their images."""
    if isinstance(images, (str, os.PathLike, Image.Image, np.ndarray)):
        images = [images]
    out: list = []
    for im in images:
        if isinstance(im, (str, os.PathLike)) and os.path.isdir(im):
            out.extend(image_paths([im]))
        else:
            out.append(im)
    return out
