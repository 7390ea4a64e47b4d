"""Pure-PyTorch 2-D Gaussian splatting with the semantics of the GaussianImage gsplat fork's
``project_gaussians_2d`` + ``rasterize_gaussians_sum`` (the renderer of ContinuousSR).

Semantics (re-derived from the fork's kernels, XingtongGe/gsplat @ bcca3ec; none of its code):

* projection: a mean (x, y) in NDC [-1, 1] lands on pixel coordinates ``c = W/2 * x + W/2``
  (``H`` for y); pixel (row r, col q) is evaluated at the integer point (q, r). The Cholesky
  triple (l11, l21, l22) gives ``Sigma = [[l11^2, l11 l21], [l11 l21, l21^2 + l22^2]]`` (x = width
  axis); a Gaussian with ``det Sigma == 0`` is dropped. Its radius is ``ceil(3 sqrt(lmax))`` with
  ``lmax = b + sqrt(max(0.1, b^2 - det))``, ``b = tr(Sigma) / 2`` (the 0.1 floor inflates it).
* tile box (16 x 16 tiles): ``[trunc(c/16 - r/16), trunc(c/16 + r/16 + 1))`` per axis, clamped to
  the tile grid; a Gaussian is only ever summed into pixels of the tiles of its box.
* per pixel: ``sigma = 0.5 (A dx^2 + C dy^2) + B dx dy`` with the conic (A, B, C) = Sigma^-1 and
  ``d = c - p``; ``alpha = min(1, exp(-sigma))``; the term is skipped when ``sigma < 0`` or
  ``alpha < 1/255``; the image is the plain sum of ``colour * alpha`` (no compositing, no
  normalisation, no clamp, the background is ignored: untouched pixels are 0).
* ``tile_cap``: the official 3-channel kernel only ever reads the first 256 entries of each tile's
  list (one shared-memory batch), the list being sorted by tile with all depths equal, i.e. in
  ascending Gaussian index. ``tile_cap=256`` reproduces that; ``None`` (the default) sums every
  Gaussian, which is the correct rendering (the cap causes the black blotches below x4).

Implementation: the output is processed in blocks of tiles. For a block, only the Gaussians whose
boxes reach it are selected; their (tile, Gaussian) pairs are expanded, stably sorted by tile and
ranked, the cap applied, and a padded ``[tiles, L]`` index table evaluated as
``[tiles, L, 16, 16]`` weights contracted with the colours. Memory is bounded by ``max_elements``
whatever the output size; the result does not depend on the blocking. Differentiable w.r.t.
centres, conics and colours (gradients flow through the gathers), on any device and dtype.
"""

from __future__ import annotations

import torch

__all__ = [
    "BLOCK",
    "OFFICIAL_TILE_CAP",
    "project_gaussians",
    "rasterize_sum",
    "render_gaussians",
]

BLOCK = 16
OFFICIAL_TILE_CAP = 256
# Elements of one [tiles, L, 16, 16] evaluation chunk: small enough for the temporaries to stay
# in cache (CPU speed), large enough to amortise the per-chunk overhead.
DEFAULT_MAX_ELEMENTS = 1 << 18
# Tiles per block whose pairs are built at once.
_TILES_PER_BLOCK = 1024
_INT_LIMIT = float(1 << 30)


def _trunc_int(x: torch.Tensor) -> torch.Tensor:
    """C's ``(int)`` cast (truncation toward zero) for finite values, saturated far out."""
    return torch.trunc(x.clamp(-_INT_LIMIT, _INT_LIMIT)).to(torch.int64)


