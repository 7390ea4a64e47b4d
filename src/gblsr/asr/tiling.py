"""Tiling for GB-LSR-ASR's separable renderer: memory estimates and tile sizes.

Rendering an H x W output is split into row strips (full width unless one row alone exceeds the
budget) whose transient memory, estimated by :func:`estimate_tile_bytes`, stays within a byte
budget. The tiles are exact windows of the same rendering, so the result never depends on them.
"""

from __future__ import annotations

import torch

__all__ = [
    "estimate_tile_bytes",
    "rows_per_tile",
    "preferred_tile_budget",
    "tile_shape",
    "DEFAULT_RENDER_BUDGET",
    "DEFAULT_RENDER_BUDGET_CUDA",
]


def estimate_tile_bytes(
    rows: int,
    cols: int,
    batch: int,
    p: int,
    scale_y: float,
    scale_x: float,
    elem: int,
    local_ensemble: bool = True,
) -> int:
    """Upper estimate of the transient memory :func:`gblsr.asr.separable.render_window` needs
    for a rows x cols window: the intermediates of one image's two passes and the result."""
    s = 2 if local_ensemble else 1
    # Runs of output positions per cell, padded to the longest: at most ~one extra per shift.
    pad_y = 1.0 + s / max(scale_y, 0.5)
    pad_x = 1.0 + s / max(scale_x, 0.5)
    cell_rows = rows / max(scale_y, 1e-6) + 3
    n1 = s * cols * pad_x  # padded output columns (cx * dx)
    n_rows = s * rows * pad_y  # padded output rows (ry * dy)
    pass1 = n1 * cell_rows * 3 * p + 2 * cols * cell_rows * 3 * p  # t1, then the column sums
    pass2 = 3 * n_rows * cols + 2 * 3 * rows * cols  # t2, then the row sums
    result = 2 * 3 * batch * rows * cols  # the per-image results and their stack
    return int(elem * (pass1 + pass2 + result))


def rows_per_tile(
    height: int,
    width: int,
    batch: int,
    p: int,
    scale_y: float,
    scale_x: float,
    elem: int,
    budget: int,
    local_ensemble: bool = True,
) -> int:
    """Largest strip height (>= 1) whose :func:`estimate_tile_bytes` fits ``budget`` bytes."""
    lo, hi = 1, max(1, height)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if (
            estimate_tile_bytes(mid, width, batch, p, scale_y, scale_x, elem, local_ensemble)
            <= budget
        ):
            lo = mid
        else:
            hi = mid - 1
    return lo


# Transient memory per tile when no bound is given. On the CPU tiles this size keep their
# temporaries below glibc's mmap threshold, so they are recycled from the heap instead of being
# page-faulted afresh for every tile (bigger tiles are slower there); GPUs prefer big tiles.
DEFAULT_RENDER_BUDGET = 128 << 20
DEFAULT_RENDER_BUDGET_CUDA = 1 << 30


def preferred_tile_budget(device: torch.device | str) -> int:
    """Transient bytes per tile that render fastest on ``device`` (see DEFAULT_RENDER_BUDGET)."""
    return (
        DEFAULT_RENDER_BUDGET_CUDA if torch.device(device).type == "cuda" else DEFAULT_RENDER_BUDGET
    )


def tile_shape(
    H: int,
    W: int,
    batch: int,
    p: int,
    scale_y: float,
    scale_x: float,
    elem: int,
    local_ensemble: bool,
    device: torch.device | str,
    max_pixels: int | None = None,
    max_memory: int | None = None,
) -> tuple[int, int]:
    """(rows, cols) of the tiles of an H x W output. ``max_pixels`` bounds the pixels per tile,
    ``max_memory`` (bytes) the estimated transient memory per tile
    (:func:`preferred_tile_budget` of ``device`` when neither is given)."""
    args = (batch, p, scale_y, scale_x, elem)
    if max_pixels is None and max_memory is None:
        max_memory = preferred_tile_budget(device)
    cols = W
    if max_pixels is not None:
        cols = min(W, max(1, int(max_pixels)))
    if max_memory is not None:
        while cols > 1 and estimate_tile_bytes(1, cols, *args, local_ensemble) > max_memory:
            cols = (cols + 1) // 2
    rows = H
    if max_pixels is not None:
        rows = min(rows, max(1, int(max_pixels) // cols))
    if max_memory is not None:
        rows = min(rows, rows_per_tile(H, cols, *args, max_memory, local_ensemble))
    return max(1, rows), max(1, cols)
