"""Rendering GB-LSR-ASR coefficient maps (compatibility module).

The method is stated in :mod:`gblsr.asr.decoder` (per point, and :class:`ASRRepresentation`),
the exact separable grid renderer lives in :mod:`gblsr.asr.separable`, tiling in
:mod:`gblsr.asr.tiling` and the corner rule in :mod:`gblsr.geometry`. This module re-exports
their names under the paths earlier releases used.
"""

from ..geometry import AREA_EPS, CLAMP, CORNER_EPS, geometry_dtype, nearest_cells_1d
from .decoder import ASRRepresentation, query_cells
from .separable import (
    WEAK_SUM,
    AxisPlan,
    grid_layout,
    plan_axis,
    render_window,
)
from .separable import window_corner_weights as corner_weights
from .tiling import (
    DEFAULT_RENDER_BUDGET,
    DEFAULT_RENDER_BUDGET_CUDA,
    estimate_tile_bytes,
    preferred_tile_budget,
    rows_per_tile,
)

__all__ = [
    "CLAMP",
    "CORNER_EPS",
    "AREA_EPS",
    "WEAK_SUM",
    "geometry_dtype",
    "grid_layout",
    "nearest_cells_1d",
    "AxisPlan",
    "plan_axis",
    "corner_weights",
    "render_window",
    "query_cells",
    "estimate_tile_bytes",
    "preferred_tile_budget",
    "rows_per_tile",
    "ASRRepresentation",
    "DEFAULT_RENDER_BUDGET",
    "DEFAULT_RENDER_BUDGET_CUDA",
]
