"""Reading and writing images: one RGB conversion for every Pillow mode, atomic writes.

Every image that enters gblsr goes through :func:`read_image`, so greyscale, palette, RGBA,
16-bit and EXIF-rotated files all become the same thing: RGB values in [0, 1] plus an optional
alpha plane. Every image gblsr writes goes through :func:`write_image`, which writes a temporary
file beside the target and renames it, so an interrupted run never leaves half a PNG behind.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import ImageError, UserInputError
from ..fileio import atomic_write

__all__ = [
    "ImageData",
    "read_image",
    "read_rgb_uint8",
    "write_image",
    "to_uint8",
    "atomic_write",
    "IMAGE_EXTENSIONS",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


@dataclass
class ImageData:
    """An image as gblsr sees it.

    rgb:   (3, H, W) float32 in [0, 1].
    alpha: (1, H, W) float32 in [0, 1], or None when the file has no transparency.
    bits:  8 or 16, the precision of the source (16-bit PNGs keep their precision).
    """

    rgb: torch.Tensor
    alpha: torch.Tensor | None = None
    bits: int = 8

    @property
    def size(self) -> tuple[int, int]:
        return int(self.rgb.shape[-2]), int(self.rgb.shape[-1])


def _open(path: str | os.PathLike):
    from PIL import Image, ImageOps, UnidentifiedImageError

    p = Path(path)
    if not p.exists():
        raise ImageError(f"image not found: {p}")
    if p.is_dir():
        raise ImageError(f"expected an image file, got a directory: {p}")
    try:
        img = Image.open(p)
        img.load()
    except UnidentifiedImageError:
        raise ImageError(f"not an image Pillow can read: {p}") from None
    except (OSError, SyntaxError, ValueError) as e:  # truncated or corrupt files
        raise ImageError(f"cannot read image {p}: {str(e).splitlines()[0]}") from None
    except Image.DecompressionBombError as e:
        raise ImageError(f"image too large to read safely: {p} ({e})") from None
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # a broken EXIF block should not make a readable image unreadable
        pass
    return img


def _planes(img) -> tuple[np.ndarray, np.ndarray | None, int]:
    """Pillow image -> (H, W, 3) float32 RGB, (H, W) float32 alpha or None, bit depth."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if mode != "I" or arr.max(initial=0) > 255 else 255.0
        grey = np.clip(arr / peak, 0.0, 1.0).astype(np.float32)
        return np.repeat(grey[..., None], 3, axis=2), None, 16 if peak > 255 else 8
    if mode == "F":
        grey = np.clip(np.asarray(img, dtype=np.float32), 0.0, 1.0)
        return np.repeat(grey[..., None], 3, axis=2), None, 16
    has_alpha = mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info)
    if mode == "1":
        img = img.convert("L")
    if has_alpha:
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float32) / 255.0
        return rgba[..., :3], rgba[..., 3], 8
    rgb = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    return rgb, None, 8


def read_image(path: str | os.PathLike) -> ImageData:
    """Read any image Pillow understands as RGB in [0, 1] (+ alpha when present).

    Raises :class:`gblsr.errors.ImageError` with a one-line message for a missing, truncated or
    unreadable file.
    """
    img = _open(path)
    rgb, alpha, bits = _planes(img)
    if rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ImageError(f"image has no pixels: {path}")
    rgb_t = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))
    alpha_t = None if alpha is None else torch.from_numpy(np.ascontiguousarray(alpha))[None]
    return ImageData(rgb=rgb_t, alpha=alpha_t, bits=bits)


def read_rgb_uint8(path: str | os.PathLike) -> torch.Tensor:
    """Read an image as (3, H, W) uint8 RGB, the form MATLAB-style uint8 resizing works on."""
    img = _open(path)
    if img.mode.startswith("I;16") or img.mode in ("I", "F"):
        return to_uint8(read_image(path).rgb)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        arr = np.asarray(img.convert("RGBA"))[..., :3]
    else:
        arr = np.asarray(img.convert("RGB"))
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] float -> uint8 with rounding (not truncation) after clamping."""
    return (x.detach().float().clamp(0, 1) * 255.0).round().to(torch.uint8)


def write_image(
    path: str | os.PathLike,
    rgb: torch.Tensor,
    alpha: torch.Tensor | None = None,
) -> Path:
    """Write (3, H, W) RGB in [0, 1] (clamped, rounded to 8 bits) to ``path`` atomically.

    The format follows the extension. ``alpha`` (1, H, W) is kept for formats that store it
    (PNG, WebP, TIFF) and dropped otherwise.
    """
    from PIL import Image

    target = Path(path)
    fmt = Image.registered_extensions().get(target.suffix.lower())
    if fmt is None:
        raise ImageError(f"unknown image extension {target.suffix!r} for output {target}")
    if rgb.ndim != 3 or rgb.shape[0] != 3:
        raise ValueError(f"write_image expects (3, H, W) RGB, got {tuple(rgb.shape)}")
    arr = to_uint8(rgb).permute(1, 2, 0).cpu().numpy()
    if alpha is not None and fmt in ("PNG", "WEBP", "TIFF"):
        a = to_uint8(alpha).reshape(arr.shape[0], arr.shape[1], 1).cpu().numpy()
        img = Image.fromarray(np.concatenate([arr, a], axis=2), mode="RGBA")
    else:
        img = Image.fromarray(arr, mode="RGB")

    def _save(tmp: str) -> None:
        img.save(tmp, format=fmt)

    try:
        return atomic_write(target, _save)
    except UserInputError:
        raise
    except OSError as e:
        raise ImageError(f"cannot write {target}: {e.strerror or e}") from None
