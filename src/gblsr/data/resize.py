"""Image resizing that reproduces MATLAB's ``imresize`` and Pillow's bicubic filter.

Super-resolution numbers are only comparable when the low-resolution inputs are made the same
way. The benchmark LR files shipped with EDSR, DIV2K and most papers were made with MATLAB's
``imresize(img, 1/s, 'bicubic')`` on 8-bit images; LIIF/LTE (and the methods built on them) make
training LR and LR beyond x4 with Pillow's bicubic filter instead. This module provides both:

* :func:`imresize` follows MATLAB: a separable cubic kernel with a = -0.5, widened by 1/scale
  (antialiasing) when shrinking, symmetric (mirror, edge pixel repeated) border handling, the
  output size ``ceil(scale * n)``, and the dimension with the smaller scale resized first. For
  uint8 input it rounds (half away from zero) and clips to [0, 255] after each 1-D pass, as
  MATLAB does when the image class is uint8, and returns uint8. Float input is resized in floating
  point without any quantisation.
* :func:`pil_resize` / :func:`pil_bicubic` call Pillow on 8-bit data, which is what
  ``torchvision.transforms.Resize`` did in the LIIF/LTE code.

Everything is batched over leading dimensions and works on any device; the (tiny) interpolation
weight tables are computed in float64 on the CPU and moved to the tensor's device.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

__all__ = [
    "imresize",
    "pil_resize",
    "pil_bicubic",
    "output_size",
    "lr_size_for_scale",
    "hr_crop_for_scale",
    "resize_weights",
    "cubic_kernel",
]

_INT_TOL = 1e-9


# --------------------------------------------------------------------------- kernels


def cubic_kernel(x: torch.Tensor, a: float = -0.5) -> torch.Tensor:
    """Keys' cubic convolution kernel (support [-2, 2]); a = -0.5 is MATLAB's and Pillow's."""
    ax = x.abs()
    ax2 = ax * ax
    ax3 = ax2 * ax
    inner = (a + 2.0) * ax3 - (a + 3.0) * ax2 + 1.0
    outer = a * ax3 - 5.0 * a * ax2 + 8.0 * a * ax - 4.0 * a
    return torch.where(ax <= 1.0, inner, torch.where(ax <= 2.0, outer, torch.zeros_like(ax)))


def _triangle_kernel(x: torch.Tensor) -> torch.Tensor:
    return (1.0 - x.abs()).clamp_min(0.0)


def _box_kernel(x: torch.Tensor) -> torch.Tensor:
    # MATLAB's box is 1 on [-0.5, 0.5): the half-open interval decides ties towards the left.
    return ((x >= -0.5) & (x < 0.5)).to(x.dtype)


_KERNELS = {
    # name: (kernel, support width, antialias when shrinking)
    "bicubic": (cubic_kernel, 4.0, True),
    "bilinear": (_triangle_kernel, 2.0, True),
    "nearest": (_box_kernel, 1.0, False),
}


# --------------------------------------------------------------------------- sizes


def _ceil_tol(v: float) -> int:
    """ceil(v), except that values within a relative 1e-9 of an integer count as that integer.

    This keeps float artefacts such as 255 * (1/3) = 85.00000000000001 from adding a row.
    """
    r = round(v)
    if abs(v - r) <= _INT_TOL * max(1.0, abs(v)):
        return int(r)
    return int(math.ceil(v))


def _pair(v, name: str) -> tuple:
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise ValueError(f"{name} must be a number or a pair (height, width), got {v!r}")
        return tuple(v)
    return (v, v)


