"""Truncated local spectral bases, the soft order mask and the per-patch adaptivity head.

Conventions
-----------
A patch (native model) or a feature cell (arbitrary-scale model) has local coordinates in
[-1, 1] on each axis. The 2-D basis is separable: ``phi_i(u) * phi_j(v)`` with ``p_max`` modes
per axis, and one bandwidth ``s_e`` scales the angular argument on both axes.

Fourier family, 1-D mode order (index k -> frequency ceil(k / 2))::

    k = 0: 1
    k = 2j - 1: cos(j * pi * s_e * u)
    k = 2j:     sin(j * pi * s_e * u)        j = 1, 2, ...

truncated after exactly ``p_max`` modes (an even ``p_max`` ends on an unpaired cosine).

Cosine family: ``phi_k(u) = cos(k * pi * s_e * (u + 1) / 2)``, k = 0 .. p_max - 1.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn as nn

__all__ = [
    "BasisConfig",
    "AdaptivityHead",
    "fourier_basis_1d",
    "build_1d_basis",
    "soft_order_mask",
    "make_patch_coords",
    "image_to_patches",
    "patches_to_image",
    "reconstruct_patch",
    "global_fourier_features",
]


@dataclass
class BasisConfig:
    """Local basis settings. ``patch_size`` must equal ``ModelConfig.patch_size``."""

    patch_size: int
    p_max: int = 16
    family: Literal["fourier", "cosine"] = "fourier"
    s_e_range: tuple[float, float] = (0.25, 2.0)
    p_soft_range: tuple[float, float] = (1.0, 16.0)
    cutoff_sharpness: float = 4.0

    def __post_init__(self) -> None:
        # YAML and JSON give lists; the ranges are compared and unpacked as pairs.
        self.s_e_range = tuple(float(v) for v in self.s_e_range)
        self.p_soft_range = tuple(float(v) for v in self.p_soft_range)
        if self.family not in ("fourier", "cosine"):
            raise ValueError(f"unknown family: {self.family!r} (expected 'fourier' or 'cosine')")
        if self.p_max < 1:
            raise ValueError(f"p_max must be >= 1, got {self.p_max}")


def _compiling() -> bool:
    compiler = getattr(torch, "compiler", None)
    return bool(compiler is not None and getattr(compiler, "is_compiling", lambda: False)())


@functools.lru_cache(maxsize=32)
def _frequencies(n_freq: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(n_freq,) tensor of j * pi, j = 1 .. n_freq (cached: no host-to-device copy per call,
    which also keeps rendering capturable in a CUDA graph)."""
    return torch.tensor([j * math.pi for j in range(1, n_freq + 1)], dtype=dtype, device=device)


def fourier_basis_1d(coord: torch.Tensor, p_max: int, s_e: torch.Tensor | float) -> torch.Tensor:
    """Fourier modes at arbitrary points.

    coord: (...) local coordinates; s_e broadcasts against coord.
    returns: (..., p_max) in the module's mode order.

    All frequencies go through one ``cos`` and one ``sin`` call. The angles are formed as the
    reference forms them, ``((j * pi) * coord) * s_e`` with ``j * pi`` rounded to coord's dtype,
    so they agree bit for bit.
    """
    n_freq = p_max // 2  # j = 1 .. n_freq gives the p_max - 1 non-constant modes
    if n_freq == 0:
        shape = torch.broadcast_shapes(coord.shape, torch.as_tensor(s_e).shape)
        return torch.ones(*shape, 1, dtype=coord.dtype, device=coord.device)
    work = coord if coord.dtype in (torch.float32, torch.float64) else coord.float()
    if _compiling():  # dynamo traces through caches anyway; let it see a plain constant
        freqs = torch.tensor([j * math.pi for j in range(1, n_freq + 1)], dtype=work.dtype)
        freqs = freqs.to(work.device)
    else:
        freqs = _frequencies(n_freq, work.dtype, work.device)
    angle = freqs * work.unsqueeze(-1)
    if isinstance(s_e, torch.Tensor) and s_e.dim() > 0:
        angle = angle * s_e.unsqueeze(-1)
    else:
        angle = angle * s_e
    pairs = torch.stack([torch.cos(angle), torch.sin(angle)], dim=-1).flatten(-2)
    modes = pairs[..., : p_max - 1]
    ones = torch.ones(*modes.shape[:-1], 1, dtype=modes.dtype, device=modes.device)
    return torch.cat([ones, modes], dim=-1).to(coord.dtype)


def build_1d_basis(coord: torch.Tensor, p_max: int, s_e: torch.Tensor, family: str) -> torch.Tensor:
    """Evaluate a 1-D basis on a coordinate vector for every bandwidth in ``s_e``.

    coord: (L,) local coordinates in [-1, 1].
    s_e:   (..., 1) bandwidths.
    returns: (..., L, p_max).
    """
    length = coord.shape[0]
    if family == "fourier":
        c = coord.view(*((1,) * (s_e.ndim - 1)), length)
        return fourier_basis_1d(c, p_max, s_e)
    if family == "cosine":
        k = torch.arange(p_max, device=coord.device, dtype=coord.dtype)
        half = ((coord.unsqueeze(-1) + 1.0) * 0.5).view(*((1,) * (s_e.ndim - 1)), length, 1)
        return torch.cos(k * math.pi * half * s_e.unsqueeze(-1))
    raise ValueError(f"unknown family: {family}")


