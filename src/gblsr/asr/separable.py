"""The exact separable renderer of GB-LSR-ASR on regular grids (an accelerator).

:mod:`gblsr.asr.decoder` states the method point by point. On a rectangular grid of output pixel
centres the owning cell row and the vertical offset of a pixel depend only on its output row,
and the column and horizontal offset only on its output column; the ensemble's area weights
factor into a vertical and a horizontal part. So the image is ``Phi_y  C  Phi_x^T`` with
block-sparse, weight-scaled ``Phi``, computed in two passes:

1. horizontal pass: for each cell column n, the (weighted) basis rows of the output columns
   that n owns under either horizontal shift, padded to the longest such run, times the
   ``(l) x (r, k)`` coefficient matrix of that column; the two shifts of each output column
   are then summed;
2. vertical pass: for each cell row r, the weighted basis rows of the output rows that r owns
   times the result of pass 1 for that cell row; the two shifts of each output row are summed.

Both passes are batched matrix products; nothing is gathered per pixel. The factorisation
drops the reference's ``+1e-9`` on each corner area, which matters only within half a cell of
the image border, where an axis's two offsets can both be tiny: those few rows and columns are
rendered again with all four corner images and the reference's per-pixel weights
(:func:`render_window` gives the bound). Without the ensemble there is one corner and no blend.
Which cell owns which row or column is decided by the corner rule of :mod:`gblsr.geometry`,
applied once per axis (:func:`plan_axis`).

Layout
------
``cells``: the coefficient map arranged for this renderer, ``(B, w, p, h, 3, p)`` indexed
``[b, n, l, r, c, k]`` (see :func:`grid_layout`, :func:`project_to_layout`). For one image and
cell column, the coefficients of any band of cell rows form one ``(l) x (r, c, k)`` matrix with
contiguous rows, so the horizontal pass is one GEMM per cell column that reads the coefficients
in place; its result, read as ``(k) x (output column)`` per cell row and colour, feeds the
vertical pass without a copy.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn as nn

from ..geometry import axis_centres, axis_members, corner_weights
from ..models.basis import fourier_basis_1d

__all__ = [
    "WEAK_SUM",
    "LAYOUT_FROM_CHANNELS",
    "grid_layout",
    "project_to_layout",
    "AxisPlan",
    "plan_axis",
    "window_corner_weights",
    "render_window",
]

# Positions whose two ensemble offsets sum (in half-cells) to less than this are rendered with
# the exact four-corner blend; elsewhere AREA_EPS changes the weights by < 1e-7 relative and
# the factorised blend is used (see render_window).
WEAK_SUM = 0.2


def grid_layout(coef: torch.Tensor, p: int) -> torch.Tensor:
    """Coefficient map (B, 3 p^2, h, w) (channel = c p^2 + k p + l) -> cells (B, w, p, h, 3, p)
    indexed [b, n, l, r, c, k]."""
    b, k, h, w = coef.shape
    if k != 3 * p * p:
        raise ValueError(f"coefficient map has {k} channels, expected 3 * {p}^2")
    return coef.view(b, 3, p, p, h, w).permute(*LAYOUT_FROM_CHANNELS).contiguous()


# (b, c, k, l, r, n) -> (b, n, l, r, c, k)
LAYOUT_FROM_CHANNELS = (0, 5, 3, 4, 1, 2)


def project_to_layout(feat: torch.Tensor, proj: nn.Conv2d, p: int) -> torch.Tensor:
    """Features (B, D, h, w) -> the 1x1 projection ``proj`` (3 p^2 output channels) in the grid
    layout (B, w, p, h, 3, p), equal to ``grid_layout(proj(feat), p)``.

    Computed as one GEMM per band of feature rows whose output rows (pixels, ordered
    column-major) already hold each cell's coefficients in the layout's order, so filling the
    layout moves contiguous runs of 3 p floats rather than transposing the whole map. Without
    autograd the bands are written straight into the layout: the peak is one coefficient map
    (12x the features at p_max = 16), not two.
    """
    b, d, h, w = feat.shape
    weight = proj.weight.view(3, p, p, d)  # [c, k, l, d]
    # (d, (l, c, k)) and ((l, c, k),): columns in the order the layout stores them.
    w_t = weight.permute(3, 2, 0, 1).reshape(d, 3 * p * p)
    bias = proj.bias.view(3, p, p).permute(2, 0, 1).reshape(-1)

    def pixels(bi: int, r0: int, r1: int) -> torch.Tensor:
        # Features of a band of rows, one row per pixel in (column, row) order: (w rr, d).
        x = feat[bi, :, r0:r1].permute(2, 1, 0).reshape(w * (r1 - r0), d)
        return x.to(w_t.dtype)

    needs_grad = torch.is_grad_enabled() and (
        feat.requires_grad or any(t.requires_grad for t in proj.parameters())
    )
    if needs_grad:
        return torch.stack(
            [
                torch.addmm(bias, pixels(bi, 0, h), w_t).view(w, h, p, 3 * p).transpose(1, 2)
                for bi in range(b)
            ]
        ).reshape(b, w, p, h, 3, p)
    cells = feat.new_empty(b, w, p, h, 3, p, dtype=w_t.dtype)
    # Bands of ~16 MiB of float32 coefficients, computed into one reused buffer (fresh large
    # buffers cost a page fault per 4 KiB on every use).
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
    return cells


@dataclass
class AxisPlan:
    """How one axis of an output window is rendered by the cells of one feature axis.

    S = 2 ensemble shifts (-, +) with the local ensemble, else 1; L = window length.
      cell:   (S, L) int64 owning cell per shift and output position
      rel:    (S, L) offset from the owning cell centre, in half-cells (geometry dtype)
      first:  lowest owning cell; count: cells spanned (first .. first + count - 1)
      depth:  most positions (over all shifts) owned by one cell
      flat:   (S * L,) int64 position of each (shift, output position) in the padded
              (count * depth) layout: (cell - first) * depth + rank within the cell
    """

    cell: torch.Tensor
    rel: torch.Tensor
    first: int
    count: int
    depth: int
    flat: torch.Tensor
    # Where the plan came from (for sub-plans), and the runs (offset, length) of positions whose
    # two ensemble offsets sum to less than WEAK_SUM (see render_window).
    n_out: int = 0
    n_cells: int = 0
    start: int = 0
    local_ensemble: bool = True
    vertical: bool = True
    weak_runs: tuple[tuple[int, int], ...] = ()

    def sub(self, offset: int, length: int) -> AxisPlan:
        """The plan of positions ``offset .. offset + length - 1`` of this window."""
        return plan_axis(
            self.n_out,
            self.n_cells,
            self.start + offset,
            length,
            self.local_ensemble,
            self.vertical,
            self.rel.dtype,
            self.rel.device,
        )

    def ensemble_factors(self) -> torch.Tensor:
        """(2, L) factor of each shift in the blend weights, |offset of the other shift| over
        the sum of both (the corner areas factor into a vertical and a horizontal part)."""
        mag = self.rel.abs()
        total = (mag[0] + mag[1]).clamp_min(WEAK_SUM)
        return torch.stack([mag[1] / total, mag[0] / total])

    @property
    def shifts(self) -> int:
        return int(self.cell.shape[0])

    @property
    def length(self) -> int:
        return int(self.cell.shape[1])

    def basis_padded(
        self,
        p: int,
        s_e: torch.Tensor,
        dtype: torch.dtype,
        scale: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(count, depth, p) basis rows in the padded layout; padding rows are zero. ``scale``
        (S, L) multiplies each row."""
        phi = fourier_basis_1d(self.rel, p, s_e)
        if scale is not None:
            phi = phi * scale.unsqueeze(-1)
        phi = phi.reshape(-1, p).to(dtype)
        padded = phi.new_zeros(self.count * self.depth, p)
        padded = padded.index_copy(0, self.flat, phi)
        return padded.view(self.count, self.depth, p)


