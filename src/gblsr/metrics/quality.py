"""Image-quality metrics: the SR literature's PSNR / SSIM, optional LPIPS, and GB-LSR's panels.

Conventions (all functions are pure and device/dtype agnostic):

* Images are (B, C, H, W) or (C, H, W) tensors in [0, 1] (C = 3, or 1 for grey). Per-image metrics
  return a (B,) float64 tensor (a 0-d tensor for (C, H, W) input).
* Statistics are accumulated in float64.
* ``channel="y"`` converts RGB to the luma of ITU-R BT.601 exactly as MATLAB's ``rgb2ycbcr`` does
  for double images: Y = 16/255 + (65.481 R + 128.553 G + 24.966 B) / 255, in [16/255, 235/255].
  (LIIF's ``calc_psnr`` uses 65.738/256, 129.057/256, 25.064/256 on the difference; the two
  differ by a relative 4e-7, far below the printed precision.)
* ``shave`` removes that many pixels from every border before anything is computed.

Differences from the GB-LSR reference ``metrics/quality.py`` (same names, standard defaults):

* ``psnr``: no 1e-8 added to the MSE (identical images give +inf), optional Y channel and shave.
* ``ssim``: Y channel and 'valid' filtering by default (the SR literature's SSIM, i.e. Wang et
  al.'s MATLAB ``ssim_index`` on Y); the reference's RGB zero-padded variant is
  ``ssim(..., channel="rgb", padding="zeros")``.
* ``lpips_metric`` never downloads anything: without the ``lpips`` package or the AlexNet weights it
  warns once, naming what is missing, and returns None (panels then hold NaN).
* ``edge_mask`` uses an exact quantile without ``torch.quantile``'s 2**24-element limit.
* ``local_spectrum_error`` and the per-region metrics crop to whole patches instead of asserting.
* ``compute_metric_panel`` skips LPIPS cleanly when unavailable, like the varres panel.
"""

from __future__ import annotations

import math
import os
import warnings
from typing import Literal

import torch
import torch.nn.functional as F

from ..data.regions import REGIONS, image_to_patch_grid, quantile, sobel_magnitude

__all__ = [
    "rgb_to_y",
    "psnr",
    "ssim",
    "has_lpips",
    "lpips_status",
    "get_lpips",
    "lpips_metric",
    "edge_mask",
    "edge_lpips",
    "local_spectrum_error",
    "per_patch_psnr",
    "per_patch_ssim",
    "per_patch_lse",
    "per_region_mean",
    "compute_metric_panel",
    "compute_metric_panel_varres",
    "LPIPSWrapper",
]

Channel = Literal["rgb", "y"]

_Y_WEIGHTS = (65.481 / 255.0, 128.553 / 255.0, 24.966 / 255.0)
_Y_OFFSET = 16.0 / 255.0


# --------------------------------------------------------------------------- helpers


def _batch(x: torch.Tensor) -> tuple[torch.Tensor, bool]:
    if x.ndim == 3:
        return x[None], True
    if x.ndim == 4:
        return x, False
    raise ValueError(
        f"expected an image (C, H, W) or batch (B, C, H, W), got shape {tuple(x.shape)}"
    )


def _float64(x: torch.Tensor) -> torch.Tensor:
    if x.dtype == torch.uint8:
        return x.to(torch.float64) / 255.0
    return x.to(torch.float64)


def _check_pair(pred: torch.Tensor, target: torch.Tensor) -> None:
    if pred.shape != target.shape:
        raise ValueError(
            f"pred and target shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}"
        )


def _shave(x: torch.Tensor, shave: int) -> torch.Tensor:
    s = int(shave)
    if s < 0:
        raise ValueError(f"shave must be >= 0, got {shave}")
    if s == 0:
        return x
    if x.shape[-2] <= 2 * s or x.shape[-1] <= 2 * s:
        raise ValueError(f"image {x.shape[-2]}x{x.shape[-1]} has no pixels left after shaving {s}")
    return x[..., s:-s, s:-s]


def _out(v: torch.Tensor, single: bool) -> torch.Tensor:
    return v[0] if single else v