def output_size(
    in_size: Sequence[int],
    scale: float | Sequence[float] | None = None,
    size: Sequence[int | None] | None = None,
) -> tuple[tuple[int, int], tuple[float, float]]:
    """MATLAB's rule for the output size and the per-axis scale factors.

    in_size: (H, W). Exactly one of ``scale`` / ``size`` is usually given:
      * ``scale`` s (or (sh, sw)): output = ceil(s * n) per axis, kernel scale = s.
      * ``size`` (h, w): kernel scale = h / H and w / W. One entry may be None: it is then
        derived from the other axis's scale (aspect ratio kept), like MATLAB's NaN.
      * both: the given scale shapes the kernel and the given size is the output size.

    Returns ((h_out, w_out), (scale_h, scale_w)).
    """
    H, W = int(in_size[0]), int(in_size[1])
    if scale is None and size is None:
        raise ValueError("imresize needs a scale or an output size")
    if scale is not None:
        for f in _pair(scale, "scale"):
            try:
                ok = math.isfinite(float(f)) and float(f) > 0
            except (TypeError, ValueError):
                ok = False
            if not ok:
                raise ValueError(f"resize scale must be a positive finite number, got {f!r}")
    if size is not None:
        sh, sw = _pair(size, "size")
        if sh is None and sw is None:
            raise ValueError("size cannot be (None, None)")
        if scale is not None:
            fh, fw = (float(v) for v in _pair(scale, "scale"))
        else:
            fh = sh / H if sh is not None else sw / W
            fw = sw / W if sw is not None else sh / H
        h = int(sh) if sh is not None else _ceil_tol(fh * H)
        w = int(sw) if sw is not None else _ceil_tol(fw * W)
    else:
        fh, fw = (float(v) for v in _pair(scale, "scale"))
        h, w = _ceil_tol(fh * H), _ceil_tol(fw * W)
    for f in (fh, fw):
        if not (math.isfinite(f) and f > 0):
            raise ValueError(f"resize scale must be a positive finite number, got {f!r}")
    if h < 1 or w < 1:
        raise ValueError(f"resizing {H}x{W} by ({fh:g}, {fw:g}) gives an empty image ({h}x{w})")
    return (h, w), (fh, fw)


def lr_size_for_scale(hr_size: Sequence[int], scale: float) -> tuple[int, int]:
    """LR size used for an HR image at a (possibly non-integer) scale: floor(n / s + 1e-9).

    The 1e-9 is LIIF's guard against 3 * (1/3) style float errors. For integer s this is the
    usual "crop to a multiple of s" rule.
    """
    return tuple(int(math.floor(int(n) / float(scale) + 1e-9)) for n in hr_size)  # type: ignore[return-value]


def hr_crop_for_scale(hr_size: Sequence[int], scale: float) -> tuple[int, int]:
    """Top-left HR crop that matches :func:`lr_size_for_scale`: round(n_lr * s) per axis."""
    return tuple(int(round(n * float(scale))) for n in lr_size_for_scale(hr_size, scale))  # type: ignore[return-value]


# --------------------------------------------------------------------------- weights