def _eager_only(fn):
    """Keep torch.compile out of planning (Python-side bookkeeping with host syncs): under
    compilation the function is called eagerly between graphs."""
    disable = getattr(getattr(torch, "compiler", None), "disable", None)
    return disable(fn) if disable is not None else fn


@_eager_only
def plan_axis(
    n_out: int,
    n_cells: int,
    start: int,
    length: int,
    local_ensemble: bool,
    vertical: bool,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> AxisPlan:
    """Plan positions ``start .. start + length - 1`` of an output axis of ``n_out`` pixels over
    ``n_cells`` feature cells (pixel centres as in :func:`make_coord`)."""
    if not (0 <= start and length >= 1 and start + length <= n_out):
        raise ValueError(f"window [{start}, {start + length}) is not inside [0, {n_out})")
    dev = torch.device(device) if device is not None else torch.device("cpu")
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    return _plan_axis_cached(
        int(n_out),
        int(n_cells),
        int(start),
        int(length),
        bool(local_ensemble),
        bool(vertical),
        dtype,
        dev,
    )


@functools.lru_cache(maxsize=64)
def _plan_axis_cached(
    n_out: int,
    n_cells: int,
    start: int,
    length: int,
    local_ensemble: bool,
    vertical: bool,
    dtype: torch.dtype,
    device: torch.device,
) -> AxisPlan:
    # Plans depend only on sizes, so repeated renders (tiles of equal width, a latency loop, a
    # captured CUDA graph) reuse them and issue no host synchronisation after the first time.
    out_c = axis_centres(n_out, dtype, device)[start : start + length]
    # The corner rule of gblsr.geometry, once per axis: on a grid, a pixel's owning cell row and
    # vertical offset depend on its row only (and likewise for columns).
    cells, rels = axis_members(out_c, n_cells, local_ensemble, vertical)
    cell = torch.stack(cells)
    rel = torch.stack(rels)

    flat_cells = cell.reshape(-1)
    first = int(flat_cells.min())
    count = int(flat_cells.max()) - first + 1
    local = flat_cells - first
    counts = torch.bincount(local, minlength=count)
    depth = int(counts.max())
    # Rank of each entry among the entries of its cell (stable order).
    order = torch.argsort(local, stable=True)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel(), device=order.device)
    starts = torch.cumsum(counts, 0) - counts
    slot = rank - starts[local]
    weak: list[tuple[int, int]] = []
    if local_ensemble:
        flags = ((rel[0].abs() + rel[1].abs()) < WEAK_SUM).tolist()
        i = 0
        while i < length:
            if flags[i]:
                j = i
                while j < length and flags[j]:
                    j += 1
                weak.append((i, j - i))
                i = j
            else:
                i += 1
    return AxisPlan(
        cell,
        rel,
        first,
        count,
        depth,
        local * depth + slot,
        n_out,
        n_cells,
        start,
        local_ensemble,
        vertical,
        tuple(weak),
    )


