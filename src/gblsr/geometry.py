"""Coordinates and LIIF's local-ensemble geometry, written once for every method.

Coordinates. An axis of n cells spans [-1, 1]; cell i has centre ``-1 + 1/n + 2i/n``. Points
are stored in (y, x) order, so ``grid_sample`` callers flip the last axis.

The corner rule (LIIF's local ensemble; GB-LSR-ASR, LIIF, LTE and LMF all render a point this
way, and these are the rules that decide the last bits):

  * shifts: a point ``q`` on an axis of ``n`` cells is looked up at ``q + (v / n + 1e-6)`` for
    ``v`` in (-1, +1) (one pre-summed double added once; the 1e-6 decides exact ties at odd
    scales the way LIIF does), clamped to +-(1 - 1e-6). Without the ensemble: v = 0, no 1e-6;
  * owning cell: the centre ``grid_sample(mode="nearest", align_corners=False)`` picks at the
    shifted point. The kernel rounds each axis on its own, so the choice is made per axis by
    sampling a one-line map of cell numbers (:func:`nearest_cells_1d`), bit for bit the kernel's;
  * relative coordinate: ``(q - centre) * n`` with the *unshifted* point, in half-cell units
    (within [-2, 2]);
  * corners: (vy, vx) in the order (-,-), (-,+), (+,-), (+,+); area_k = |rel_y rel_x| + 1e-9;
    corner k is weighted by the area of the *diagonally opposite* corner over the sum of all
    four, and the blend is accumulated in corner order.

:func:`axis_members` applies the rule to one axis (separable renderers plan each axis with it),
:func:`corner_weights` and :func:`blend` finish it, :func:`ensemble_members` does all of it for
(B, Q, 2) query points.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = [
    "make_coord",
    "axis_centres",
    "CLAMP",
    "CORNER_EPS",
    "AREA_EPS",
    "geometry_dtype",
    "nearest_cells_1d",
    "axis_members",
    "corner_weights",
    "blend",
    "Member",
    "ensemble_members",
]

# Shifted points are clamped to +-CLAMP before the nearest-cell lookup.
CLAMP = 1.0 - 1e-6
# Added to both axes of every corner-shifted point (ties at odd scales, see the module doc).
CORNER_EPS = 1e-6
# Added to every corner area before normalising.
AREA_EPS = 1e-9


def axis_centres(
    n: int, dtype: torch.dtype = torch.float32, device: torch.device | None = None
) -> torch.Tensor:
    """(n,) centres of n equal cells in [-1, 1].

    Evaluated as ``(-1 + r) + (2 r) * arange(n)`` in ``dtype``: the same operations as LIIF's
    make_coord, so nearest-cell choices that hinge on the last bit agree with it (a linspace
    differs in up to a third of the entries by one ulp).
    """
    r = 1.0 / n
    return -1.0 + r + (2.0 * r) * torch.arange(n, dtype=dtype, device=device)


def make_coord(
    shape: tuple[int, int],
    flatten: bool = True,
    dtype: torch.dtype = torch.float32,
    device: torch.device | None = None,
) -> torch.Tensor:
    """Cell centres of an (H, W) grid in (y, x) order: (H * W, 2) or, unflattened, (H, W, 2)."""
    axes = [axis_centres(int(n), dtype, device) for n in shape]
    grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)
    return grid.reshape(-1, grid.shape[-1]) if flatten else grid


def geometry_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype coordinates are computed in: float64 for float64 models, float32 otherwise
    (the reference codes build their coordinate grids in float32)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def nearest_cells_1d(pos: torch.Tensor, n: int, vertical: bool) -> torch.Tensor:
    """Index of the cell whose centre ``grid_sample(mode='nearest', align_corners=False)`` picks
    for each position on an axis of ``n`` cells.

    pos: (L,) coordinates in [-1, 1] (already shifted and clamped); vertical selects the axis
         (grid_sample's y for rows, x for columns), since the kernel scales each by its own size.
    returns: (L,) int64 in [0, n).
    """
    # A one-line map of cell numbers (exact in float32 up to 2^24 cells); the other coordinate
    # is 0, which lands on the single cell of the map's other axis.
    g = geometry_dtype(pos.dtype)
    numbers = torch.arange(n, device=pos.device, dtype=g)
    numbers = numbers.view(1, 1, n, 1) if vertical else numbers.view(1, 1, 1, n)
    pos = pos.to(g)
    other = torch.zeros_like(pos)
    grid = torch.stack([other, pos] if vertical else [pos, other], dim=-1).view(1, 1, -1, 2)
    picked = F.grid_sample(numbers, grid, mode="nearest", align_corners=False)
    return picked.view(-1).long()


def axis_members(
    pos: torch.Tensor, n: int, local_ensemble: bool, vertical: bool
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The corner rule on one axis: owning cells and relative offsets of every shift.

    pos: (...) coordinates in [-1, 1] on an axis of ``n`` cells (vertical: rows).
    returns: (cells, rels), one entry per shift ((-, +) with the ensemble, else one):
        cells[s]: (...) int64 owning cell; rels[s]: (...) ``(pos - centre) * n``.
    """
    centres = axis_centres(n, pos.dtype, pos.device)
    shifts, eps = ((-1, 1), CORNER_EPS) if local_ensemble else ((0,), 0.0)
    cells, rels = [], []
    for v in shifts:
        shifted = (pos + (v / n + eps)).clamp_(-CLAMP, CLAMP)
        idx = nearest_cells_1d(shifted.reshape(-1), n, vertical).view(pos.shape)
        cells.append(idx)
        rels.append((pos - centres[idx]) * n)
    return cells, rels


def corner_weights(
    rels_y: Sequence[torch.Tensor], rels_x: Sequence[torch.Tensor]
) -> list[torch.Tensor] | None:
    """Blend weights of the four corners, in corner order (vertical shift first).

    rels_y, rels_x: the two shifts' relative offsets per axis (from :func:`axis_members`), of
        shapes that broadcast against each other: (B, Q) each for points, (Ly, 1) and (1, Lx)
        for the outer product over a window.
    returns: four weights of the broadcast shape, or None with one shift per axis (no
        ensemble: the single corner's weight is exactly 1).
    """
    if len(rels_y) == 1 and len(rels_x) == 1:
        return None
    areas = [torch.abs(ry * rx) + AREA_EPS for ry in rels_y for rx in rels_x]
    total = areas[0] + areas[1] + areas[2] + areas[3]
    # Corner k takes the area spanned to the diagonally opposite corner.
    return [area / total for area in areas[::-1]]


def blend(preds: Sequence[torch.Tensor], weights: Sequence[torch.Tensor] | None) -> torch.Tensor:
    """sum_k preds[k] * weights[k]: preds (..., C), weights (...) from :func:`corner_weights`
    (None: the single member itself)."""
    if weights is None:
        return preds[0]
    out = None
    for pred, weight in zip(preds, weights):
        term = pred * weight.to(pred.dtype).unsqueeze(-1)
        out = term if out is None else out + term
    return out


@dataclass
class Member:
    """One local-ensemble member (corner) of a batch of query points.

    row, col: (B, Q) int64 owning cell; index: (B, Q) flat ``row * w + col``
    rel:      (B, Q, 2) (y, x) offset of the point from that cell's centre, times (h, w)
    """

    row: torch.Tensor
    col: torch.Tensor
    index: torch.Tensor
    rel: torch.Tensor


def ensemble_members(
    coord: torch.Tensor, h: int, w: int, local_ensemble: bool = True
) -> tuple[list[Member], list[torch.Tensor] | None]:
    """The corner rule for points: coord (B, Q, 2) (y, x) in [-1, 1] on an (h, w) cell grid.

    returns (members, weights): four members in corner order (one without the ensemble) and
    their blend weights (B, Q) (None without the ensemble); ``blend(preds, weights)`` finishes.
    """
    rows, rels_y = axis_members(coord[..., 0], h, local_ensemble, vertical=True)
    cols, rels_x = axis_members(coord[..., 1], w, local_ensemble, vertical=False)
    members = [
        Member(r, c, r * w + c, torch.stack([ry, rx], dim=-1))
        for r, ry in zip(rows, rels_y)
        for c, rx in zip(cols, rels_x)
    ]
    return members, corner_weights(rels_y, rels_x)
