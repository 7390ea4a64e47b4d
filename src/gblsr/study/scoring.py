"""Scoring a trained method for a study: SR benchmark rows, native whole-image panels with the
patch-seam measure, and the crops of the visual grid.

SR scoring is :func:`gblsr.evaluation.evaluate` (LR files where a set has them, else MATLAB
bicubic of the HR cropped to a multiple of the scale). Native scoring runs each whole image
through the arm (its own reflect padding to the patch grid; the shape-locked global Fourier-MLP
is run tile by tile on an image reflect-padded to a multiple of its size) and adds the seam
measure: PSNR on pixels next to an internal patch border against PSNR on the other pixels.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data.datasets import ImageTooSmallError, SRPairs, open_dataset
from ..errors import UserInputError

__all__ = [
    "seam_masks",
    "masked_psnr",
    "count_images",
    "score_sr",
    "score_native",
    "visual_crops_sr",
    "visual_crops_native",
    "WholeImage",
]


def seam_masks(
    H: int, W: int, patch: int, top: int = 0, left: int = 0, margin: int = 2
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixels next to an internal patch border, and the others.

    The patch grid starts ``top`` / ``left`` pixels above / left of the image (the padding of
    the native arm). A pixel is a seam pixel when it is the last or first pixel of a patch and
    its neighbour across that border lies inside the image. Pixels within ``margin`` of the image
    edge belong to neither set (padding affects them). Returns two (H, W) bool masks.
    """
    if patch < 2:
        raise ValueError(f"patch must be >= 2, got {patch}")

    def near(n: int, off: int) -> torch.Tensor:
        i = torch.arange(n)
        r = (i + off) % patch
        return ((r == 0) & (i > 0)) | ((r == patch - 1) & (i < n - 1))

    seam = near(H, top)[:, None] | near(W, left)[None, :]
    ys, xs = torch.arange(H)[:, None], torch.arange(W)[None, :]
    valid = (ys >= margin) & (ys < H - margin) & (xs >= margin) & (xs < W - margin)
    return seam & valid, valid & ~seam