def rgb_to_y(x: torch.Tensor) -> torch.Tensor:
    """BT.601 luma as MATLAB ``rgb2ycbcr`` (double input): (..., 3, H, W) -> (..., 1, H, W).

    Single-channel input is treated as grey RGB (R = G = B). Values stay unrounded floats.
    """
    if x.shape[-3] == 1:
        x = x.expand(*x.shape[:-3], 3, *x.shape[-2:])
    if x.shape[-3] != 3:
        raise ValueError(f"rgb_to_y expects 1 or 3 channels, got {x.shape[-3]}")
    r, g, b = x[..., 0:1, :, :], x[..., 1:2, :, :], x[..., 2:3, :, :]
    return _Y_OFFSET + _Y_WEIGHTS[0] * r + _Y_WEIGHTS[1] * g + _Y_WEIGHTS[2] * b


def _select(x: torch.Tensor, channel: Channel) -> torch.Tensor:
    if channel == "y":
        return rgb_to_y(x)
    if channel == "rgb":
        return x
    raise ValueError(f"channel must be 'rgb' or 'y', got {channel!r}")


# --------------------------------------------------------------------------- PSNR / SSIM


def psnr(
    pred: torch.Tensor,
    target: torch.Tensor,
    data_range: float = 1.0,
    eps: float = 0.0,
    *,
    channel: Channel = "rgb",
    shave: int = 0,
) -> torch.Tensor:
    """Peak signal-to-noise ratio per image, 10 log10(data_range^2 / (MSE + eps)).

    pred, target: (B, C, H, W) or (C, H, W), float in [0, data_range] (uint8 is read as k/255).
    channel: "rgb" (MSE over all channels) or "y" (BT.601 luma, as in SR benchmark tables).
    shave: border pixels removed on every side first (benchmarks: the scale; DIV2K: scale + 6).
    Returns (B,) float64 (0-d for a single image); +inf for identical images when eps = 0.
    """
    _check_pair(pred, target)
    p, single = _batch(_float64(pred))
    t, _ = _batch(_float64(target))
    p = _shave(_select(p, channel), shave)
    t = _shave(_select(t, channel), shave)
    mse = (p - t).pow(2).mean(dim=(1, 2, 3))
    with torch.no_grad():
        val = 10.0 * torch.log10(float(data_range) ** 2 / (mse + eps))
    return _out(val, single)


def _gaussian_1d(size: int, sigma: float, dtype, device) -> torch.Tensor:
    c = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2.0
    g = torch.exp(-(c**2) / (2.0 * sigma**2))
    return g / g.sum()


def _ssim_maps(p: torch.Tensor, t: torch.Tensor, g: torch.Tensor, c1: float, c2: float, pad: int):
    """SSIM map per channel: (B, C, H, W) -> (B, C, H', W').

    The 2-D Gaussian window is separable, so it is applied as a row and a column filter; the five
    local statistics go through one grouped convolution.
    """
    C = p.shape[1]
    stack = torch.cat([p, t, p * p, t * t, p * t], dim=1)
    n = stack.shape[1]
    k = g.numel()
    stack = F.conv2d(stack, g.view(1, 1, 1, k).expand(n, 1, 1, k), padding=(0, pad), groups=n)
    stack = F.conv2d(stack, g.view(1, 1, k, 1).expand(n, 1, k, 1), padding=(pad, 0), groups=n)
    mu_p, mu_t, e_pp, e_tt, e_pt = stack.split(C, dim=1)
    var_p = e_pp - mu_p**2
    var_t = e_tt - mu_t**2
    cov = e_pt - mu_p * mu_t
    num = (2 * mu_p * mu_t + c1) * (2 * cov + c2)
    den = (mu_p**2 + mu_t**2 + c1) * (var_p + var_t + c2)
    return num / den