def soft_order_mask(p_soft: torch.Tensor, p_max: int, sharpness: float) -> torch.Tensor:
    """Smooth square cutoff on mode indices: ``sigmoid((p_soft - max(k_i, k_j)) * sharpness)``.

    p_soft: (..., 1) effective order per patch.
    returns: (..., p_max, p_max).

    The reference squeezes axis -3 of the result, which removes the patch-column axis whenever
    the grid is one patch wide and then broadcasts p_soft across the wrong patches; we keep
    every axis.
    """
    k = torch.arange(p_max, device=p_soft.device, dtype=p_soft.dtype)
    k_max = torch.maximum(k.view(p_max, 1), k.view(1, p_max))
    return torch.sigmoid((p_soft.unsqueeze(-1) - k_max) * sharpness)


class AdaptivityHead(nn.Module):
    """Per-patch (s_e, p_soft) from per-patch features; zero-initialised, so it starts at the
    midpoint of each range (arithmetic for ``local_linear``, geometric for ``local_logspace``)."""

    def __init__(
        self,
        d_feat: int,
        s_e_range: tuple[float, float],
        p_soft_range: tuple[float, float],
        bandwidth_mode: str = "local_linear",
    ):
        super().__init__()
        if bandwidth_mode not in ("local_linear", "local_logspace"):
            raise ValueError(
                f"AdaptivityHead: unknown bandwidth_mode={bandwidth_mode!r}; "
                "expected 'local_linear' or 'local_logspace'"
            )
        self.proj = nn.Linear(d_feat, 2)
        self.s_e_range = tuple(s_e_range)
        self.p_soft_range = tuple(p_soft_range)
        self.bandwidth_mode = bandwidth_mode
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, feat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """feat: (..., d_feat) -> (s_e, p_soft), each (..., 1)."""
        raw = self.proj(feat)
        s_raw, p_raw = raw[..., 0:1], raw[..., 1:2]
        s_lo, s_hi = self.s_e_range
        p_lo, p_hi = self.p_soft_range
        if self.bandwidth_mode == "local_linear":
            s_e = s_lo + (s_hi - s_lo) * torch.sigmoid(s_raw)
        else:
            log_lo, log_hi = math.log(s_lo), math.log(s_hi)
            s_e = torch.exp(log_lo + (log_hi - log_lo) * torch.sigmoid(s_raw))
        p_soft = p_lo + (p_hi - p_lo) * torch.sigmoid(p_raw)
        return s_e, p_soft


def make_patch_coords(patch_size: int, device: torch.device | None = None) -> torch.Tensor:
    """(P, P, 2) local (u, v) pixel-centre coordinates of a patch; the end points are +-1."""
    t = torch.linspace(-1.0, 1.0, patch_size, device=device)
    uu, vv = torch.meshgrid(t, t, indexing="ij")
    return torch.stack([uu, vv], dim=-1)


def image_to_patches(x: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, nH, nW, C, P, P) non-overlapping patches; H, W multiples of P."""
    b, c, h, w = x.shape
    p = patch_size
    if h % p or w % p:
        raise ValueError(f"image {h}x{w} is not divisible by patch size {p}")
    x = x.reshape(b, c, h // p, p, w // p, p)
    return x.permute(0, 2, 4, 1, 3, 5).contiguous()


def patches_to_image(p: torch.Tensor) -> torch.Tensor:
    """(B, nH, nW, C, Lu, Lv) -> (B, C, nH * Lu, nW * Lv); inverse of :func:`image_to_patches`."""
    b, nh, nw, c, lu, lv = p.shape
    return p.permute(0, 3, 1, 4, 2, 5).reshape(b, c, nh * lu, nw * lv)


def reconstruct_patch(
    coeffs: torch.Tensor,
    s_e: torch.Tensor,
    p_soft: torch.Tensor,
    coords_1d: torch.Tensor,
    cfg: BasisConfig,
) -> torch.Tensor:
    """Render every patch on a square grid of local coordinates.

    coeffs:    (B, nH, nW, C, p_max, p_max)
    s_e:       (B, nH, nW, 1), or any shape that broadcasts (e.g. (1, 1, 1, 1) when global)
    p_soft:    (B, nH, nW, 1)
    coords_1d: (L,) local coordinates; ``linspace(-1, 1, P)`` reproduces the training grid and
               any other L renders the patch at another resolution.
    returns:   (B, nH, nW, C, L, L)
    """
    b, nh, nw, c, pu, pv = coeffs.shape
    if pu != cfg.p_max or pv != cfg.p_max:
        raise ValueError(f"coefficient block {pu}x{pv} does not match p_max={cfg.p_max}")
    phi = build_1d_basis(coords_1d, cfg.p_max, s_e, cfg.family)  # (..., L, p)
    weighted = coeffs * soft_order_mask(p_soft, cfg.p_max, cfg.cutoff_sharpness).unsqueeze(-3)
    # Two matrix products (phi @ A @ phi^T) instead of one 6-index einsum: the intermediate is
    # (.., C, p, L), never a broadcast of every index at once.
    if all(d == 1 for d in phi.shape[:-2]):
        # One basis for every patch (a global bandwidth): both products are plain GEMMs over
        # all patches at once, with no per-patch copy of the basis.
        phi = phi.reshape(phi.shape[-2:])  # (L, p)
        return torch.matmul(phi, weighted @ phi.mT)
    phi = phi.expand(b, nh, nw, *phi.shape[-2:]).unsqueeze(3)  # (B, nH, nW, 1, L, p)
    return phi @ weighted @ phi.transpose(-1, -2)


def global_fourier_features(coords: torch.Tensor, B_freq: torch.Tensor) -> torch.Tensor:
    """Random Fourier features.

    coords: (..., 2); B_freq: (n_freq, 2).
    returns: (..., 2 * n_freq) = [cos(2 pi coords B^T), sin(2 pi coords B^T)].
    """
    proj = 2.0 * math.pi * coords @ B_freq.t()
    return torch.cat([torch.cos(proj), torch.sin(proj)], dim=-1)
