"""GaussianSR's splatting stage as pure functions: kernel bank, translated kernel canvases, the
one-contraction splat and a windowed bicubic resize that equals ``F.interpolate``.

Shapes: B batch, G kernel groups (1 when kernels are averaged over the batch, B when per
image), P = R * R positions in an R x R LR patch (R = 7, P = 49), S = round(R s) the side of
a patch's HR canvas, D splat channels (8).

The official renderer materialises (B L P, D, S, S) several times; because every patch of a
group shares the same P translated kernels, the splat is one contraction of the patch colours
with P canvases of S x S (spec A.8), and any window of the HR map needs only the patches under
it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = [
    "canvas_side",
    "kernel_bank",
    "translations",
    "kernel_canvases",
    "splat_window",
    "cubic_axis",
    "resize_window",
]

# Variance jitter of the official covariance.
COV_EPS = 1e-5
# Half-width of the kernel's sample grid (in sigma units): samples at linspace(-5, 5, k).
KERNEL_EXTENT = 5.0
# Keys' cubic convolution parameter of PyTorch's bicubic mode.
CUBIC_A = -0.75


def canvas_side(patch: int, scale: float) -> int:
    """S = round(patch * scale) with Python's round (half to even), as the official code."""
    return round(patch * scale)


def kernel_bank(
    sigma_x: torch.Tensor, sigma_y: torch.Tensor, rho: torch.Tensor, size: int
) -> torch.Tensor:
    """Peak-normalised Gaussian kernels sampled on a size x size grid.

    sigma_x, sigma_y, rho: (N,) per-kernel parameters; sigma_x pairs with the row offset,
    sigma_y with the column offset. Returns (N, size, size).

    The official normalisation (exp(z) / (2 pi sqrt(det)) divided by its own maximum) is kept
    verbatim rather than simplified to exp(z), so the last bits agree.
    """
    n = sigma_x.shape[0]
    sx, sy, r = sigma_x.view(n, 1, 1), sigma_y.view(n, 1, 1), rho.view(n, 1, 1)
    off = r * sx * sy
    cov = torch.stack(
        [torch.stack([sx**2 + COV_EPS, off], dim=-1), torch.stack([off, sy**2 + COV_EPS], dim=-1)],
        dim=-2,
    )  # (N, 1, 1, 2, 2)
    inv = torch.linalg.inv(cov)
    ax = torch.linspace(0, 1, size, dtype=sigma_x.dtype, device=sigma_x.device)
    ax = -KERNEL_EXTENT + (2 * KERNEL_EXTENT) * ax
    d = torch.stack(
        [ax.view(size, 1).expand(size, size), ax.view(1, size).expand(size, size)], dim=-1
    ).unsqueeze(0)  # (1, k, k, 2): (row offset, column offset)
    z = torch.einsum("b...i,b...ij,b...j->b...", d, -0.5 * inv, d)  # (N, k, k)
    norm = 2 * torch.tensor(math.pi, dtype=z.dtype, device=z.device)
    kernel = torch.exp(z) / (norm * torch.sqrt(torch.linalg.det(cov)).view(n, 1, 1))
    peak = kernel.amax(dim=(-2, -1), keepdim=True)
    return kernel / peak


def translations(
    patch: int, side: int, kernel: int, centred: bool, dtype: torch.dtype, device
) -> torch.Tensor:
    """(P, 2) affine translations (x, y) of the P = patch^2 kernels, in align_corners=True units.

    Official: t = (1 - 2c / R, 1 - 2r / R) for position (r, c), which puts the kernel of LR
    column c at canvas pixel c (S - 1) / R - 0.5 [S even] (off-centre). ``centred`` puts it at
    the centre of its LR cell, (c + 0.5) S / R - 0.5.
    """
    idx = torch.arange(patch, device=device)
    if not centred:
        t = (0.5 - idx.to(torch.float32) / float(patch)) * 2.0
    else:
        p0 = (side - kernel) // 2 + kernel // 2  # kernel centre in the padded canvas
        target = (idx.to(torch.float64) + 0.5) * side / patch - 0.5
        t = 2.0 * (p0 - target) / (side - 1)
    t = t.to(dtype)
    rows, cols = torch.meshgrid(t, t, indexing="ij")
    return torch.stack([cols.reshape(-1), rows.reshape(-1)], dim=-1)