def window_corner_weights(plan_y: AxisPlan, plan_x: AxisPlan) -> list[torch.Tensor]:
    """The corner rule's blend weights over a window: four (Ly, Lx) in corner order."""
    return corner_weights(
        [r.unsqueeze(1) for r in plan_y.rel], [r.unsqueeze(0) for r in plan_x.rel]
    )


def render_window(
    cells: torch.Tensor,
    s_e: torch.Tensor,
    plan_y: AxisPlan,
    plan_x: AxisPlan,
    local_ensemble: bool,
) -> torch.Tensor:
    """Render one rectangular window of a regular output grid.

    cells:  (B, w, p, h, 3, p) from :func:`grid_layout`
    s_e:    0-d bandwidth
    plan_y, plan_x: plans of the window's rows and columns (:func:`plan_axis`)
    returns: (B, 3, Ly, Lx) in cells' dtype

    With the local ensemble, corner (a, b) is weighted by ``(|dy_a'| |dx_b'| + 1e-9) / total``.
    Without the 1e-9 this is ``u_a(row) * v_b(column)``, so the weights are folded into the
    bases and the two corners of each axis are summed right after that axis's pass. The 1e-9
    then changes a weight by at most 1e-9 / (Y X), where Y and X are the sums of the two offsets
    on each axis: exactly 2 between the outermost cell centres, smaller only within half a cell
    of the image border. Rows with Y < 0.2 and columns with X < 0.2 (a few at most, often none)
    are rendered again with the exact four-corner blend; elsewhere the factorised weights differ
    from the exact ones by less than 1e-7 relative. Without the ensemble the single corner's
    weight is exactly 1 and there is nothing to blend.
    """
    b, w, p, h, _, _ = cells.shape
    dtype = cells.dtype
    sy, ly = plan_y.shifts, plan_y.length
    sx, lx = plan_x.shifts, plan_x.length
    ry, cx = plan_y.count, plan_x.count
    m = ry * 3 * p

    fac_x = plan_x.ensemble_factors() if local_ensemble else None
    fac_y = plan_y.ensemble_factors() if local_ensemble else None
    phi_x = plan_x.basis_padded(p, s_e, dtype, fac_x)  # (cx, dx, p_l)
    phi_y = plan_y.basis_padded(p, s_e, dtype, fac_y)  # (ry, dy, p_k)
    phi_y = phi_y.repeat_interleave(3, dim=0)  # (ry * 3, dy, p_k): one batch per (row, colour)
    fx, fy = plan_x.flat.view(sx, lx), plan_y.flat.view(sy, ly)

    images = []
    for bi in range(b):
        # The cells the window touches, one (p_l) x (r, c, k) matrix per cell column.
        block = cells[
            bi, plan_x.first : plan_x.first + cx, :, plan_y.first : plan_y.first + ry
        ].reshape(cx, p, m)
        # 1. Horizontal pass, one GEMM per cell column; then the output columns, each the sum
        #    of its (weighted) ensemble shifts: (Lx, ry, 3, p_k).
        t1 = torch.bmm(phi_x, block).view(cx * plan_x.depth, m)
        cols = t1.index_select(0, fx[0])
        for k in range(1, sx):
            cols += t1.index_select(0, fx[k])
        del t1
        # 2. Vertical pass, one GEMM per (cell row, colour), reading cols transposed in place.
        t2 = torch.bmm(phi_y, cols.view(lx, ry * 3, p).permute(1, 2, 0))  # (ry 3, dy, Lx)
        del cols
        t2 = t2.view(ry, 3, plan_y.depth, lx).transpose(0, 1).reshape(3, ry * plan_y.depth, lx)
        img = t2.index_select(1, fy[0])
        for k in range(1, sy):
            img += t2.index_select(1, fy[k])
        del t2
        images.append(img)
    out = torch.stack(images)  # (B, 3, Ly, Lx)

    # Exact blend where an axis's two offsets are small (see above).
    for off, n in plan_y.weak_runs:
        fix = _render_exact(cells, s_e, plan_y.sub(off, n), plan_x)
        out = torch.cat([out[:, :, :off], fix, out[:, :, off + n :]], dim=2)
    for off, n in plan_x.weak_runs:
        fix = _render_exact(cells, s_e, plan_y, plan_x.sub(off, n))
        out = torch.cat([out[..., :off], fix, out[..., off + n :]], dim=3)
    return out


