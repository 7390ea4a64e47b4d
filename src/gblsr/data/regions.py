"""Region labels for per-region metrics: every P x P patch is smooth, edge, texture or mixed.

Two per-patch statistics decide the label (as in the GB-LSR reference):

* high-frequency fraction (HF): the share of a patch's Fourier power (``fft2(norm="ortho")`` of the
  grey patch, grey = channel mean) at radial frequency above ``cutoff`` = 0.25 cycles/pixel;
* edge density (ED): the patch mean of the Sobel gradient magnitude of the grey image (computed on
  the whole image with zero padding, then cut into patches).

Thresholds are fitted once on a sample of patches (25th / 75th percentile of HF, median of ED) and
cached as JSON, so that every model is sliced with identical labels:

* texture (2): HF >= hf_q3
* edge    (1): ED >= edge_median and HF < hf_q3
* smooth  (0): HF < hf_q1 and ED < edge_median
* mixed   (3): everything else

Difference from the reference: images whose sides are not multiples of P are cropped to the
top-left whole patches instead of failing an assertion, and fitting defaults to the CPU.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import UserInputError
from ..fileio import atomic_write

__all__ = [
    "REGIONS",
    "RegionThresholds",
    "label_patches",
    "fit_region_thresholds",
    "save_thresholds",
    "load_thresholds",
    "load_or_fit_thresholds",
    "per_patch_hf_fraction",
    "per_patch_edge_density",
    "image_to_patch_grid",
    "sobel_magnitude",
]

REGIONS = ["smooth", "edge", "texture", "mixed"]


@dataclass(frozen=True)
class RegionThresholds:
    """Cut points for :func:`label_patches` (HF quartiles and the median edge density)."""

    hf_q1: float
    hf_q3: float
    edge_median: float

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> RegionThresholds:
        try:
            vals = {k: float(d[k]) for k in ("hf_q1", "hf_q3", "edge_median")}
        except (KeyError, TypeError, ValueError) as e:
            raise UserInputError(
                f"region thresholds need numeric hf_q1, hf_q3, edge_median ({e})"
            ) from None
        if not all(math.isfinite(v) for v in vals.values()):
            raise UserInputError(f"region thresholds must be finite numbers, got {vals}")
        return cls(**vals)


# --------------------------------------------------------------------------- helpers


def _as_batch(x: torch.Tensor) -> torch.Tensor:
    if x.ndim == 3:
        return x[None]
    if x.ndim != 4:
        raise ValueError(f"expected (C, H, W) or (B, C, H, W), got shape {tuple(x.shape)}")
    return x


def _grey(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, 1, H, W) channel mean in float32 (float64 stays float64)."""
    x = _as_batch(x)
    if not x.dtype.is_floating_point:
        x = x.float() / 255.0
    elif x.dtype not in (torch.float32, torch.float64):
        x = x.float()
    return x.mean(dim=1, keepdim=True)


def image_to_patch_grid(x: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, nH, nW, C, P, P), cropping to whole patches at the top-left.

    Raises ValueError when the image is smaller than one patch.
    """
    x = _as_batch(x)
    P = int(patch_size)
    B, C, H, W = x.shape
    nH, nW = H // P, W // P
    if P < 1 or nH == 0 or nW == 0:
        raise ValueError(f"image {H}x{W} is smaller than one {P}x{P} patch")
    x = x[..., : nH * P, : nW * P]
    return x.reshape(B, C, nH, P, nW, P).permute(0, 2, 4, 1, 3, 5)


def sobel_magnitude(x: torch.Tensor) -> torch.Tensor:
    """Sobel gradient magnitude of the grey image, zero padding: (B, C, H, W) -> (B, 1, H, W)."""
    g = _grey(x)
    kx = torch.tensor(
        [[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], dtype=g.dtype, device=g.device
    )
    k = torch.stack([kx, kx.t()])[:, None]  # (2, 1, 3, 3): d/dx, d/dy
    grad = F.conv2d(g, k, padding=1)
    return grad.pow(2).sum(dim=1, keepdim=True).sqrt()


def quantile(x: torch.Tensor, q: float) -> torch.Tensor:
    """Linear-interpolation quantile of all entries of ``x`` (the rule of ``torch.quantile``).

    Sorts instead of calling ``torch.quantile``, which refuses inputs above 2**24 elements
    (images above ~16.7 megapixels). Returns a 0-d tensor.
    """
    flat = x.reshape(-1)
    n = flat.numel()
    if n == 0:
        raise ValueError("quantile of an empty tensor")
    if not 0.0 <= float(q) <= 1.0:
        raise ValueError(f"quantile level must be in [0, 1], got {q}")
    pos = float(q) * (n - 1)
    lo = int(math.floor(pos))
    hi = min(lo + 1, n - 1)
    srt = torch.sort(flat).values
    frac = pos - lo
    if hi == lo or frac == 0.0:
        return srt[lo]
    return srt[lo] + (srt[hi] - srt[lo]) * frac


# --------------------------------------------------------------------------- statistics


def per_patch_hf_fraction(x: torch.Tensor, patch_size: int, cutoff: float = 0.25) -> torch.Tensor:
    """Share of Fourier power above ``cutoff`` cycles/pixel, per patch.

    x: (B, C, H, W) or (C, H, W) in [0, 1]. Returns (B, nH, nW) float.
    """
    P = int(patch_size)
    patches = image_to_patch_grid(_grey(x), P)[..., 0, :, :]  # (B, nH, nW, P, P)
    power = torch.fft.fft2(patches, norm="ortho").abs().pow(2)
    f = torch.fft.fftfreq(P, device=patches.device, dtype=patches.dtype)
    radius = torch.sqrt(f[:, None] ** 2 + f[None, :] ** 2)
    high = (radius > cutoff).to(power.dtype)
    return (power * high).sum(dim=(-2, -1)) / (power.sum(dim=(-2, -1)) + 1e-8)


def per_patch_edge_density(x: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Patch mean of the Sobel magnitude (whole-image zero-padded Sobel). Returns (B, nH, nW)."""
    mag = sobel_magnitude(x)
    return image_to_patch_grid(mag, patch_size)[..., 0, :, :].mean(dim=(-2, -1))