def ssim(
    pred: torch.Tensor,
    target: torch.Tensor,
    window_size: int = 11,
    sigma: float = 1.5,
    data_range: float = 1.0,
    eps: float = 0.0,
    *,
    channel: Channel = "y",
    shave: int = 0,
    padding: Literal["valid", "zeros"] = "valid",
) -> torch.Tensor:
    """Structural similarity per image, as SR papers compute it.

    Default: BT.601 Y channel, an 11x11 Gaussian window with sigma 1.5, C1 = (0.01 R)^2,
    C2 = (0.03 R)^2, only window positions fully inside the (shaved) image ("valid"), mean of the
    SSIM map. ``channel="rgb"`` averages the per-channel SSIM; ``padding="zeros"`` keeps every
    position with zero padding (the GB-LSR reference's variant). ``eps`` is added to the
    denominator (0 = the standard formula; C1, C2 already keep it positive).

    pred, target: (B, C, H, W) or (C, H, W) in [0, data_range].
    Returns (B,) float64 (0-d for one image).
    """
    _check_pair(pred, target)
    p, single = _batch(_float64(pred))
    t, _ = _batch(_float64(target))
    p = _shave(_select(p, channel), shave)
    t = _shave(_select(t, channel), shave)
    if padding not in ("valid", "zeros"):
        raise ValueError(f"padding must be 'valid' or 'zeros', got {padding!r}")
    pad = window_size // 2 if padding == "zeros" else 0
    if padding == "valid" and (p.shape[-2] < window_size or p.shape[-1] < window_size):
        raise ValueError(
            f"image {p.shape[-2]}x{p.shape[-1]} is smaller than the "
            f"{window_size}x{window_size} SSIM window"
        )
    window = _gaussian_1d(window_size, sigma, p.dtype, p.device)
    c1 = (0.01 * data_range) ** 2 + eps
    c2 = (0.03 * data_range) ** 2
    with torch.no_grad():
        m = _ssim_maps(p, t, window, c1, c2, pad)
    return _out(m.mean(dim=(1, 2, 3)), single)


# --------------------------------------------------------------------------- LPIPS

_ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
_lpips_cache: dict = {}
_lpips_warned = False


def _lpips_missing() -> str | None:
    """What is missing for offline LPIPS, or None when everything is in place."""
    try:
        import lpips  # noqa: F401
    except Exception as e:  # ImportError, or torchvision failing inside lpips
        return (
            f"the 'lpips' package cannot be imported ({type(e).__name__}: {e}); pip install lpips"
        )
    import lpips as _lp

    lin = os.path.join(os.path.dirname(_lp.__file__), "weights", "v0.1", "alex.pth")
    if not os.path.isfile(lin):
        return f"the LPIPS linear-layer weights are missing ({lin})"
    backbone = os.path.join(torch.hub.get_dir(), "checkpoints", _ALEXNET_FILE)
    if not os.path.isfile(backbone):
        return (
            f"the AlexNet backbone weights are not installed ({backbone}); gblsr never downloads "
            "them: copy the file there (or set TORCH_HOME)"
        )
    return None


def _warn_lpips_once(reason: str) -> None:
    global _lpips_warned
    if not _lpips_warned:
        _lpips_warned = True
        warnings.warn(f"LPIPS unavailable, reporting null: {reason}", RuntimeWarning, stacklevel=3)


def lpips_status() -> str | None:
    """None when LPIPS can run offline, else a one-line description of what is missing."""
    return _lpips_missing()


def has_lpips() -> bool:
    """True when LPIPS can run offline (package, linear weights and AlexNet weights present)."""
    return _lpips_missing() is None


