"""Padding to the patch grid and back, for inputs of any size.

The native model needs H and W to be multiples of the patch size. We pad the smallest amount that
gets there (floor of half the padding on the top/left, the rest on the bottom/right), reflecting
the image where the pad is smaller than the image and replicating its edge where it is not, and
record everything needed to undo it in a plain dict (``pad_info``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["pad_to_multiple", "crop_to_original", "make_valid_patch_mask"]


def pad_to_multiple(
    x: torch.Tensor, multiple: int, mode: str = "reflect"
) -> tuple[torch.Tensor, dict]:
    """Pad the last two axes of ``x`` (..., H, W) up to multiples of ``multiple``.

    returns: (x_pad (..., H', W'), pad_info) where pad_info holds orig_h, orig_w, padded_h,
    padded_w, pad_l, pad_r, pad_t, pad_b, mode_used, patch_size, num_patches_h, num_patches_w.
    """
    if x.ndim < 2:
        raise ValueError(f"pad_to_multiple expects ndim >= 2, got shape {tuple(x.shape)}")
    if multiple <= 0:
        raise ValueError(f"`multiple` must be positive, got {multiple}")
    h, w = int(x.shape[-2]), int(x.shape[-1])
    padded_h = -(-h // multiple) * multiple
    padded_w = -(-w // multiple) * multiple
    pad_t = (padded_h - h) // 2
    pad_b = padded_h - h - pad_t
    pad_l = (padded_w - w) // 2
    pad_r = padded_w - w - pad_l

    mode_used = mode
    # Reflection cannot reach further than the image is long; the edge value is the fallback.
    if mode == "reflect" and (max(pad_t, pad_b) >= h or max(pad_l, pad_r) >= w):
        mode_used = "replicate"

    lead = x.shape[:-2]
    flat = x.reshape(-1, 1, h, w) if x.ndim != 4 else x
    flat = F.pad(flat, (pad_l, pad_r, pad_t, pad_b), mode=mode_used)
    x_pad = flat if x.ndim == 4 else flat.reshape(*lead, padded_h, padded_w)

    pad_info = {
        "orig_h": h,
        "orig_w": w,
        "padded_h": padded_h,
        "padded_w": padded_w,
        "pad_l": pad_l,
        "pad_r": pad_r,
        "pad_t": pad_t,
        "pad_b": pad_b,
        "mode_used": mode_used,
        "patch_size": int(multiple),
        "num_patches_h": padded_h // int(multiple),
        "num_patches_w": padded_w // int(multiple),
    }
    return x_pad, pad_info


def crop_to_original(x_pad: torch.Tensor, pad_info: dict) -> torch.Tensor:
    """(..., H', W') -> (..., orig_h, orig_w); the inverse of :func:`pad_to_multiple`."""
    t, left = int(pad_info["pad_t"]), int(pad_info["pad_l"])
    return x_pad[..., t : t + int(pad_info["orig_h"]), left : left + int(pad_info["orig_w"])]


def make_valid_patch_mask(
    pad_info: dict,
    patch_size: int,
    batch_size: int | None = None,
    device: torch.device | None = None,
) -> torch.Tensor:
    """Which patches of the padded grid overlap the original image.

    returns: bool (nH, nW), or (B, nH, nW) when ``batch_size`` is given.
    """
    if patch_size <= 0:
        raise ValueError(f"patch_size must be positive, got {patch_size}")
    ph, pw = int(pad_info["padded_h"]), int(pad_info["padded_w"])
    if ph % patch_size or pw % patch_size:
        raise ValueError(f"padded shape ({ph}, {pw}) is not a multiple of patch_size={patch_size}")

    def overlaps(n: int, start: int, length: int) -> torch.Tensor:
        lo = torch.arange(n, device=device) * patch_size
        return (lo + patch_size > start) & (lo < start + length)

    rows = overlaps(ph // patch_size, int(pad_info["pad_t"]), int(pad_info["orig_h"]))
    cols = overlaps(pw // patch_size, int(pad_info["pad_l"]), int(pad_info["orig_w"]))
    mask = rows[:, None] & cols[None, :]
    return mask if batch_size is None else mask.expand(batch_size, *mask.shape)
