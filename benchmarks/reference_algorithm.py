"""A plain, per-query implementation of the reference GB-LSR decoders, for benchmarks only.

This is the algorithm of the public reference code written out directly (not its code): every
output pixel, for each of the four ensemble corners, fetches the owning cell's whole
``3 * p_max^2`` coefficient vector with a nearest-neighbour ``grid_sample`` of the full
coefficient map, then contracts it with the two 1-D bases. It uses the weights of a
:class:`gblsr.asr.GBLSRScalarASRDecoder`, so timings compare two algorithms on the same model.

The native decoder's reference contraction is the single 6-index einsum.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from gblsr.asr.coord import make_coord


def _basis(x: torch.Tensor, p: int, s_e: torch.Tensor) -> torch.Tensor:
    modes = [torch.ones_like(x)]
    j = 1
    while len(modes) < p:
        a = j * math.pi * x * s_e
        modes.append(torch.cos(a))
        if len(modes) < p:
            modes.append(torch.sin(a))
        j += 1
    return torch.stack(modes, -1)


def per_query_decode(decoder, coef: torch.Tensor, coord: torch.Tensor) -> torch.Tensor:
    """coef (B, 3 p^2, h, w) from decoder.coeff_proj; coord (B, Q, 2) (y, x) -> (B, Q, 3)."""
    b, _, h, w = coef.shape
    p = decoder.p_max
    s_e = decoder.bandwidth()
    centres = make_coord((h, w), flatten=False).to(coef).permute(2, 0, 1)[None].expand(b, 2, h, w)
    if decoder.local_ensemble:
        shifts, eps = [(vy, vx) for vy in (-1, 1) for vx in (-1, 1)], 1e-6
    else:
        shifts, eps = [(0, 0)], 0.0
    preds, areas = [], []
    for vy, vx in shifts:
        c = coord.clone()
        c[..., 0] += vy / h + eps
        c[..., 1] += vx / w + eps
        c.clamp_(-1 + 1e-6, 1 - 1e-6)
        grid = c.flip(-1).unsqueeze(1)
        q_coef = F.grid_sample(coef, grid, mode="nearest", align_corners=False)[:, :, 0]
        q_cent = F.grid_sample(centres, grid, mode="nearest", align_corners=False)[:, :, 0]
        rel = coord - q_cent.permute(0, 2, 1)
        rel_y, rel_x = rel[..., 0] * h, rel[..., 1] * w
        blocks = q_coef.permute(0, 2, 1).reshape(b, -1, 3, p, p)
        pred = torch.einsum(
            "bqcij,bqi,bqj->bqc", blocks, _basis(rel_y, p, s_e), _basis(rel_x, p, s_e)
        )
        preds.append(pred)
        areas.append((rel_y * rel_x).abs() + 1e-9)
    if len(preds) == 1:
        return preds[0]
    areas = areas[::-1]
    total = sum(areas)
    return sum(pr * (a / total).unsqueeze(-1) for pr, a in zip(preds, areas))


def decode_full(
    decoder,
    feat: torch.Tensor,
    H: int,
    W: int,
    tile_q: int | None = None,
    max_tiles: int | None = None,
) -> tuple[torch.Tensor, int]:
    """Decode features to an H x W image the reference way, ``tile_q`` queries at a time.

    Returns (pixels rendered (B, n, 3), n). With ``max_tiles`` only the first tiles are rendered
    (for extrapolating the time of outputs too big to wait for).
    """
    coef = decoder.coeff_proj(feat)
    b = coef.shape[0]
    coord = make_coord((H, W)).to(coef)
    total = coord.shape[0]
    step = total if tile_q is None else tile_q
    parts = []
    for i, s in enumerate(range(0, total, step)):
        if max_tiles is not None and i >= max_tiles:
            break
        parts.append(per_query_decode(decoder, coef, coord[s : s + step][None].expand(b, -1, -1)))
    out = torch.cat(parts, dim=1)
    return out, out.shape[1]


def native_reference_render(coeffs, s_e, p_soft, coords_1d, cfg):
    """The native decoder's rendering as one 6-index einsum (masked coefficients x 2 bases)."""
    from gblsr.models.basis import build_1d_basis, soft_order_mask

    phi = build_1d_basis(coords_1d, cfg.p_max, s_e, cfg.family)
    m = coeffs * soft_order_mask(p_soft, cfg.p_max, cfg.cutoff_sharpness).unsqueeze(-3)
    return torch.einsum("bnmcij,bnmui,bnmvj->bnmcuv", m, phi, phi)
