"""GB-LSR decoder for arbitrary-scale SR: one coefficient block per feature cell, one bandwidth.

Each cell of the (h, w) feature map carries ``3 x p_max x p_max`` Fourier coefficients (a 1x1
conv of the features). A query point is rendered by the cell that owns it: its offset from the
cell centre, scaled so the cell spans [-1, 1], is fed to the separable Fourier basis of
:mod:`gblsr.models.basis` with the global bandwidth ``s_e = softplus(log_s_e)``, and the basis
is contracted with the cell's coefficients. With the local ensemble, the four cells around the
point (LIIF's corner shifts) each render it and the results are blended by the areas of the
opposite rectangles.

Rendering rules that decide the last bits (shared with LIIF and LTE):
  * corner shifts are +-(1/h, 1/w) plus 1e-6 on both axes (breaks nearest-cell ties at odd
    scales), the shifted point is clamped to +-(1 - 1e-6), and the owning cell is the nearest
    centre as ``grid_sample(mode="nearest", align_corners=False)`` picks it;
  * the offset uses the unshifted point, scaled by (h, w);
  * blend weight = |dy * dx| + 1e-9 of the diagonally opposite corner, over the sum of all four.

Two ways to render, both equal to the reference to ~3e-7 relative:
  * :meth:`GBLSRScalarASRDecoder.forward` / :meth:`~GBLSRScalarASRDecoder.query`: arbitrary
    points (training); the owning cells come from a one-channel map of cell numbers and the
    coefficient rows are gathered by index, not by a 3 p^2-channel ``grid_sample``;
  * :meth:`GBLSRScalarASRDecoder.encode` -> :class:`~gblsr.asr.render.ASRRepresentation`:
    regular output grids of any size (inference), with the separable renderer of
    :mod:`gblsr.asr.render`.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..geometry import axis_centres
from ..models.basis import fourier_basis_1d
from ..registry import register
from .render import ASRRepresentation, nearest_cells_1d

__all__ = [
    "GBLSRScalarASRDecoder",
    "CORNER_EPS",
    "corner_offsets",
    "owning_cells",
    "contract_cells",
]

_CLAMP = 1.0 - 1e-6


def corner_offsets(h: int, w: int, local_ensemble: bool) -> list[tuple[float, float]]:
    """(dy, dx) shifts of the query point, one per corner, in the reference's corner order
    (-,-), (-,+), (+,-), (+,+); the tie-breaking epsilon is added on top (see :data:`CORNER_EPS`).
    """
    if not local_ensemble:
        return [(0.0, 0.0)]
    return [(vy / h, vx / w) for vy in (-1, 1) for vx in (-1, 1)]


# Added to both axes of every shifted point: at odd integer scales some query points sit exactly
# half-way between two cell centres, and this decides the tie the way LIIF does.
CORNER_EPS = 1e-6


def owning_cells(coord: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Flat index (row * w + col) of the cell that owns each point, chosen exactly as
    ``grid_sample(mode='nearest', align_corners=False)`` would choose it.

    coord: (B, Q, 2) (y, x) in [-1, 1] (already shifted and clamped).
    returns: (B, Q) int64 in [0, h * w).
    """
    b = coord.shape[0]
    # Sampling a one-channel map of cell numbers reproduces the kernel's rounding (round half
    # to even after its own unnormalisation) bit for bit, at 1/(3 p_max^2) of the cost of
    # sampling the coefficients themselves. float32 holds the numbers exactly up to 2^24 cells.
    idx_dtype = torch.float64 if coord.dtype == torch.float64 else torch.float32
    numbers = torch.arange(h * w, device=coord.device, dtype=idx_dtype).view(1, 1, h, w)
    grid = coord.to(idx_dtype).flip(-1).unsqueeze(1)  # (B, 1, Q, 2) in (x, y)
    picked = F.grid_sample(numbers.expand(b, 1, h, w), grid, mode="nearest", align_corners=False)
    return picked[:, 0, 0, :].long()


