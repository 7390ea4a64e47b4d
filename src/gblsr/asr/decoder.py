"""GB-LSR-ASR: the arbitrary-scale GB-LSR decoder, stated point by point.

Each cell of the (h, w) feature map carries ``3 x p_max x p_max`` Fourier coefficients
``C[c, k, l]`` (colour c, vertical mode k, horizontal mode l), a 1x1 conv of the features. A
point (y, x) in [-1, 1]^2 is rendered by the cell that owns it::

    rgb[c] = sum_kl C[c, k, l] * phi(dy)[k] * phi(dx)[l]

where (dy, dx) is the point's offset from the cell centre scaled so the cell spans [-1, 1] and
phi the separable 1-D Fourier basis of :mod:`gblsr.models.basis` with the global bandwidth
``s_e = softplus(log_s_e)``. With the local ensemble the four cells around the point each
render it and the results are blended by area weights: LIIF's corner rule, written once in
:mod:`gblsr.geometry` (shifts +-(1/h, 1/w) + 1e-6, clamp, nearest centre as grid_sample picks
it, offsets of the unshifted point, opposite-corner areas + 1e-9).

:func:`render_points` is that statement in code (training, arbitrary points). Regular output
grids (inference) are rendered with the exact separable accelerator of
:mod:`gblsr.asr.separable`, tiled by :mod:`gblsr.asr.tiling`; both agree with the reference to
~3e-7 relative. :class:`ASRRepresentation` is the encoded image that does either.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..geometry import (
    CORNER_EPS,
    axis_members,
    blend,
    corner_weights,
    geometry_dtype,
    nearest_cells_1d,
)
from ..models.basis import fourier_basis_1d
from ..registry import register
from ..representation import Representation, check_window
from .separable import plan_axis, project_to_layout, render_window
from .tiling import estimate_tile_bytes, tile_shape

__all__ = [
    "GBLSRScalarASRDecoder",
    "ASRRepresentation",
    "CORNER_EPS",
    "corner_offsets",
    "owning_cells",
    "contract_cells",
    "render_points",
]


def contract_cells(coef: torch.Tensor, phi_y: torch.Tensor, phi_x: torch.Tensor) -> torch.Tensor:
    """sum_kl coef[..., c, k, l] * phi_y[..., k] * phi_x[..., l].

    coef: (..., 3, p, p); phi_y, phi_x: (..., p). returns (..., 3).
    """
    inner = coef @ phi_x.unsqueeze(-2).unsqueeze(-1)  # (..., 3, p, 1)
    return (phi_y.unsqueeze(-2).unsqueeze(-2) @ inner)[..., 0, 0]


def render_points(
    coef_at: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    s_e: torch.Tensor,
    coord: torch.Tensor,
    h: int,
    w: int,
    p: int,
    local_ensemble: bool,
) -> torch.Tensor:
    """GB-LSR-ASR at arbitrary points.

    coef_at(rows, cols): (B, Q) int64 cell rows and columns -> their blocks (B, Q, 3, p, p)
    s_e:   0-d bandwidth
    coord: (B, Q, 2) (y, x) in [-1, 1] on an (h, w) cell grid
    returns: (B, Q, 3), unclamped
    """
    rows, rels_y = axis_members(coord[..., 0], h, local_ensemble, vertical=True)
    cols, rels_x = axis_members(coord[..., 1], w, local_ensemble, vertical=False)
    s_e = s_e.to(coord.dtype)
    # Each axis has only two shifts: the bases are computed per axis, not per corner.
    phis_y = [fourier_basis_1d(r, p, s_e) for r in rels_y]
    phis_x = [fourier_basis_1d(r, p, s_e) for r in rels_x]
    preds = []
    for row, phi_y in zip(rows, phis_y):
        for col, phi_x in zip(cols, phis_x):
            # One corner at a time bounds the gathered blocks to Q x 3 p^2 values.
            coef = coef_at(row, col)
            preds.append(contract_cells(coef, phi_y.to(coef.dtype), phi_x.to(coef.dtype)))
    return blend(preds, corner_weights(rels_y, rels_x))


def corner_offsets(h: int, w: int, local_ensemble: bool) -> list[tuple[float, float]]:
    """(dy, dx) shifts of the query point, one per corner, in corner order (-,-), (-,+), (+,-),
    (+,+); the tie-breaking :data:`CORNER_EPS` is added on top (see :mod:`gblsr.geometry`)."""
    if not local_ensemble:
        return [(0.0, 0.0)]
    return [(vy / h, vx / w) for vy in (-1, 1) for vx in (-1, 1)]


def owning_cells(coord: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Flat index (row * w + col) of the cell that owns each point, chosen exactly as
    ``grid_sample(mode='nearest', align_corners=False)`` would choose it.

    coord: (B, Q, 2) (y, x) in [-1, 1] (already shifted and clamped).
    returns: (B, Q) int64 in [0, h * w).
    """
    b = coord.shape[0]
    rows = nearest_cells_1d(coord[..., 0].reshape(-1), h, vertical=True).view(b, -1)
    cols = nearest_cells_1d(coord[..., 1].reshape(-1), w, vertical=False).view(b, -1)
    return rows * w + cols


