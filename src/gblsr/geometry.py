"""Cell-centre coordinates of the LIIF convention.

An axis of n cells spans [-1, 1]; cell i has centre ``-1 + 1/n + 2i/n``. Coordinates are stored
in (y, x) order, so ``grid_sample`` callers flip the last axis.
"""

from __future__ import annotations

import torch

__all__ = ["make_coord", "axis_centres"]


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