def masked_psnr(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> float | None:
    """RGB PSNR (peak 1) over the pixels of ``mask``. pred, target (1|B, 3, H, W); mask (H, W).
    None when the mask is empty or the error is zero."""
    if not bool(mask.any()):
        return None
    d = (pred.double() - target.double()).pow(2).mean(dim=1)[..., mask.to(pred.device)]
    mse = float(d.mean())
    return 10.0 * math.log10(1.0 / mse) if mse > 0 else None


def _grid_offset(n: int, patch: int) -> int:
    """The native arm's top/left padding: floor of half the padding to a multiple of patch."""
    return ((-(-n // patch)) * patch - n) // 2


class WholeImage(nn.Module):
    """A native arm as a whole-image reconstruction model that also measures seams.

    forward(x (1, 3, H, W)) -> {"recon": (1, 3, H, W)}; each call appends the image's seam
    PSNRs and local spectrum error to ``extra`` (one dict per image, in call order).
    """

    task = "reconstruction"

    def __init__(self, model: nn.Module, patch: int, locked_size: int | None = None):
        super().__init__()
        self.model = model
        self.patch = int(patch)
        self.locked = locked_size
        self.extra: list[dict[str, Any]] = []

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        if self.locked is None:
            return self.model(x)["recon"]
        n = self.locked
        H, W = x.shape[-2:]
        ph, pw = (-H) % n, (-W) % n
        mode = "reflect" if ph < H and pw < W else "replicate"
        xp = F.pad(x, (0, pw, 0, ph), mode=mode)
        out = torch.empty_like(xp)
        for t in range(0, xp.shape[-2], n):
            for s in range(0, xp.shape[-1], n):
                out[..., t : t + n, s : s + n] = self.model(xp[..., t : t + n, s : s + n])["recon"]
        return out[..., :H, :W]

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        from ..metrics.quality import local_spectrum_error

        recon = self._run(x).float().clamp(0, 1)
        H, W = int(x.shape[-2]), int(x.shape[-1])
        P = self.patch
        seam, inner = seam_masks(H, W, P, _grid_offset(H, P), _grid_offset(W, P))
        ps, pi = masked_psnr(recon, x, seam), masked_psnr(recon, x, inner)
        lse = float(local_spectrum_error(recon, x.float(), P).reshape(-1)[0])
        self.extra.append(
            {
                "psnr_seam": ps,
                "psnr_interior": pi,
                "seam_gap_db": None if ps is None or pi is None else pi - ps,
                "local_spectrum_error": lse if math.isfinite(lse) else None,
            }
        )
        return {"recon": recon}


def count_images(sets: list[str], caps: list[int | None]) -> int:
    return sum(len(open_dataset(s, max_images=c)) for s, c in zip(sets, caps))


def _bar(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False, disable=not enabled, unit="img")


def _slim(row: dict[str, Any], keep_regions: bool) -> dict[str, Any]:
    out = {k: v for k, v in row.items() if k != "images"}
    if not keep_regions:
        out = {k: v for k, v in out.items() if not k.endswith("_region")}
    out["images"] = [
        {k: v for k, v in im.items() if keep_regions or not k.endswith("_region")}
        for im in row.get("images", [])
    ]
    return out


def score_sr(model, cfg, progress: bool = True, label: str = "") -> list[dict[str, Any]]:
    """One row per (set, scale) at the study's in- and out-of-distribution scales."""
    from ..evaluation import evaluate

    ev = cfg.eval
    total = count_images(ev["sets"], ev["caps"]) * len(cfg.scales)
    rows = []
    with _bar(total, f"score {label}", progress) as bar:
        for path, cap in zip(ev["sets"], ev["caps"]):
            rows += evaluate(
                model,
                [path],
                scales=cfg.scales,
                protocol=ev["protocol"],
                lr_source=ev["lr_source"],
                max_images=cap,
                on_image=lambda: bar.update(1),
            )
    return [_slim(r, keep_regions=False) for r in rows]


def score_native(
    model: nn.Module, cfg, thresholds, progress: bool = True, label: str = ""
) -> list[dict[str, Any]]:
    """One row per set: PSNR / SSIM / local spectrum error overall and per region, seam PSNRs."""
    from ..evaluation import evaluate
    from ..metrics.quality import has_lpips

    P = int(cfg.native.get("patch_size", 32))
    locked = (
        int(model.cfg.image_size) if getattr(model.cfg, "arm", "") != "local_spectral" else None
    )
    ev = cfg.eval
    rows = []
    for path, cap in zip(ev["sets"], ev["caps"]):
        wrap = WholeImage(model, P, locked).eval()
        total = count_images([path], [cap])
        with _bar(total, f"score {label}", progress) as bar:
            (row,) = evaluate(
                wrap,
                [path],
                max_images=cap,
                region_thresholds=thresholds,
                patch_size=P,
                lpips=has_lpips(),  # the panel's LPIPS where the package and weights exist
                on_image=lambda: bar.update(1),
            )
        if len(wrap.extra) != len(row["images"]):
            raise RuntimeError("seam measures and scored images are out of step")
        for im, ex in zip(row["images"], wrap.extra):
            im.update(ex)
        for key in ("psnr_seam", "psnr_interior", "seam_gap_db", "local_spectrum_error"):
            vals = [im[key] for im in row["images"] if im.get(key) is not None]
            row[key] = sum(vals) / len(vals) if vals else None
        rows.append(_slim(row, keep_regions=True))
    return rows


def _pick(seq_names: list[str], spec: Any, what: str) -> int:
    if isinstance(spec, int) and not isinstance(spec, bool):
        if not 0 <= spec < len(seq_names):
            raise UserInputError(
                f"visual.{what} index {spec} out of range (0..{len(seq_names) - 1})"
            )
        return spec
    if str(spec) in seq_names:
        return seq_names.index(str(spec))
    raise UserInputError(f"visual.{what} {spec!r} not found; choose from {', '.join(seq_names)}")


def _visual_image(cfg):
    sets = cfg.eval["sets"]
    names = [open_dataset(s).name for s in sets]
    ds = open_dataset(sets[_pick(names, cfg.visual["set"], "set")])
    stems = [p.stem for p in ds.paths]
    return ds, _pick(stems, cfg.visual["image"], "image")


def _centre(x: torch.Tensor, c: int, H: int, W: int) -> torch.Tensor:
    c = min(c, H, W)
    t, s = (H - c) // 2, (W - c) // 2
    return x[..., t : t + c, s : s + c]


@torch.no_grad()
def visual_crops_sr(model, cfg) -> dict[str, dict[str, torch.Tensor]]:
    """{"x4": {"pred": (3, c, c), "gt": ..., "bicubic": ...}, ...}: the same centre crop (of the
    smallest HR crop over the scales) for each visual scale."""
    from ..evaluation import get_baseline

    ds, i = _visual_image(cfg)
    samples = {}
    for s in cfg.visual["scales"]:
        try:
            samples[s] = SRPairs(ds, s, lr_source=cfg.eval["lr_source"]).get(i)
        except ImageTooSmallError:
            continue
    if not samples:
        return {}
    H = min(int(v.hr.shape[-2]) for v in samples.values())
    W = min(int(v.hr.shape[-1]) for v in samples.values())
    dev = next(iter(model.parameters())).device if isinstance(model, nn.Module) else "cpu"
    bic = get_baseline("bicubic")
    out = {}
    for s, smp in samples.items():
        h, w = smp.hr.shape[-2:]
        lr = smp.lr[None].to(dev)
        pred = model.predict_full(lr, h, w).float().clamp(0, 1).cpu()[0]
        b = bic.predict_full(smp.lr[None], h, w).float().clamp(0, 1)[0]
        c = int(cfg.visual["crop"])
        out[f"x{s:g}"] = {
            "pred": _centre(pred, c, H, W),
            "gt": _centre(smp.hr, c, H, W),
            "bicubic": _centre(b, c, H, W),
        }
    return out


@torch.no_grad()
def visual_crops_native(model: nn.Module, cfg) -> dict[str, dict[str, torch.Tensor]]:
    """{"recon": {"pred": (3, c, c), "gt": ...}}: a centre crop of the visual image."""
    ds, i = _visual_image(cfg)
    x = ds[i][None].to(next(model.parameters()).device)
    P = int(cfg.native.get("patch_size", 32))
    locked = (
        int(model.cfg.image_size) if getattr(model.cfg, "arm", "") != "local_spectral" else None
    )
    recon = WholeImage(model, P, locked).eval()(x)["recon"].cpu()[0]
    H, W = x.shape[-2:]
    c = int(cfg.visual["crop"])
    return {"recon": {"pred": _centre(recon, c, H, W), "gt": _centre(x.cpu()[0], c, H, W)}}