def contract_cells(coef: torch.Tensor, phi_y: torch.Tensor, phi_x: torch.Tensor) -> torch.Tensor:
    """sum_ij coef[..., c, i, j] * phi_y[..., i] * phi_x[..., j].

    coef: (..., 3, p, p); phi_y, phi_x: (..., p). returns (..., 3).
    """
    inner = coef @ phi_x.unsqueeze(-2).unsqueeze(-1)  # (..., 3, p, 1)
    return (phi_y.unsqueeze(-2).unsqueeze(-2) @ inner)[..., 0, 0]


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
        """(B, D, h, w) -> (B, 3 * p_max^2, h, w) coefficient map."""
        return self.coeff_proj(feat)

    def encode(
        self, feat: torch.Tensor, input_size: tuple[int, int] | None = None
    ) -> ASRRepresentation:
        """Features (B, D, h, w) -> an :class:`ASRRepresentation` that renders any size.

        The 1x1 projection is computed as one GEMM per band of feature rows whose output rows
        (pixels, ordered column-major) already hold each cell's coefficients in the rendering
        layout's order, so filling the layout moves contiguous runs of 3 p floats rather than
        transposing the whole map. Without autograd the bands are written straight into the
        layout: the peak is one coefficient map (12x the features at p_max = 16), not two.
        """
        p = self.p_max
        b, d, h, w = feat.shape
        weight = self.coeff_proj.weight.view(3, p, p, d)  # [c, k, l, d]
        # (d, (l, c, k)) and ((l, c, k),): columns in the order the layout stores them.
        w_t = weight.permute(3, 2, 0, 1).reshape(d, 3 * p * p)
        bias = self.coeff_proj.bias.view(3, p, p).permute(2, 0, 1).reshape(-1)

        def pixels(bi: int, r0: int, r1: int) -> torch.Tensor:
            # Features of a band of rows, one row per pixel in (column, row) order: (w rr, d).
            x = feat[bi, :, r0:r1].permute(2, 1, 0).reshape(w * (r1 - r0), d)
            return x.to(w_t.dtype)

        needs_grad = torch.is_grad_enabled() and (
            feat.requires_grad or any(t.requires_grad for t in self.coeff_proj.parameters())
        )
        if needs_grad:
            cells = torch.stack(
                [
                    torch.addmm(bias, pixels(bi, 0, h), w_t).view(w, h, p, 3 * p).transpose(1, 2)
                    for bi in range(b)
                ]
            ).reshape(b, w, p, h, 3, p)
        else:
            cells = feat.new_empty(b, w, p, h, 3, p, dtype=w_t.dtype)
            # Bands of ~16 MiB of float32 coefficients, computed into one reused buffer (fresh
            # large buffers cost a page fault per 4 KiB on every use).
            rows = max(1, (4 << 20) // max(1, 3 * p * p * w))
            buf = None
            for bi in range(b):
                for r0 in range(0, h, rows):
                    r1 = min(h, r0 + rows)
                    x = pixels(bi, r0, r1)
                    if buf is None:
                        buf = x.new_empty(w * rows, 3 * p * p)
                    coef = torch.mm(x, w_t, out=buf[: x.shape[0]])
                    # Bias added on the way into the layout: runs of 3 p floats per cell.
                    torch.add(
                        coef.view(w, r1 - r0, p, 3 * p).transpose(1, 2),
                        bias.view(p, 1, 3 * p),
                        out=cells[bi, :, :, r0:r1].view(w, p, r1 - r0, 3 * p),
                    )
            del buf
        return ASRRepresentation(cells, self.bandwidth(), self.local_ensemble, input_size or (h, w))

    def query(self, coef: torch.Tensor, coord: torch.Tensor) -> torch.Tensor:
        """Render arbitrary points from a coefficient map.

        coef: (B, 3 p^2, h, w); coord: (B, Q, 2) (y, x). returns (B, Q, 3).
        """
        b, k, h, w = coef.shape
        p = self.p_max
        s_e = self.bandwidth().to(coef.dtype)
        # Rows of this table are gathered by index; no per-query interpolation kernel.
        table = coef.permute(0, 2, 3, 1).reshape(b * h * w, k)
        centre_y = axis_centres(h, coord.dtype, coord.device)
        centre_x = axis_centres(w, coord.dtype, coord.device)
        batch_base = (torch.arange(b, device=coord.device) * (h * w)).view(b, 1)

        eps = CORNER_EPS if self.local_ensemble else 0.0
        shifts = (-1, 1) if self.local_ensemble else (0,)
        # Each axis has only two distinct shifts; corner (a, b) pairs row shift a with column
        # shift b. The nearest cell along each axis is grid_sample's choice (see nearest_cells_1d).
        rows, rels_y, phis_y, cols, rels_x, phis_x = [], [], [], [], [], []
        for v in shifts:
            y = (coord[..., 0] + v / h + eps).clamp_(-_CLAMP, _CLAMP)
            r = nearest_cells_1d(y.reshape(-1), h, vertical=True).view(b, -1)
            rows.append(r)
            rels_y.append((coord[..., 0] - centre_y[r]) * h)
            phis_y.append(fourier_basis_1d(rels_y[-1], p, s_e))
            x = (coord[..., 1] + v / w + eps).clamp_(-_CLAMP, _CLAMP)
            n = nearest_cells_1d(x.reshape(-1), w, vertical=False).view(b, -1)
            cols.append(n)
            rels_x.append((coord[..., 1] - centre_x[n]) * w)
            phis_x.append(fourier_basis_1d(rels_x[-1], p, s_e))

        preds, areas = [], []
        for a in range(len(shifts)):
            for c in range(len(shifts)):
                cell = batch_base + rows[a] * w + cols[c]
                # One corner at a time bounds the gathered rows to Q x 3 p^2 floats.
                cell_coef = table.index_select(0, cell.reshape(-1)).view(b, -1, 3, p, p)
                preds.append(contract_cells(cell_coef, phis_y[a], phis_x[c]))
                areas.append(torch.abs(rels_y[a] * rels_x[c]) + 1e-9)

        if len(preds) == 1:
            return preds[0]  # its weight is area / area == 1
        # Each corner is weighted by the area of the rectangle spanned to the opposite corner.
        areas = areas[::-1]
        total = areas[0] + areas[1] + areas[2] + areas[3]
        out = 0
        for pred, area in zip(preds, areas):
            out = out + pred * (area / total).unsqueeze(-1)
        return out

    def forward(
        self, feat: torch.Tensor, coord: torch.Tensor, cell: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.query(self.coefficients(feat), coord)
