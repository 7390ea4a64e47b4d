"""Quality metrics: PSNR / SSIM as SR papers compute them, optional LPIPS, GB-LSR panels.

See :mod:`gblsr.metrics.quality` for the exact definitions and the differences from the GB-LSR
reference implementation.
"""

from .quality import (
    LPIPSWrapper,
    compute_metric_panel,
    compute_metric_panel_varres,
    edge_lpips,
    edge_mask,
    get_lpips,
    has_lpips,
    local_spectrum_error,
    lpips_metric,
    lpips_status,
    per_patch_lse,
    per_patch_psnr,
    per_patch_ssim,
    per_region_mean,
    psnr,
    rgb_to_y,
    ssim,
)

__all__ = [
    "psnr",
    "ssim",
    "rgb_to_y",
    "lpips_metric",
    "has_lpips",
    "lpips_status",
    "get_lpips",
    "LPIPSWrapper",
    "edge_lpips",
    "edge_mask",
    "local_spectrum_error",
    "per_patch_psnr",
    "per_patch_ssim",
    "per_patch_lse",
    "per_region_mean",
    "compute_metric_panel",
    "compute_metric_panel_varres",
]