def label_patches(x: torch.Tensor, patch_size: int, thresholds: RegionThresholds) -> torch.Tensor:
    """Region label per patch: 0 smooth, 1 edge, 2 texture, 3 mixed. Returns (B, nH, nW) long."""
    hf = per_patch_hf_fraction(x, patch_size)
    ed = per_patch_edge_density(x, patch_size)
    labels = torch.full(hf.shape, 3, dtype=torch.long, device=hf.device)
    texture = hf >= thresholds.hf_q3
    edge = (ed >= thresholds.edge_median) & ~texture
    smooth = (hf < thresholds.hf_q1) & (ed < thresholds.edge_median)
    labels[smooth] = 0
    labels[edge] = 1
    labels[texture] = 2
    return labels


# --------------------------------------------------------------------------- fitting and caching


def _images_of(item) -> torch.Tensor | None:
    """Pull the image tensor out of whatever a loader yields."""
    if isinstance(item, torch.Tensor):
        return item
    if isinstance(item, dict):
        for key in ("hr", "image", "x", "gt"):
            if isinstance(item.get(key), torch.Tensor):
                return item[key]
        return None
    hr = getattr(item, "hr", None)
    if isinstance(hr, torch.Tensor):
        return hr
    if isinstance(item, (tuple, list)):
        for v in item:
            if isinstance(v, torch.Tensor) and v.ndim in (3, 4):
                return v
    return None


def fit_region_thresholds(
    loader: Iterable,
    patch_size: int,
    n_samples: int = 1024,
    device: str | torch.device = "cpu",
) -> RegionThresholds:
    """Fit the thresholds on the first ``n_samples`` patches that ``loader`` yields.

    loader: any iterable of images: tensors (C, H, W) / (B, C, H, W), tuples or lists whose first
    image-shaped tensor is used, dicts with an "hr"/"image"/"x"/"gt" tensor, or objects with an
    ``hr`` attribute (e.g. the samples of :class:`gblsr.data.SRPairs`). Images smaller than one
    patch are skipped. hf_q1 / hf_q3 are the 25th / 75th percentiles of the HF fraction and
    edge_median the median edge density (linear interpolation, as ``torch.quantile``).
    """
    hfs, eds = [], []
    count = 0
    for item in loader:
        img = _images_of(item)
        if img is None:
            raise TypeError(
                f"cannot find an image tensor in a loader item of type {type(item).__name__}"
            )
        img = _as_batch(img).to(device)
        if img.shape[-2] < patch_size or img.shape[-1] < patch_size:
            continue
        hfs.append(per_patch_hf_fraction(img, patch_size).reshape(-1).cpu())
        eds.append(per_patch_edge_density(img, patch_size).reshape(-1).cpu())
        count += hfs[-1].numel()
        if count >= n_samples:
            break
    if count == 0:
        raise UserInputError(
            f"no image large enough for {patch_size}x{patch_size} patches to fit region thresholds"
        )
    hf = torch.cat(hfs)[:n_samples].double()
    ed = torch.cat(eds)[:n_samples].double()
    return RegionThresholds(
        hf_q1=float(quantile(hf, 0.25)),
        hf_q3=float(quantile(hf, 0.75)),
        edge_median=float(quantile(ed, 0.5)),
    )


def save_thresholds(th: RegionThresholds, path: str | os.PathLike) -> Path:
    """Write ``{"hf_q1", "hf_q3", "edge_median"}`` as JSON (atomically)."""
    text = json.dumps(th.to_dict(), indent=2) + "\n"

    def _write(tmp: str) -> None:
        Path(tmp).write_text(text)

    return atomic_write(path, _write)


def load_thresholds(path: str | os.PathLike) -> RegionThresholds:
    """Read thresholds written by :func:`save_thresholds` (or the reference's JSON)."""
    p = Path(path)
    try:
        d = json.loads(p.read_text())
    except FileNotFoundError:
        raise UserInputError(f"region thresholds file not found: {p}") from None
    except (OSError, ValueError) as e:
        raise UserInputError(f"cannot read region thresholds {p}: {e}") from None
    if not isinstance(d, dict):
        raise UserInputError(f"region thresholds file {p} does not hold a JSON object")
    return RegionThresholds.from_dict(d)


def load_or_fit_thresholds(
    path: str | os.PathLike | None,
    loader: Iterable,
    patch_size: int,
    n_samples: int = 1024,
    device: str | torch.device = "cpu",
) -> RegionThresholds:
    """Load cached thresholds from ``path`` if it exists, else fit them and cache them there."""
    if path is not None and Path(path).exists():
        return load_thresholds(path)
    th = fit_region_thresholds(loader, patch_size, n_samples=n_samples, device=device)
    if path is not None:
        save_thresholds(th, path)
    return th