def resize_weights(
    in_len: int,
    out_len: int,
    scale: float,
    method: str = "bicubic",
    antialias: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Interpolation taps for one axis, as MATLAB's ``contributions`` computes them.

    Returns (weights, indices), both (out_len, P), float64 / int64 on the CPU. Output pixel i
    (1-based) sits at input position u = i / scale + (1 - 1 / scale) / 2; the taps are the P =
    ceil(width) + 2 integer positions from floor(u - width / 2), weighted by the kernel (stretched
    by 1/scale when shrinking with antialiasing) and normalised to sum to one. Positions outside
    [1, in_len] are mirrored (symmetric padding, period 2 * in_len).
    """
    if method not in _KERNELS:
        raise ValueError(f"unknown resize method {method!r}; use one of {sorted(_KERNELS)}")
    kernel, width, method_aa = _KERNELS[method]
    shrink_aa = antialias and method_aa and scale < 1.0
    if shrink_aa:
        width = width / scale
    x = torch.arange(1, out_len + 1, dtype=torch.float64)
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = torch.floor(u - width / 2.0)
    taps = int(math.ceil(width)) + 2
    pos = left[:, None] + torch.arange(taps, dtype=torch.float64)[None, :]
    d = u[:, None] - pos
    if shrink_aa:
        w = scale * kernel(scale * d)
    else:
        w = kernel(d)
    w = w / w.sum(dim=1, keepdim=True)
    # Mirror 1-based positions into [1, in_len]: ..., 2, 1, | 1, 2, ..., n, | n, n-1, ...
    m = torch.remainder(pos.to(torch.int64) - 1, 2 * in_len)
    idx = torch.where(m < in_len, m, 2 * in_len - 1 - m)
    # Drop tap columns that carry no weight for any output pixel (MATLAB does the same).
    keep = (w != 0).any(dim=0)
    return w[:, keep].contiguous(), idx[:, keep].contiguous()


def _resize_rows(
    x: torch.Tensor, w: torch.Tensor, idx: torch.Tensor, quantise: bool
) -> torch.Tensor:
    """Apply taps (out, P) along dim -2 of a float tensor, accumulating tap by tap.

    Taps are summed in order (as MATLAB's loop does), so exact .5 ties round the same way.
    Gathering whole rows (dim -2) is contiguous and fast; callers transpose for the other axis.
    """
    w = w.to(device=x.device, dtype=x.dtype)
    idx = idx.to(x.device)
    out = None
    for p in range(w.shape[1]):
        term = x.index_select(-2, idx[:, p]) * w[:, p, None]
        out = term if out is None else out.add_(term)
    if quantise:
        # MATLAB stores each pass in the input class: saturate, round half away from zero.
        out = torch.floor(out.clamp_(0.0, 255.0).add_(0.5))
    return out


def _resize_axis(
    x: torch.Tensor, dim: int, w: torch.Tensor, idx: torch.Tensor, quantise: bool
) -> torch.Tensor:
    """Resize along ``dim`` (-1 or -2) with taps (out, P); returns a contiguous tensor."""
    if dim == -2:
        return _resize_rows(x, w, idx, quantise)
    xt = x.transpose(-1, -2).contiguous()
    return _resize_rows(xt, w, idx, quantise).transpose(-1, -2).contiguous()


def imresize(
    x: torch.Tensor,
    scale: float | Sequence[float] | None = None,
    size: Sequence[int | None] | None = None,
    method: str = "bicubic",
    antialias: bool = True,
) -> torch.Tensor:
    """MATLAB-compatible ``imresize`` on (..., H, W) tensors, e.g. (C, H, W) or (B, C, H, W).

    x:       float (any range; [0, 1] for images) or uint8. Float input is resized in floating
             point (float32 for half types) with no rounding or clamping. uint8 input follows
             MATLAB's uint8 semantics, rounding and clipping after each 1-D pass, and the result
             is uint8, so ``imresize(hr_uint8, 1/4)`` reproduces MATLAB-made LR files.
    scale:   a positive real (or (sh, sw)); output = ceil(scale * n).
    size:    (h_out, w_out); one entry may be None to keep the aspect ratio.
    method:  "bicubic" (default), "bilinear" or "nearest".
    antialias: widen the kernel by 1/scale when shrinking (MATLAB's default; ignored for nearest).

    Returns (..., h_out, w_out) with the dtype of ``x`` and on its device.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"imresize expects a torch.Tensor, got {type(x).__name__}")
    if x.ndim < 2:
        raise ValueError(f"imresize expects (..., H, W), got shape {tuple(x.shape)}")
    in_dtype = x.dtype
    is_uint8 = in_dtype == torch.uint8
    if is_uint8:
        work = x.to(torch.float64)
    elif in_dtype in (torch.float32, torch.float64):
        work = x
    elif in_dtype.is_floating_point:
        work = x.to(torch.float32)
    else:
        raise TypeError(f"imresize supports float and uint8 tensors, got {in_dtype}")
    H, W = int(x.shape[-2]), int(x.shape[-1])
    if H < 1 or W < 1:
        raise ValueError(f"cannot resize an empty image of shape {tuple(x.shape)}")
    (h, w), (fh, fw) = output_size((H, W), scale=scale, size=size)

    # Resize the axis with the smaller scale first (rows first on ties), as MATLAB does.
    passes = [(-2, H, h, fh), (-1, W, w, fw)]
    if fw < fh:
        passes.reverse()
    for dim, n_in, n_out, f in passes:
        if n_in == n_out and f == 1.0:
            continue  # identity: every output pixel copies its input pixel
        wts, idx = resize_weights(n_in, n_out, f, method=method, antialias=antialias)
        work = _resize_axis(work, dim, wts, idx, quantise=is_uint8)

    if is_uint8:
        return work.to(torch.uint8)
    return work.to(in_dtype) if work.dtype != in_dtype else work


# --------------------------------------------------------------------------- Pillow

_PIL_METHODS = {
    "bicubic": "BICUBIC",
    "bilinear": "BILINEAR",
    "nearest": "NEAREST",
    "lanczos": "LANCZOS",
    "box": "BOX",
}


def pil_resize(
    x: torch.Tensor,
    size: Sequence[int] | None = None,
    scale: float | None = None,
    method: str = "bicubic",
) -> torch.Tensor:
    """Resize with Pillow on 8-bit data, as LIIF/LTE's ``transforms.Resize`` did.

    x: (C, H, W) or (B, C, H, W), uint8 or float in [0, 1]. Float input is clamped and rounded to
       8 bits first (torchvision's ToPILImage truncated instead; the two agree for images that
       came from 8-bit files, which is what the benchmarks use), resized, and returned as float
       k / 255 in the input dtype; uint8 input returns uint8.
    size: (h_out, w_out); or ``scale``, with the output size ceil(scale * n) as in MATLAB.

    Pillow's filters are antialiased when shrinking and clip the kernel at the image border
    (renormalising the weights) instead of mirroring, so results differ from :func:`imresize`
    near borders and by small amounts inside. Runs on the CPU; the result is moved back to
    ``x.device``.
    """
    from PIL import Image

    if method not in _PIL_METHODS:
        raise ValueError(f"unknown Pillow method {method!r}; use one of {sorted(_PIL_METHODS)}")
    if x.ndim not in (3, 4):
        raise ValueError(f"pil_resize expects (C, H, W) or (B, C, H, W), got {tuple(x.shape)}")
    H, W = int(x.shape[-2]), int(x.shape[-1])
    (h, w), _ = output_size((H, W), scale=scale, size=size)
    if x.dtype == torch.uint8:
        u8 = x
    elif x.dtype.is_floating_point:
        u8 = (x.detach().float().clamp(0, 1) * 255.0).round().to(torch.uint8)
    else:
        raise TypeError(f"pil_resize supports float and uint8 tensors, got {x.dtype}")
    batch = u8.reshape(-1, u8.shape[-3], H, W).cpu().numpy()
    resample = getattr(Image.Resampling, _PIL_METHODS[method])
    out = np.empty((batch.shape[0], batch.shape[1], h, w), dtype=np.uint8)
    for b in range(batch.shape[0]):
        if batch.shape[1] == 3:
            img = Image.fromarray(np.ascontiguousarray(batch[b].transpose(1, 2, 0)), mode="RGB")
            out[b] = np.asarray(img.resize((w, h), resample=resample)).transpose(2, 0, 1)
        else:
            for c in range(batch.shape[1]):
                img = Image.fromarray(np.ascontiguousarray(batch[b, c]), mode="L")
                out[b, c] = np.asarray(img.resize((w, h), resample=resample))
    res = torch.from_numpy(out).reshape(*x.shape[:-2], h, w).to(x.device)
    if x.dtype == torch.uint8:
        return res
    return (res.to(torch.float32) / 255.0).to(x.dtype)


def pil_bicubic(
    x: torch.Tensor, size: Sequence[int] | None = None, scale: float | None = None
) -> torch.Tensor:
    """Pillow bicubic resize (LIIF/LTE's LR generator); see :func:`pil_resize`."""
    return pil_resize(x, size=size, scale=scale, method="bicubic")