def _render_exact(
    cells: torch.Tensor, s_e: torch.Tensor, plan_y: AxisPlan, plan_x: AxisPlan
) -> torch.Tensor:
    """Local-ensemble rendering of a window that computes all four corner images and blends
    them with the reference's weights pixel by pixel: (B, 3, Ly, Lx)."""
    b, w, p, h, _, _ = cells.shape
    dtype = cells.dtype
    ly, lx = plan_y.length, plan_x.length
    ry, cx = plan_y.count, plan_x.count
    n1, m = cx * plan_x.depth, ry * 3 * p
    phi_x = plan_x.basis_padded(p, s_e, dtype)
    phi_y = plan_y.basis_padded(p, s_e, dtype).repeat_interleave(3, dim=0)
    weights = [wt.to(dtype) for wt in window_corner_weights(plan_y, plan_x)]
    images = []
    for bi in range(b):
        block = cells[
            bi, plan_x.first : plan_x.first + cx, :, plan_y.first : plan_y.first + ry
        ].reshape(cx, p, m)
        t1 = torch.bmm(phi_x, block).view(n1, ry * 3, p).permute(1, 2, 0)  # (ry 3, p, n1)
        t2 = torch.bmm(phi_y, t1).view(ry, 3, plan_y.depth, n1)
        t2 = t2.transpose(0, 1).reshape(3, ry * plan_y.depth, n1)
        z = t2.index_select(1, plan_y.flat).index_select(2, plan_x.flat)
        z = z.view(3, 2, ly, 2, lx)
        out = z[:, 0, :, 0] * weights[0]
        for k in range(1, 4):
            out = out + z[:, k // 2, :, k % 2] * weights[k]
        images.append(out)
    return torch.stack(images)