def project_gaussians(
    means: torch.Tensor, chol: torch.Tensor, H: int, W: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Project 2-D Gaussians onto an H x W pixel grid.

    means (B, N, 2) NDC (x, y) in [-1, 1]-ish; chol (B, N, 3) (l11, l21, l22) in pixels.
    Returns ``centre`` (B, N, 2) pixel (x, y); ``conic`` (B, N, 3) (A, B, C) of Sigma^-1;
    ``radius`` (B, N) pixels (0 for dropped Gaussians); ``box`` (B, N, 4) int64
    (tx0, tx1, ty0, ty1), half-open tile ranges (empty for dropped Gaussians).
    """
    x, y = means.unbind(-1)
    cx = (0.5 * W) * x + 0.5 * W
    cy = (0.5 * H) * y + 0.5 * H
    l11, l21, l22 = chol.unbind(-1)
    a = l11 * l11
    b = l11 * l21
    c = l21 * l21 + l22 * l22
    det = a * c - b * b
    ok = det != 0
    inv_det = 1.0 / torch.where(ok, det, torch.ones_like(det))
    conic = torch.stack([c * inv_det, -b * inv_det, a * inv_det], dim=-1)
    half_tr = 0.5 * (a + c)
    lmax = half_tr + torch.sqrt(torch.clamp_min(half_tr * half_tr - det, 0.1))
    radius = torch.ceil(3.0 * torch.sqrt(lmax))
    radius = torch.where(ok, radius, torch.zeros_like(radius))

    tiles_x = (W + BLOCK - 1) // BLOCK
    tiles_y = (H + BLOCK - 1) // BLOCK
    r_t = radius / float(BLOCK)
    tcx, tcy = cx / float(BLOCK), cy / float(BLOCK)
    x0 = _trunc_int(tcx - r_t).clamp(0, tiles_x)
    x1 = _trunc_int(tcx + r_t + 1).clamp(0, tiles_x)
    y0 = _trunc_int(tcy - r_t).clamp(0, tiles_y)
    y1 = _trunc_int(tcy + r_t + 1).clamp(0, tiles_y)
    # Dropped Gaussians get an empty box.
    x1 = torch.where(ok, x1, x0)
    box = torch.stack([x0, x1, y0, y1], dim=-1)
    return torch.stack([cx, cy], dim=-1), conic, radius, box


def _tile_tables(
    box: torch.Tensor, ty0: int, ty1: int, tx0: int, tx1: int, tile_cap: int | None
) -> tuple[torch.Tensor, int]:
    """Padded per-tile Gaussian lists of the tile block [ty0, ty1) x [tx0, tx1).

    box (B, N, 4). Returns ``table`` (B * T, L) int64 of flat Gaussian indices ``b * N + g``
    (``B * N`` = padding), in ascending g per tile (the official order), at most ``tile_cap``
    per tile; T = block tiles in row-major order; and L.
    """
    B, N, _ = box.shape
    bw, bh = tx1 - tx0, ty1 - ty0
    T = bw * bh
    x0, x1, y0, y1 = box.unbind(-1)
    hit = (x0 < tx1) & (x1 > tx0) & (y0 < ty1) & (y1 > ty0)
    bi, gi = hit.nonzero(as_tuple=True)  # ordered by (b, g)
    dev = box.device
    if bi.numel() == 0:
        return torch.full((B * T, 1), B * N, dtype=torch.int64, device=dev), 1
    cx0 = x0[bi, gi].clamp_min(tx0)
    cx1 = x1[bi, gi].clamp_max(tx1)
    cy0 = y0[bi, gi].clamp_min(ty0)
    cy1 = y1[bi, gi].clamp_max(ty1)
    nx = cx1 - cx0
    cnt = nx * (cy1 - cy0)
    pair = torch.repeat_interleave(torch.arange(cnt.numel(), device=dev), cnt)
    first = torch.cumsum(cnt, 0) - cnt
    k = torch.arange(pair.numel(), device=dev) - first[pair]
    ty = cy0[pair] + torch.div(k, nx[pair], rounding_mode="floor")
    tx = cx0[pair] + k % nx[pair]
    key = bi[pair] * T + (ty - ty0) * bw + (tx - tx0)
    # Pairs were generated in ascending (b, g); a stable sort by tile keeps that order per tile.
    key_sorted, order = torch.sort(key, stable=True)
    flat = (bi * N + gi)[pair][order]
    counts = torch.bincount(key_sorted, minlength=B * T)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(key_sorted.numel(), device=dev) - starts[key_sorted]
    if tile_cap is not None:
        keep = rank < tile_cap
        key_sorted, rank, flat = key_sorted[keep], rank[keep], flat[keep]
        counts = counts.clamp_max(tile_cap)
    L = max(1, int(counts.max()))
    table = torch.full((B * T, L), B * N, dtype=torch.int64, device=dev)
    table[key_sorted, rank] = flat
    return table, L


# Shading works on SUB x SUB sub-blocks of each tile: a tile's list is culled per sub-block to
# the Gaussians whose alpha >= 1/255 region can reach it, a 3-10x saving at usual scales. The
# culling is conservative; it never changes which Gaussians a tile's list (and cap) holds.
SUB = 8
_LN255 = 5.541263545158426


def _alpha_extent(conic: torch.Tensor) -> torch.Tensor:
    """(M, 3) conics -> (M, 2) half-widths (x, y) in pixels of the region where
    alpha >= 1/255 can hold (sigma <= ln 255, so |dx| <= sqrt(2 ln 255 Sigma_xx)), with a
    1% + 0.05 px margin for float rounding; -1 (reaches nothing) for a zero conic."""
    a, b, c = conic.detach().unbind(-1)
    det = a * c - b * b
    ok = det > 0
    det = torch.where(ok, det, torch.ones_like(det))
    ext = torch.stack([c / det, a / det], -1).clamp_min(0).mul(2 * _LN255).sqrt()
    ext = ext * 1.01 + 0.05
    return torch.where(ok[:, None], ext, torch.full_like(ext, -1.0))


def _shade_tiles(
    g: torch.Tensor,
    px0: torch.Tensor,
    py0: torch.Tensor,
    cen: torch.Tensor,
    con: torch.Tensor,
    ext: torch.Tensor,
    col: torch.Tensor,
) -> torch.Tensor:
    """Shade tiles: g (t, L) flat Gaussian indices (padding = last row of the parameter
    tables), tile origins px0 / py0 (t,) -> (t, C, 256) pixels in row-major tile order.
    cen (M, 2), con (M, 3), ext (M, 2), col (M, C) flat parameters."""
    t, L = g.shape
    pad = cen.shape[0] - 1
    n = BLOCK // SUB
    so = torch.arange(0, BLOCK, SUB, device=g.device, dtype=px0.dtype)
    sx0 = (px0[:, None] + so)[:, None, :]  # (t, 1, n)
    sy0 = (py0[:, None] + so)[:, None, :]
    cx, cy = cen[g, 0].detach()[..., None], cen[g, 1].detach()[..., None]  # (t, L, 1)
    e = ext[g]
    hx = (cx - torch.minimum(torch.maximum(cx, sx0), sx0 + (SUB - 1))).abs() <= e[..., 0:1]
    hy = (cy - torch.minimum(torch.maximum(cy, sy0), sy0 + (SUB - 1))).abs() <= e[..., 1:2]
    hit = (hy[:, :, :, None] & hx[:, :, None, :]).reshape(t, L, n * n).transpose(1, 2)
    counts = hit.sum(-1)  # (t, S)
    L2 = max(1, int(counts.max()))
    pos = hit.cumsum(-1) - 1
    ti, si, li = hit.nonzero(as_tuple=True)  # ascending l within each (tile, sub-block)
    sub = torch.full((t, n * n, L2), pad, dtype=g.dtype, device=g.device)
    sub[ti, si, pos[ti, si, li]] = g[ti, li]
    # Pixel coordinates of each sub-block: (t, S, 1, 1, SUB) and (t, S, 1, SUB, 1).
    offs = torch.arange(SUB, device=g.device, dtype=px0.dtype)
    qx = (sx0.expand(t, n, n).reshape(t, n * n)[..., None] + offs)[:, :, None, None, :]
    qy = sy0.reshape(t, n, 1).expand(t, n, n).reshape(t, n * n)[..., None] + offs
    qy = qy[:, :, None, :, None]
    dx = cen[sub, 0][..., None, None] - qx  # (t, S, L2, 1, SUB)
    dy = cen[sub, 1][..., None, None] - qy  # (t, S, L2, SUB, 1)
    k = con[sub][..., None, None]
    # 0.5 * (A dx^2 + C dy^2) + B dx dy, in the kernel's rounding order (halving is exact, so
    # it can be applied to each term before the broadcast sum).
    sigma = 0.5 * (k[..., 0, :, :] * dx * dx) + 0.5 * (k[..., 2, :, :] * dy * dy)
    sigma += (k[..., 1, :, :] * dx) * dy
    # exp(-sigma) <= 1 exactly when sigma >= 0, so min(1, .) never binds on a kept term; the
    # skips are sigma < 0 and alpha < 1/255.
    keep = sigma >= 0
    alpha = torch.exp(sigma.neg_())
    keep &= alpha >= 1.0 / 255.0
    alpha = torch.where(keep, alpha, 0.0)
    C = col.shape[1]
    img = torch.einsum("tslp,tslc->tscp", alpha.reshape(t, n * n, L2, SUB * SUB), col[sub])
    img = img.reshape(t, n, n, C, SUB, SUB).permute(0, 3, 1, 4, 2, 5)
    return img.reshape(t, C, BLOCK * BLOCK)


def rasterize_sum(
    centre: torch.Tensor,
    conic: torch.Tensor,
    colour: torch.Tensor,
    box: torch.Tensor,
    H: int,
    W: int,
    *,
    tile_cap: int | None = None,
    region: tuple[int, int, int, int] | None = None,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
) -> torch.Tensor:
    """Additive tile-list rasterisation of projected Gaussians.

    centre (B, N, 2), conic (B, N, 3), box (B, N, 4) from :func:`project_gaussians`; colour
    (B, N, C). ``region`` = (top, left, height, width) of the H x W output (the whole image by
    default). Returns (B, C, height, width). ``tile_cap``: None (every Gaussian) or the per-tile
    limit of the official kernel (256).
    """
    if tile_cap is not None and tile_cap < 1:
        raise ValueError(f"tile_cap must be None or >= 1, got {tile_cap}")
    B, N, C = colour.shape
    top, left, height, width = region if region is not None else (0, 0, H, W)
    ty_a, ty_b = top // BLOCK, (top + height - 1) // BLOCK + 1
    tx_a, tx_b = left // BLOCK, (left + width - 1) // BLOCK + 1
    dtype, dev = colour.dtype, colour.device
    # Flattened parameters with one padding Gaussian (zero colour) at index B * N.
    cen = torch.cat([centre.reshape(B * N, 2), centre.new_zeros(1, 2)])
    con = torch.cat([conic.reshape(B * N, 3), conic.new_zeros(1, 3)])
    col = torch.cat([colour.reshape(B * N, C), colour.new_zeros(1, C)])
    ext = _alpha_extent(con)
    out = colour.new_zeros(B, C, (ty_b - ty_a) * BLOCK, (tx_b - tx_a) * BLOCK)
    n_tx = tx_b - tx_a
    blk_w = min(n_tx, _TILES_PER_BLOCK)
    blk_h = max(1, min(ty_b - ty_a, _TILES_PER_BLOCK // blk_w))
    for ty0 in range(ty_a, ty_b, blk_h):
        ty1 = min(ty_b, ty0 + blk_h)
        for tx0 in range(tx_a, tx_b, blk_w):
            tx1 = min(tx_b, tx0 + blk_w)
            bw, bh = tx1 - tx0, ty1 - ty0
            T = bw * bh
            table, L = _tile_tables(box, ty0, ty1, tx0, tx1, tile_cap)
            tile = torch.arange(B * T, device=dev) % T
            px0 = ((tile % bw) + tx0).to(dtype) * BLOCK
            py0 = (torch.div(tile, bw, rounding_mode="floor") + ty0).to(dtype) * BLOCK
            chunk = max(1, max_elements // (L * BLOCK * BLOCK))
            parts = [
                _shade_tiles(
                    table[s : s + chunk], px0[s : s + chunk], py0[s : s + chunk], cen, con, ext, col
                )
                for s in range(0, B * T, chunk)
            ]
            img = torch.cat(parts).reshape(B, bh, bw, C, BLOCK, BLOCK)
            img = img.permute(0, 3, 1, 4, 2, 5).reshape(B, C, bh * BLOCK, bw * BLOCK)
            r0, c0 = (ty0 - ty_a) * BLOCK, (tx0 - tx_a) * BLOCK
            out[:, :, r0 : r0 + bh * BLOCK, c0 : c0 + bw * BLOCK] = img
    r0, c0 = top - ty_a * BLOCK, left - tx_a * BLOCK
    return out[:, :, r0 : r0 + height, c0 : c0 + width]


def render_gaussians(
    means: torch.Tensor,
    chol: torch.Tensor,
    colour: torch.Tensor,
    H: int,
    W: int,
    *,
    tile_cap: int | None = None,
    region: tuple[int, int, int, int] | None = None,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
) -> torch.Tensor:
    """Project and rasterise: means (B, N, 2) NDC, chol (B, N, 3) pixels, colour (B, N, C)
    -> (B, C, H, W) (or the ``region``'s (B, C, height, width))."""
    centre, conic, _, box = project_gaussians(means, chol, H, W)
    return rasterize_sum(
        centre,
        conic,
        colour,
        box,
        H,
        W,
        tile_cap=tile_cap,
        region=region,
        max_elements=max_elements,
    )
