"""Window-attention building blocks shared by the SwinIR and HAT encoders (pure PyTorch).

Images travel between blocks as token sequences (B, H * W, C) in row-major order. Attention runs
inside non-overlapping ``ws x ws`` windows; every other block rolls the image by ``ws // 2`` first
and masks the pairs that the roll brought together from opposite borders (-100, as the official
code does, not -inf). The index and mask tensors are rebuilt from sizes on every call (cached per
size), so any input size works and nothing shape-dependent is stored in a state dict.
"""

from __future__ import annotations

import functools

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "DropPath",
    "Mlp",
    "window_partition",
    "window_reverse",
    "relative_position_index",
    "overlap_relative_position_index",
    "shift_mask",
    "attend",
    "windows_per_chunk",
    "pad_to_multiple",
]

# The official mask value for token pairs that a cyclic shift made neighbours.
MASK_VALUE = -100.0


class DropPath(nn.Module):
    """Stochastic depth: in training, zero whole samples of a residual branch with probability
    ``p`` and rescale the rest by 1 / (1 - p); the identity in eval mode."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        mask = (keep + torch.rand(shape, dtype=x.dtype, device=x.device)).floor_()
        return x.div(keep) * mask

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Mlp(nn.Module):
    """fc1 -> GELU -> fc2 over the last axis (keys ``fc1``, ``fc2``)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


def window_partition(x: torch.Tensor, ws: int) -> torch.Tensor:
    """(B, H, W, C) -> (B * nH * nW, ws * ws, C), windows row-major per image."""
    b, h, w, c = x.shape
    x = x.view(b, h // ws, ws, w // ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, ws * ws, c)


def window_reverse(windows: torch.Tensor, ws: int, h: int, w: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`: (B * nH * nW, ws * ws, C) -> (B, H, W, C)."""
    c = windows.shape[-1]
    b = windows.shape[0] // ((h // ws) * (w // ws))
    x = windows.view(b, h // ws, w // ws, ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h, w, c)


@functools.lru_cache(maxsize=32)
def relative_position_index(ws: int) -> torch.Tensor:
    """(ws^2, ws^2) int64: the row of the (2 ws - 1)^2-row bias table for each (query, key)
    pair of one window, (qy - ky + ws - 1) * (2 ws - 1) + (qx - kx + ws - 1)."""
    y, x = torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij")
    y, x = y.reshape(-1), x.reshape(-1)
    dy = y[:, None] - y[None, :] + ws - 1
    dx = x[:, None] - x[None, :] + ws - 1
    return (dy * (2 * ws - 1) + dx).contiguous()


@functools.lru_cache(maxsize=32)
def overlap_relative_position_index(ws: int, ws_ext: int) -> torch.Tensor:
    """(ws^2, ws_ext^2) int64 table rows for HAT's overlapping cross-attention, as the official
    code computes them: (ky - qy + c) * side + (kx - qx + c) with c = ws - ws_ext + 1 and
    side = ws + ws_ext - 1 (keys on the ws_ext x ws_ext window around the ws x ws queries).

    For ws_ext > ws + 1 some values are negative; PyTorch indexing wraps them to the end of the
    table, and so does this function (mod side^2), so the same table rows are read."""
    qy, qx = torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij")
    ky, kx = torch.meshgrid(torch.arange(ws_ext), torch.arange(ws_ext), indexing="ij")
    c, side = ws - ws_ext + 1, ws + ws_ext - 1
    dy = ky.reshape(1, -1) - qy.reshape(-1, 1) + c
    dx = kx.reshape(1, -1) - qx.reshape(-1, 1) + c
    return ((dy * side + dx) % (side * side)).contiguous()


@functools.lru_cache(maxsize=64)
def _shift_mask_cpu(h: int, w: int, ws: int, shift: int) -> torch.Tensor:
    region = torch.zeros(h, w)
    cuts = ((0, -ws), (-ws, -shift), (-shift, None))
    label = 0
    for y0, y1 in cuts:
        for x0, x1 in cuts:
            region[y0:y1, x0:x1] = label
            label += 1
    win = window_partition(region.view(1, h, w, 1), ws).squeeze(-1)  # (nW, ws^2)
    diff = win.unsqueeze(1) - win.unsqueeze(2)
    return torch.where(diff != 0, MASK_VALUE, 0.0)


def shift_mask(h: int, w: int, ws: int, shift: int, device=None, dtype=None) -> torch.Tensor:
    """(nW, ws^2, ws^2) additive mask of a cyclically shifted (h, w) image: 0 for token pairs
    from the same region before the roll, -100 otherwise (h, w multiples of ws)."""
    m = _shift_mask_cpu(h, w, ws, shift)
    return m.to(device=device, dtype=dtype or m.dtype)


# Bytes of attention working memory per chunk of windows (qkv, scores, outputs).
ATTENTION_CHUNK_BYTES = 128 << 20


def windows_per_chunk(batch: int, n_q: int, n_k: int, dim: int, heads: int, itemsize: int) -> int:
    """How many windows (of every image in the batch) one attention chunk handles."""
    per_window = batch * itemsize * (n_q * 2 * dim + n_k * 3 * dim + heads * n_q * n_k * 2)
    return max(1, ATTENTION_CHUNK_BYTES // per_window)


def attend(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor, scale: float
) -> torch.Tensor:
    """softmax((q * scale) @ k^T + bias) @ v, the official order of operations.

    q: (M, nH, Nq, d); k, v: (M, nH, Nk, d); bias: broadcastable to (M, nH, Nq, Nk).
    returns (M, nH, Nq, d). ``scaled_dot_product_attention`` with the scale pre-applied and
    ``scale=1`` gives the official numbers to float rounding (checked against the golden
    fixtures at 1e-5).
    """
    bias = bias.to(q.dtype).expand(q.shape[0], -1, -1, -1)
    return F.scaled_dot_product_attention(q * scale, k, v, attn_mask=bias, scale=1.0)


def pad_to_multiple(x: torch.Tensor, m: int) -> torch.Tensor:
    """Reflect-pad (B, C, H, W) on the bottom and right to multiples of ``m`` (the official
    ``check_image_size``; PyTorch's reflect needs the pad smaller than the side)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % m, (-w) % m
    if ph == 0 and pw == 0:
        return x
    return F.pad(x, (0, pw, 0, ph), mode="reflect")