@register("decoder", "gblsr")
class GBLSRScalarASRDecoder(nn.Module):
    """(feat (B, D, h, w), coord (B, Q, 2), cell) -> RGB (B, Q, 3), unclamped.

    ``cell`` is accepted for interface compatibility with LIIF/LTE and not used: the basis
    renders a continuous function, so the query density alone sets the scale.
    """

    def __init__(
        self,
        in_dim: int,
        p_max: int = 16,
        bandwidth_init: float = 1.0,
        local_ensemble: bool = True,
    ):
        super().__init__()
        if p_max < 1:
            raise ValueError(f"p_max must be >= 1 (got {p_max})")
        if not bandwidth_init > 0:
            raise ValueError(f"bandwidth_init must be positive (got {bandwidth_init})")
        self.in_dim = in_dim
        self.p_max = p_max
        self.bandwidth_init = float(bandwidth_init)
        self.local_ensemble = local_ensemble
        self.coeff_proj = nn.Conv2d(in_dim, 3 * p_max * p_max, kernel_size=1)
        nn.init.normal_(self.coeff_proj.weight, std=0.01)
        nn.init.zeros_(self.coeff_proj.bias)
        # softplus^-1(b) = log(expm1(b)), so bandwidth() starts at exactly bandwidth_init.
        self.log_s_e = nn.Parameter(torch.tensor(math.log(math.expm1(bandwidth_init))))

    def get_config(self) -> dict:
        return {
            "p_max": self.p_max,
            "bandwidth_init": self.bandwidth_init,
            "local_ensemble": self.local_ensemble,
        }

    def bandwidth(self) -> torch.Tensor:
        """The global bandwidth s_e (0-d, positive)."""
        return F.softplus(self.log_s_e)

    def coefficients(self, feat: torch.Tensor) -> torch.Tensor:
        """(B, D, h, w) -> (B, 3 * p_max^2, h, w) coefficient map (channel c p^2 + k p + l)."""
        return self.coeff_proj(feat)

    def query(self, coef: torch.Tensor, coord: torch.Tensor) -> torch.Tensor:
        """Render arbitrary points from a coefficient map.

        coef: (B, 3 p^2, h, w); coord: (B, Q, 2) (y, x). returns (B, Q, 3).
        """
        b, k, h, w = coef.shape
        p = self.p_max
        # Blocks are gathered by index from a table of rows, one row per cell.
        table = coef.permute(0, 2, 3, 1).reshape(b * h * w, k)
        base = (torch.arange(b, device=coord.device) * (h * w)).view(b, 1)

        def coef_at(rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
            flat = (base + rows * w + cols).reshape(-1)
            return table.index_select(0, flat).view(b, -1, 3, p, p)

        return render_points(coef_at, self.bandwidth(), coord, h, w, p, self.local_ensemble)

    def forward(
        self, feat: torch.Tensor, coord: torch.Tensor, cell: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.query(self.coefficients(feat), coord)

    def encode(
        self, feat: torch.Tensor, input_size: tuple[int, int] | None = None
    ) -> ASRRepresentation:
        """Features (B, D, h, w) -> an :class:`ASRRepresentation` that renders any size."""
        cells = project_to_layout(feat, self.coeff_proj, self.p_max)
        h, w = feat.shape[-2:]
        return ASRRepresentation(cells, self.bandwidth(), self.local_ensemble, input_size or (h, w))


class ASRRepresentation(Representation):
    """An encoded image: everything needed to render it at any size, any number of times.

    Built by :meth:`GBLSRScalarASR.encode` / :meth:`GBLSRScalarASRDecoder.encode`.

    cells:          (B, w, p, h, 3, p) coefficients in the separable renderer's layout
                    (:func:`gblsr.asr.separable.grid_layout`)
    bandwidth:      0-d s_e
    local_ensemble: whether the four-corner ensemble is used
    input_size:     (H_in, W_in) of the encoded image, if known (the encoder keeps the size, so
                    it equals the feature size for RDN)
    """

    def __init__(
        self,
        cells: torch.Tensor,
        bandwidth: torch.Tensor,
        local_ensemble: bool,
        input_size: tuple[int, int] | None = None,
    ):
        if cells.dim() != 6 or cells.shape[4] != 3 or cells.shape[2] != cells.shape[5]:
            raise ValueError(f"cells must be (B, w, p, h, 3, p), got {tuple(cells.shape)}")
        self.cells = cells
        self.bandwidth = bandwidth
        self.local_ensemble = bool(local_ensemble)
        self.input_size = tuple(input_size) if input_size is not None else self.feature_size

    @property
    def feature_size(self) -> tuple[int, int]:
        return int(self.cells.shape[3]), int(self.cells.shape[1])

    @property
    def p_max(self) -> int:
        return int(self.cells.shape[2])

    @property
    def batch_size(self) -> int:
        return int(self.cells.shape[0])

    @property
    def dtype(self) -> torch.dtype:
        return self.cells.dtype

    @property
    def device(self) -> torch.device:
        return self.cells.device

    @property
    def nbytes(self) -> int:
        return self.cells.numel() * self.cells.element_size()

    def to(self, *args, **kwargs) -> ASRRepresentation:
        bw = self.bandwidth
        return ASRRepresentation(
            self.cells.to(*args, **kwargs),
            bw.to(*args, **kwargs) if bw.is_floating_point() else bw,
            self.local_ensemble,
            self.input_size,
        )

    def __repr__(self) -> str:
        h, w = self.feature_size
        return (
            f"ASRRepresentation(batch={self.batch_size}, features={h}x{w}, p_max={self.p_max}, "
            f"s_e={float(self.bandwidth):.4g}, local_ensemble={self.local_ensemble}, "
            f"dtype={self.dtype}, device={self.device}, {self.nbytes / 2**20:.1f} MiB)"
        )

    # -- the Representation interface --------------------------------------------------------
    def render_region(self, top, left, height, width, H, W, **options) -> torch.Tensor:
        """Window ``[top, top + height) x [left, left + width)`` of the H x W rendering, in one
        pass of the separable renderer: (B, 3, height, width). Equal to the same pixels of
        :meth:`render` (up to the float rounding of the contraction)."""
        if options:
            raise TypeError(f"GB-LSR-ASR takes no render options (got {sorted(options)})")
        check_window(top, left, height, width, int(H), int(W))
        plan_y = self._plan(int(H), top, height, vertical=True)
        plan_x = self._plan(int(W), left, width, vertical=False)
        return render_window(self.cells, self.bandwidth, plan_y, plan_x, self.local_ensemble)

    def _plan(self, n_out: int, start: int, length: int, vertical: bool):
        h, w = self.feature_size
        return plan_axis(
            n_out,
            h if vertical else w,
            start,
            length,
            self.local_ensemble,
            vertical,
            geometry_dtype(self.dtype),
            self.device,
        )

    def _tile_args(self, H: int, W: int) -> tuple:
        # (batch, p, scale_y, scale_x, element size) as gblsr.asr.tiling takes them.
        h, w = self.feature_size
        return self.batch_size, self.p_max, H / h, W / w, self.cells.element_size()

    def bytes_per_pixel(self, H: int, W: int) -> int:
        """Estimated transient bytes per pixel of a full-width strip of 16 rows."""
        rows = min(int(H), 16)
        est = estimate_tile_bytes(rows, int(W), *self._tile_args(H, W), self.local_ensemble)
        return max(1, -(-est // (rows * int(W))))

    def tile_shape(
        self, H: int, W: int, max_pixels: int | None = None, max_memory: int | None = None
    ) -> tuple[int, int]:
        """(rows, cols) of the tiles :meth:`render` uses for an H x W output (see
        :func:`gblsr.asr.tiling.tile_shape`; default budget: what renders fastest here)."""
        H, W = int(H), int(W)
        check_window(0, 0, H, W, H, W)
        args = self._tile_args(H, W)
        return tile_shape(H, W, *args, self.local_ensemble, self.device, max_pixels, max_memory)

    def query(self, coord: torch.Tensor, cell: torch.Tensor | None = None) -> torch.Tensor:
        """Render arbitrary points: coord (B, Q, 2) (y, x) in [-1, 1] -> (B, Q, 3). ``cell`` is
        not used (the basis is a continuous function)."""
        if coord.dim() != 3 or coord.shape[0] != self.batch_size or coord.shape[-1] != 2:
            raise ValueError(f"coord must be ({self.batch_size}, Q, 2), got {tuple(coord.shape)}")
        return query_cells(self.cells, self.bandwidth, coord, self.local_ensemble)


def query_cells(
    cells: torch.Tensor, s_e: torch.Tensor, coord: torch.Tensor, local_ensemble: bool
) -> torch.Tensor:
    """:func:`render_points` from a coefficient map in the separable layout.

    cells: (B, w, p, h, 3, p); coord: (B, Q, 2) (y, x) in [-1, 1]. returns (B, Q, 3).
    """
    b, w, p, h, _, _ = cells.shape
    bidx = torch.arange(b, device=coord.device).view(b, 1)

    def coef_at(rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        return cells[bidx, cols, :, rows].permute(0, 1, 3, 4, 2)  # [b, q, c, k, l]

    return render_points(coef_at, s_e, coord, h, w, p, local_ensemble)
