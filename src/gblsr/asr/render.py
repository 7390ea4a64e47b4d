"""Rendering GB-LSR coefficient maps: an exact separable grid renderer and a per-point renderer.

A GB-LSR feature cell ``(r, n)`` of an ``h x w`` map holds a block ``C[c, k, l]`` (colour c,
vertical mode k, horizontal mode l). A point is rendered by the cell that owns it as
``sum_kl C[c, k, l] * phi(dy)[k] * phi(dx)[l]``, where (dy, dx) is the point's offset from the
cell centre in half-cell units and phi the 1-D Fourier basis; with the local ensemble, the four
cells around the point (the point shifted by half a cell diagonally) each render it and are
blended by area weights. :mod:`gblsr.asr.decoder` states the exact rules.

Regular grids
-------------
On a rectangular grid of output pixel centres the owning cell row and the vertical offset of a
pixel depend only on its output row, and the column and horizontal offset only on its output
column; the ensemble's area weights factor into a vertical and a horizontal part. So the image
is ``Phi_y  C  Phi_x^T`` with block-sparse, weight-scaled ``Phi``, computed in two passes:

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

Which cell owns which output row or column is decided exactly as the reference decides it per
point: the shifted, clamped coordinate is looked up with ``grid_sample(mode="nearest",
align_corners=False)`` on a map of cell numbers (one map per axis; the kernel rounds each axis
independently, so sampling along one line of the grid reproduces the choice of every point on
it, ties at odd scales included).

Layout
------
``cells``: the coefficient map arranged for the grid renderer, ``(B, w, p, h, 3, p)`` indexed
``[b, n, l, r, c, k]`` (see :func:`grid_layout`). For one image and cell column, the
coefficients of any band of cell rows form one ``(l) x (r, c, k)`` matrix with contiguous rows,
so the horizontal pass is one GEMM per cell column that reads the coefficients in place; its
result, read as ``(k) x (output column)`` per cell row and colour, feeds the vertical pass
without a copy.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..geometry import axis_centres
from ..models.basis import fourier_basis_1d

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
]

# Shifted points are clamped to +-CLAMP before the nearest-cell lookup.
CLAMP = 1.0 - 1e-6
# Added to both axes of every corner-shifted point: decides exact ties at odd scales the way
# LIIF (and the GB-LSR reference) does.
CORNER_EPS = 1e-6
# Added to every corner area before normalising.
AREA_EPS = 1e-9
# Positions whose two ensemble offsets sum (in half-cells) to less than this are rendered with
# the exact four-corner blend; elsewhere AREA_EPS changes the weights by < 1e-7 relative and
# the factorised blend is used (see render_window).
WEAK_SUM = 0.2


def geometry_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype coordinates are computed in: float64 for float64 models, float32 otherwise
    (the reference builds its coordinate grids in float32)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def grid_layout(coef: torch.Tensor, p: int) -> torch.Tensor:
    """Coefficient map (B, 3 p^2, h, w) (channel = c p^2 + k p + l) -> cells (B, w, p, h, 3, p)
    indexed [b, n, l, r, c, k]."""
    b, k, h, w = coef.shape
    if k != 3 * p * p:
        raise ValueError(f"coefficient map has {k} channels, expected 3 * {p}^2")
    return coef.view(b, 3, p, p, h, w).permute(*LAYOUT_FROM_CHANNELS).contiguous()


# (b, c, k, l, r, n) -> (b, n, l, r, c, k)
LAYOUT_FROM_CHANNELS = (0, 5, 3, 4, 1, 2)


def nearest_cells_1d(pos: torch.Tensor, n: int, vertical: bool) -> torch.Tensor:
    """Index of the cell whose centre ``grid_sample(mode='nearest', align_corners=False)`` picks
    for each position on an axis of ``n`` cells.

    pos: (L,) coordinates in [-1, 1] (already shifted and clamped); vertical selects the axis
         (grid_sample's y for rows, x for columns), since the kernel scales each by its own size.
    returns: (L,) int64 in [0, n).
    """
    # A one-line map of cell numbers (exact in float32 up to 2^24 cells); the other coordinate
    # is 0, which lands on the single cell of the map's other axis.
    g = torch.float64 if pos.dtype == torch.float64 else torch.float32
    numbers = torch.arange(n, device=pos.device, dtype=g)
    numbers = numbers.view(1, 1, n, 1) if vertical else numbers.view(1, 1, 1, n)
    pos = pos.to(g)
    other = torch.zeros_like(pos)
    grid = torch.stack([other, pos] if vertical else [pos, other], dim=-1).view(1, 1, -1, 2)
    picked = F.grid_sample(numbers, grid, mode="nearest", align_corners=False)
    return picked.view(-1).long()


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
    cell_c = axis_centres(n_cells, dtype, device)
    if local_ensemble:
        shifts, eps = (-1.0 / n_cells, 1.0 / n_cells), CORNER_EPS
    else:
        shifts, eps = (0.0,), 0.0
    cells, rels = [], []
    for d in shifts:
        # Same operations, in the same order, as the per-point path: (x + shift) + eps, clamp.
        pos = (out_c + d + eps).clamp_(-CLAMP, CLAMP)
        idx = nearest_cells_1d(pos, n_cells, vertical)
        cells.append(idx)
        rels.append((out_c - cell_c[idx]) * n_cells)
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


def corner_weights(plan_y: AxisPlan, plan_x: AxisPlan) -> list[torch.Tensor]:
    """Blend weights of the four corners over a window, (Ly, Lx) each, in corner order
    (-,-), (-,+), (+,-), (+,+) (vertical shift first).

    Corner k is weighted by the area |dy * dx| + 1e-9 of the diagonally opposite corner over the
    sum of all four, with the reference's order of operations.
    """
    areas = [
        torch.abs(plan_y.rel[a].unsqueeze(1) * plan_x.rel[c].unsqueeze(0)) + AREA_EPS
        for a in range(2)
        for c in range(2)
    ]
    areas = areas[::-1]
    total = areas[0] + areas[1] + areas[2] + areas[3]
    return [area / total for area in areas]


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
    weights = [wt.to(dtype) for wt in corner_weights(plan_y, plan_x)]
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


def query_cells(
    cells: torch.Tensor, s_e: torch.Tensor, coord: torch.Tensor, local_ensemble: bool
) -> torch.Tensor:
    """Render arbitrary points from a coefficient map in the grid layout.

    cells: (B, w, p, h, 3, p); coord: (B, Q, 2) (y, x) in [-1, 1]. returns (B, Q, 3).
    """
    b, w, p, h, _, _ = cells.shape
    g = coord.dtype
    centre_y = axis_centres(h, g, coord.device)
    centre_x = axis_centres(w, g, coord.device)
    bidx = torch.arange(b, device=coord.device).view(b, 1)
    if local_ensemble:
        shifts, eps = [(vy / h, vx / w) for vy in (-1, 1) for vx in (-1, 1)], CORNER_EPS
    else:
        shifts, eps = [(0.0, 0.0)], 0.0
    preds, areas = [], []
    for dy, dx in shifts:
        py = (coord[..., 0] + dy + eps).clamp_(-CLAMP, CLAMP)
        px = (coord[..., 1] + dx + eps).clamp_(-CLAMP, CLAMP)
        r = nearest_cells_1d(py.reshape(-1), h, vertical=True).view(b, -1)
        n = nearest_cells_1d(px.reshape(-1), w, vertical=False).view(b, -1)
        rel_y = (coord[..., 0] - centre_y[r]) * h
        rel_x = (coord[..., 1] - centre_x[n]) * w
        blk = cells[bidx, n, :, r]  # (B, Q, p_l, 3, p_k)
        q = blk.shape[1]
        phi_y = fourier_basis_1d(rel_y, p, s_e).to(cells.dtype)
        phi_x = fourier_basis_1d(rel_x, p, s_e).to(cells.dtype)
        t = (phi_x.unsqueeze(-2) @ blk.reshape(b, q, p, 3 * p)).view(b, q, 3, p)
        preds.append((t @ phi_y.unsqueeze(-1)).view(b, q, 3))
        areas.append(torch.abs(rel_y * rel_x) + AREA_EPS)
    if len(preds) == 1:
        return preds[0]
    areas = areas[::-1]
    total = areas[0] + areas[1] + areas[2] + areas[3]
    out = None
    for pred, area in zip(preds, areas):
        term = pred * (area / total).to(pred.dtype).unsqueeze(-1)
        out = term if out is None else out + term
    return out


# ---------------------------------------------------------------------------------------------
# Tiling


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
    """Upper estimate of the transient memory :func:`render_window` needs for a rows x cols
    window: the intermediates of one image's two passes and the result."""
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


class ASRRepresentation:
    """An encoded image: everything needed to render it at any size, any number of times.

    Built by :meth:`GBLSRScalarASR.encode` / :meth:`GBLSRScalarASRDecoder.encode`.

    cells:          (B, w, p, h, 3, p) coefficients in the grid layout (:func:`grid_layout`)
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

    # -- geometry -------------------------------------------------------------------------
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
        return ASRRepresentation(
            self.cells.to(*args, **kwargs),
            self.bandwidth.to(*args, **kwargs)
            if self.bandwidth.is_floating_point()
            else self.bandwidth,
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

    # -- rendering ------------------------------------------------------------------------
    def _plan(self, n_out, start, length, vertical):
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

    def _check_size(self, H: int, W: int) -> tuple[int, int]:
        H, W = int(H), int(W)
        if H < 1 or W < 1:
            raise ValueError(f"output size must be positive, got {H}x{W}")
        return H, W

    def render_region(
        self, top: int, left: int, height: int, width: int, H: int, W: int
    ) -> torch.Tensor:
        """Window ``[top, top + height) x [left, left + width)`` of the H x W rendering, in one
        pass: (B, 3, height, width). Equal to ``render(H, W)[..., top:top+height,
        left:left+width]`` (up to the float rounding of the contraction)."""
        H, W = self._check_size(H, W)
        if not (0 <= top and height >= 1 and top + height <= H):
            raise ValueError(f"rows [{top}, {top + height}) are not inside the {H} output rows")
        if not (0 <= left and width >= 1 and left + width <= W):
            raise ValueError(f"columns [{left}, {left + width}) are not inside the {W} columns")
        plan_x = self._plan(W, left, width, vertical=False)
        plan_y = self._plan(H, top, height, vertical=True)
        return render_window(self.cells, self.bandwidth, plan_y, plan_x, self.local_ensemble)

    def tile_shape(
        self, H: int, W: int, max_pixels: int | None = None, max_memory: int | None = None
    ) -> tuple[int, int]:
        """(rows, cols) of the tiles :meth:`render` uses for an H x W output.

        max_pixels bounds the pixels per tile; max_memory (bytes) bounds the estimated transient
        memory per tile (:func:`preferred_tile_budget` of the device when neither is given).
        """
        H, W = self._check_size(H, W)
        h, w = self.feature_size
        args = (self.batch_size, self.p_max, H / h, W / w, self.cells.element_size())
        if max_pixels is None and max_memory is None:
            max_memory = preferred_tile_budget(self.device)
        cols = W
        if max_pixels is not None:
            cols = min(W, max(1, int(max_pixels)))
        if max_memory is not None:
            while (
                cols > 1 and estimate_tile_bytes(1, cols, *args, self.local_ensemble) > max_memory
            ):
                cols = (cols + 1) // 2
        rows = H
        if max_pixels is not None:
            rows = min(rows, max(1, int(max_pixels) // cols))
        if max_memory is not None:
            rows = min(rows, rows_per_tile(H, cols, *args, max_memory, self.local_ensemble))
        return max(1, rows), max(1, cols)

    def tiles(
        self, H: int, W: int, max_pixels: int | None = None, max_memory: int | None = None
    ) -> Iterator[tuple[int, int, torch.Tensor]]:
        """Yield ``(top, left, tile)`` covering the H x W rendering in row-major order; each
        tile is (B, 3, rows, cols). Row strips span the full width unless the width alone
        exceeds the budget."""
        H, W = self._check_size(H, W)
        rows, cols = self.tile_shape(H, W, max_pixels, max_memory)
        for top in range(0, H, rows):
            height = min(rows, H - top)
            plan_y = self._plan(H, top, height, vertical=True)
            for left in range(0, W, cols):
                width = min(cols, W - left)
                plan_x = self._plan(W, left, width, vertical=False)
                yield (
                    top,
                    left,
                    render_window(self.cells, self.bandwidth, plan_y, plan_x, self.local_ensemble),
                )

    def iter_rows(
        self, H: int, W: int, max_pixels: int | None = None, max_memory: int | None = None
    ) -> Iterator[tuple[int, torch.Tensor]]:
        """Yield ``(top, strip)`` with full-width strips (B, 3, rows, W), top to bottom; each
        strip is assembled from the tiles of :meth:`tiles`, so memory stays bounded."""
        H, W = self._check_size(H, W)
        rows, cols = self.tile_shape(H, W, max_pixels, max_memory)
        if cols >= W:
            for top, _, tile in self.tiles(H, W, max_pixels, max_memory):
                yield top, tile
            return
        strip = None
        for top, left, tile in self.tiles(H, W, max_pixels, max_memory):
            if left == 0:
                strip = tile.new_empty(tile.shape[0], 3, tile.shape[2], W)
            strip[:, :, :, left : left + tile.shape[3]] = tile
            if left + tile.shape[3] == W:
                yield top, strip

    def render(
        self,
        H: int,
        W: int,
        max_pixels: int | None = None,
        max_memory: int | None = None,
        out: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The whole (B, 3, H, W) rendering at pixel centres, tiled so that the transient memory
        stays within ``max_memory`` (default :func:`preferred_tile_budget`) or ``max_pixels``
        per tile. ``out`` may be a preallocated (B, 3, H, W) tensor to fill."""
        H, W = self._check_size(H, W)
        rows, cols = self.tile_shape(H, W, max_pixels, max_memory)
        if out is None:
            if rows >= H and cols >= W:
                return self.render_region(0, 0, H, W, H, W).contiguous()
            out = self.cells.new_empty(self.batch_size, 3, H, W)
        elif tuple(out.shape) != (self.batch_size, 3, H, W):
            raise ValueError(
                f"out has shape {tuple(out.shape)}, expected {(self.batch_size, 3, H, W)}"
            )
        for top, left, tile in self.tiles(H, W, max_pixels, max_memory):
            out[:, :, top : top + tile.shape[2], left : left + tile.shape[3]] = tile
        return out

    def query(self, coord: torch.Tensor) -> torch.Tensor:
        """Render arbitrary points: coord (B, Q, 2) (y, x) in [-1, 1] -> (B, Q, 3)."""
        if coord.dim() != 3 or coord.shape[0] != self.batch_size or coord.shape[-1] != 2:
            raise ValueError(f"coord must be ({self.batch_size}, Q, 2), got {tuple(coord.shape)}")
        return query_cells(self.cells, self.bandwidth, coord, self.local_ensemble)