def kernel_canvases(
    kernels: torch.Tensor, patch: int, side: int, centred: bool = False
) -> torch.Tensor:
    """Translated kernel canvases of one patch.

    kernels: (G, P, k, k) -> (G, P, S, S): each kernel zero-padded to S x S (floor/ceil split)
    and shifted with affine_grid + bilinear grid_sample (align_corners=True, zero padding).
    """
    g, p, k, _ = kernels.shape
    if side < k:
        raise ValueError(f"the patch canvas ({side} px) is smaller than the {k}x{k} kernel")
    pad = side - k
    x = F.pad(kernels.reshape(g * p, 1, k, k), (pad // 2, pad - pad // 2, pad // 2, pad - pad // 2))
    theta = torch.zeros(g * p, 2, 3, dtype=kernels.dtype, device=kernels.device)
    theta[:, 0, 0] = 1.0
    theta[:, 1, 1] = 1.0
    theta[:, :, 2] = translations(patch, side, k, centred, kernels.dtype, kernels.device).repeat(
        g, 1
    )
    grid = F.affine_grid(theta, [g * p, 1, side, side], align_corners=True)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return out.view(g, p, side, side)


def splat_window(
    colour: torch.Tensor, weight: torch.Tensor, canvases: torch.Tensor, rows: slice, cols: slice
) -> torch.Tensor:
    """Clamped splat of the patch rows ``rows`` and patch columns ``cols``.

    colour: (B, D, nr, R, nc, R) patch colours (position (r, c) of patch (i, j) at
        [:, :, i, r, j, c]); weight: (G, R, R) opacity per position; canvases: (G, R, R, S, S).
    Returns (B, D, n_rows S, n_cols S) = clamp(sum_k opacity_k colour_k canvas_k, 0, 1).
    """
    c = colour[:, :, rows, :, cols, :]
    b, d, i, r, j, _ = c.shape
    s = canvases.shape[-1]
    if canvases.shape[0] == 1:
        lit = c * weight[0].view(1, 1, 1, r, 1, r)
        out = torch.einsum("bdirjc,rcyx->bdiyjx", lit, canvases[0])
    else:
        lit = c * weight.view(b, 1, 1, r, 1, r)
        out = torch.einsum("bdirjc,brcyx->bdiyjx", lit, canvases)
    return out.reshape(b, d, i * s, j * s).clamp(0, 1)


def _cubic_near(x: torch.Tensor) -> torch.Tensor:
    """Keys' kernel on |x| <= 1, evaluated as PyTorch's CPU kernel does (plain float ops)."""
    return ((CUBIC_A + 2) * x - (CUBIC_A + 3)) * x * x + 1


def _cubic_far(x: torch.Tensor) -> torch.Tensor:
    """Keys' kernel on 1 < |x| < 2. PyTorch's compiled CPU kernel fuses the first two
    multiply-adds (FMA) and rounds the last product: emulated for float32 through exact
    float64 products rounded once (matches the kernel's taps bit for bit in our checks)."""
    if x.dtype != torch.float32:
        return ((CUBIC_A * x - 5 * CUBIC_A) * x + 8 * CUBIC_A) * x - 4 * CUBIC_A
    d = x.double()
    a = (CUBIC_A * d - 5 * CUBIC_A).float().double()
    b = (a * d + 8 * CUBIC_A).float().double()
    return ((b * d).float() - 4 * CUBIC_A).float()


def cubic_axis(
    n_in: int, n_out: int, lo: int, hi: int, dtype: torch.dtype, device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Taps of ``F.interpolate(mode='bicubic', align_corners=False)`` (no scale_factor) along one
    axis, for output indices [lo, hi).

    Returns (index (n, 4) int64 into the input, clamped to its border; weight (n, 4)). The
    arithmetic follows PyTorch's CPU kernel in ``dtype`` (float32 for float32 inputs, whose
    opmath type it is): scale = n_in / n_out, x = scale (i + 0.5) - 0.5 (fused), the floor and
    its clamp to n_in - 1, t clamped to [0, 1], Keys' A = -0.75 (see :func:`_cubic_far`).
    """
    work = torch.float64 if dtype == torch.float64 else torch.float32
    scale = torch.tensor(float(n_in), dtype=work) / torch.tensor(float(n_out), dtype=work)
    i = torch.arange(lo, hi, dtype=torch.float64)
    # The compiled kernel fuses scale * (i + 0.5) - 0.5 into one rounding (an FMA): the
    # float64 product of a float32 scale and a small half-integer is exact, so one cast
    # reproduces it (two float32 roundings move t by an ulp of x, ~1e-5 at x ~ 100).
    x = (scale.double() * (i + 0.5) - 0.5).to(work)
    base = torch.floor(x).clamp(max=n_in - 1)
    t = (x - base).clamp(0, 1)
    w = torch.stack(
        [_cubic_far(t + 1), _cubic_near(t), _cubic_near(1 - t), _cubic_far((1 - t) + 1)], -1
    )
    idx = (base.long().unsqueeze(-1) + torch.arange(-1, 3)).clamp(0, n_in - 1)
    return idx.to(device), w.to(device=device, dtype=dtype)


def _apply_axis(x: torch.Tensor, idx: torch.Tensor, w: torch.Tensor, dim: int) -> torch.Tensor:
    n = idx.shape[0]
    # Tap by tap, in order: the kernel's accumulation (and a quarter of the memory).
    wshape = [1] * x.dim()
    wshape[dim] = n
    out = x.index_select(dim, idx[:, 0]) * w[:, 0].view(wshape)
    for j in range(1, 4):
        out += x.index_select(dim, idx[:, j]) * w[:, j].view(wshape)
    return out


def resize_window(
    source,
    n_in: tuple[int, int],
    n_out: tuple[int, int],
    rows: tuple[int, int],
    cols: tuple[int, int],
    dtype: torch.dtype,
    device,
) -> torch.Tensor:
    """Window rows [rows) x cols [cols) of a bicubic resize from n_in to n_out.

    ``source(r0, r1, c0, c1)`` returns the input's rows [r0, r1) and columns [c0, c1)
    (B, C, r1 - r0, c1 - c0): only the part under the window is ever built.
    """
    if rows == (0, n_out[0]) and cols == (0, n_out[1]):  # the whole image: PyTorch's kernel
        x = source(0, n_in[0], 0, n_in[1])
        return F.interpolate(x, size=n_out, mode="bicubic", align_corners=False)
    ri, rw = cubic_axis(n_in[0], n_out[0], rows[0], rows[1], dtype, device)
    ci, cw = cubic_axis(n_in[1], n_out[1], cols[0], cols[1], dtype, device)
    r0, r1 = int(ri.min()), int(ri.max()) + 1
    c0, c1 = int(ci.min()), int(ci.max()) + 1
    x = source(r0, r1, c0, c1)
    x = _apply_axis(x, ci - c0, cw, 3)
    return _apply_axis(x, ri - r0, rw, 2)