class LPIPSWrapper:
    """Frozen LPIPS (AlexNet) in eval mode; call with [0, 1] images, returns (B,) distances."""

    def __init__(self, device: torch.device | str = "cpu"):
        import lpips

        self.net = lpips.LPIPS(net="alex", verbose=False).to(device).eval()
        for prm in self.net.parameters():
            prm.requires_grad_(False)
        self.device = torch.device(device)

    @torch.no_grad()
    def __call__(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        p = pred.to(self.device, torch.float32) * 2.0 - 1.0
        t = target.to(self.device, torch.float32) * 2.0 - 1.0
        if p.shape[1] == 1:
            p, t = p.expand(-1, 3, -1, -1), t.expand(-1, 3, -1, -1)
        return self.net(p, t).reshape(-1).to(torch.float64)


def get_lpips(device: torch.device | str = "cpu") -> LPIPSWrapper | None:
    """The cached LPIPS model for ``device``; None (warned once) when it cannot run offline."""
    key = str(torch.device(device))
    if key in _lpips_cache:
        return _lpips_cache[key]
    reason = _lpips_missing()
    model = None
    if reason is None:
        try:
            model = LPIPSWrapper(device)
        except Exception as e:  # a broken install must not break an evaluation
            first = str(e).splitlines()[0] if str(e) else ""
            reason = f"LPIPS failed to load ({type(e).__name__}: {first})"
    if model is None:
        _warn_lpips_once(reason or "unknown reason")
    _lpips_cache[key] = model
    return model


def lpips_metric(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor | None:
    """LPIPS-Alex distance per image ((B,) float64, 0-d for one image), or None when unavailable."""
    _check_pair(pred, target)
    p, single = _batch(pred)
    t, _ = _batch(target)
    model = get_lpips(p.device)
    if model is None:
        return None
    return _out(model(p, t), single)


# --------------------------------------------------------------------------- edges and spectra


def edge_mask(x: torch.Tensor, threshold_percentile: float = 0.8, dilate: int = 1) -> torch.Tensor:
    """Pixels whose grey Sobel magnitude is at or above the image's ``threshold_percentile``
    quantile, dilated by a (2 dilate + 1) square. (B, C, H, W) -> (B, 1, H, W) bool."""
    xb, _ = _batch(x)
    mag = sobel_magnitude(xb.float() if not xb.dtype.is_floating_point else xb)
    thr = torch.stack([quantile(m, threshold_percentile) for m in mag])
    mask = (mag >= thr.view(-1, 1, 1, 1)).to(mag.dtype)
    if dilate > 0:
        k = 2 * int(dilate) + 1
        mask = F.max_pool2d(mask, kernel_size=k, stride=1, padding=int(dilate))
    return mask > 0.5


def edge_lpips(
    pred: torch.Tensor, target: torch.Tensor, threshold_percentile: float = 0.8
) -> torch.Tensor | None:
    """LPIPS after greying out (0.5) every pixel outside the target's edge mask, in both images.

    Returns (B,) float64 (0-d for one image), or None when LPIPS is unavailable.
    """
    _check_pair(pred, target)
    p, single = _batch(pred)
    t, _ = _batch(target)
    if get_lpips(p.device) is None:
        return None
    m = edge_mask(t, threshold_percentile)
    grey = torch.full_like(p, 0.5)
    v = lpips_metric(torch.where(m, p, grey), torch.where(m, t, grey))
    return None if v is None else _out(v, single)


def _log_power(patches: torch.Tensor) -> torch.Tensor:
    return torch.fft.fft2(patches, norm="ortho").abs().pow(2).clamp_min(1e-8).log()


def per_patch_lse(pred: torch.Tensor, target: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Mean |log P_pred - log P_target| of grey-patch power spectra. Returns (B, nH, nW) float64."""
    _check_pair(pred, target)
    p, _ = _batch(_float64(pred))
    t, _ = _batch(_float64(target))
    pp = image_to_patch_grid(p.mean(dim=1, keepdim=True), patch_size)[..., 0, :, :]
    tp = image_to_patch_grid(t.mean(dim=1, keepdim=True), patch_size)[..., 0, :, :]
    return (_log_power(pp) - _log_power(tp)).abs().mean(dim=(-2, -1))


def local_spectrum_error(pred: torch.Tensor, target: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Local spectrum error: :func:`per_patch_lse` averaged over patches, per image.

    Only whole patches at the top-left are used; NaN for images smaller than one patch.
    Returns (B,) float64 (0-d for one image).
    """
    _check_pair(pred, target)
    p, single = _batch(pred)
    if p.shape[-2] < patch_size or p.shape[-1] < patch_size:
        return _out(
            torch.full((p.shape[0],), math.nan, dtype=torch.float64, device=p.device), single
        )
    t, _ = _batch(target)
    return _out(per_patch_lse(p, t, patch_size).mean(dim=(1, 2)), single)


def per_patch_psnr(
    pred: torch.Tensor, target: torch.Tensor, patch_size: int, data_range: float = 1.0
) -> torch.Tensor:
    """RGB PSNR of every patch (no eps; +inf for identical patches). Returns (B, nH, nW) float64."""
    _check_pair(pred, target)
    p, _ = _batch(_float64(pred))
    t, _ = _batch(_float64(target))
    d = image_to_patch_grid(p - t, patch_size)
    mse = d.pow(2).mean(dim=(-3, -2, -1))
    return 10.0 * torch.log10(data_range**2 / mse)


def per_patch_ssim(
    pred: torch.Tensor, target: torch.Tensor, patch_size: int, data_range: float = 1.0
) -> torch.Tensor:
    """SSIM of every patch from whole-patch statistics (no window), per channel then averaged
    (the reference's per-region SSIM). Returns (B, nH, nW) float64."""
    _check_pair(pred, target)
    p = image_to_patch_grid(_batch(_float64(pred))[0], patch_size)
    t = image_to_patch_grid(_batch(_float64(target))[0], patch_size)
    dims = (-2, -1)
    mu_p, mu_t = p.mean(dim=dims), t.mean(dim=dims)
    var_p = p.var(dim=dims, unbiased=False)
    var_t = t.var(dim=dims, unbiased=False)
    cov = ((p - mu_p[..., None, None]) * (t - mu_t[..., None, None])).mean(dim=dims)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * mu_p * mu_t + c1) * (2 * cov + c2)) / (
        (mu_p**2 + mu_t**2 + c1) * (var_p + var_t + c2)
    )
    return s.mean(dim=-1)


def per_region_mean(values: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean of per-patch ``values`` over each region: (B, nH, nW) x2 -> (B, 4) float64.

    Columns follow ``REGIONS`` (smooth, edge, texture, mixed); NaN where an image has no patch of
    that region. Infinite values (identical patches) are kept, so a region can average to +inf.
    """
    if values.shape != labels.shape:
        raise ValueError(
            f"values {tuple(values.shape)} and labels {tuple(labels.shape)} differ in shape"
        )
    v = values.to(torch.float64).reshape(values.shape[0], -1)
    lab = labels.reshape(labels.shape[0], -1)
    out = torch.full((v.shape[0], len(REGIONS)), math.nan, dtype=torch.float64, device=v.device)
    for r in range(len(REGIONS)):
        sel = lab == r
        n = sel.sum(dim=1)
        total = torch.where(sel, v, torch.zeros_like(v)).sum(dim=1)
        out[:, r] = torch.where(n > 0, total / n.clamp_min(1), out[:, r])
    return out


# --------------------------------------------------------------------------- panels


def _nan(b: int, device) -> torch.Tensor:
    return torch.full((b,), math.nan, dtype=torch.float64, device=device)


def compute_metric_panel_varres(
    pred: torch.Tensor, target: torch.Tensor, patch_size: int, *, lpips: bool = True
) -> dict[str, torch.Tensor]:
    """Whole-image metrics for images of any size.

    pred, target: (B, C, H, W) in [0, 1] (pred is clamped). Returns (B,) float64 tensors under
    ``psnr`` (RGB), ``ssim`` (standard Y), ``lpips``, ``edge_lpips`` (NaN when LPIPS is unavailable
    or ``lpips=False``) and ``local_spectrum_error`` (NaN when smaller than one patch).
    """
    if pred.shape != target.shape:
        raise ValueError(
            f"pred and target shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}"
        )
    p, _ = _batch(pred.clamp(0, 1))
    t, _ = _batch(target)
    out = {"psnr": psnr(p, t), "ssim": ssim(p, t)}
    lp = lpips_metric(p, t) if lpips else None
    out["lpips"] = lp if lp is not None else _nan(p.shape[0], p.device)
    el = edge_lpips(p, t) if (lpips and lp is not None) else None
    out["edge_lpips"] = el if el is not None else _nan(p.shape[0], p.device)
    out["local_spectrum_error"] = local_spectrum_error(p, t, patch_size)
    return out


def compute_metric_panel(
    pred: torch.Tensor,
    target: torch.Tensor,
    patch_size: int,
    patch_labels: torch.Tensor | None = None,
    *,
    lpips: bool = True,
) -> dict[str, torch.Tensor]:
    """The varres panel plus per-region means of patch PSNR, SSIM and local spectrum error.

    patch_labels: (B, nH, nW) from :func:`gblsr.data.label_patches` on the target (None: no
    region outputs). Adds ``psnr_region``, ``ssim_region``, ``local_spectrum_error_region``, each
    (B, 4) float64 in ``REGIONS`` order.
    """
    out = compute_metric_panel_varres(pred, target, patch_size, lpips=lpips)
    if patch_labels is not None:
        p, _ = _batch(pred.clamp(0, 1))
        t, _ = _batch(target)
        out["psnr_region"] = per_region_mean(per_patch_psnr(p, t, patch_size), patch_labels)
        out["ssim_region"] = per_region_mean(per_patch_ssim(p, t, patch_size), patch_labels)
        out["local_spectrum_error_region"] = per_region_mean(
            per_patch_lse(p, t, patch_size), patch_labels
        )
    return out
