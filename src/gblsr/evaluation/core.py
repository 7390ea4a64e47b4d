"""The SR evaluation protocol: pairs, metrics, baselines and :func:`evaluate` (the package doc
of :mod:`gblsr.evaluation` states the protocol)."""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from ..data.datasets import LR_SOURCES, ImageDataset, ImageTooSmallError, SRPairs, open_dataset
from ..data.regions import REGIONS, RegionThresholds, label_patches
from ..data.resize import imresize
from ..errors import UserInputError
from ..metrics.quality import (
    get_lpips,
    per_patch_lse,
    per_patch_psnr,
    per_patch_ssim,
    per_region_mean,
    psnr,
    ssim,
)
from ..representation import Representation, SRModel, check_window

__all__ = [
    "Protocol",
    "PROTOCOLS",
    "InterpolationBaseline",
    "BASELINES",
    "get_baseline",
    "evaluate",
    "evaluate_sr",
    "evaluate_reconstruction",
    "parse_scale",
]


@dataclass(frozen=True)
class Protocol:
    """How a prediction is scored: the PSNR channel and the border shave for a scale."""

    name: str
    channel: str  # "y" or "rgb" (PSNR); SSIM always uses Y
    extra_shave: int  # shave = ceil(scale) + extra_shave; -1 means no shave at all

    def shave(self, scale: float) -> int:
        if self.extra_shave < 0:
            return 0
        return int(math.ceil(float(scale) - 1e-9)) + self.extra_shave


PROTOCOLS: dict[str, Protocol] = {
    "benchmark": Protocol("benchmark", "y", 0),
    "div2k": Protocol("div2k", "rgb", 6),
    "reconstruction": Protocol("reconstruction", "rgb", -1),
}


class InterpolationRepresentation(Representation):
    """An LR image to be resized: rendering at H x W is one ``imresize`` (cached per size);
    windows are cut from it."""

    def __init__(self, baseline: InterpolationBaseline, lr: torch.Tensor):
        self.baseline, self.lr = baseline, lr
        self.batch_size, self.device, self.dtype = int(lr.shape[0]), lr.device, lr.dtype
        self.input_size = (int(lr.shape[-2]), int(lr.shape[-1]))
        self._full: tuple[tuple[int, int], torch.Tensor] | None = None

    def bytes_per_pixel(self, H: int, W: int) -> int:
        return 3 * 4 * self.batch_size

    def render_region(self, top, left, height, width, H, W, **options) -> torch.Tensor:
        if options:
            raise TypeError(f"interpolation takes no render options (got {sorted(options)})")
        check_window(top, left, height, width, H, W)
        if self._full is None or self._full[0] != (H, W):
            self._full = ((H, W), self.baseline.resize(self.lr, H, W))
        return self._full[1][..., top : top + height, left : left + width]


class InterpolationBaseline(SRModel, nn.Module):
    """Plain interpolation as an SR "model": MATLAB ``imresize`` of the LR to the HR size.

    With ``uint8=True`` (default) the LR is taken as the 8-bit image it is and resized with
    MATLAB's uint8 semantics, so the output equals MATLAB's ``imresize(lr, [H W], method)`` on the
    LR file (8-bit output) - the classic "Bicubic" row of SR tables. ``uint8=False`` resizes in
    floating point.
    """

    task = "sr"

    def __init__(self, method: str = "bicubic", uint8: bool = True):
        super().__init__()
        if method not in ("bicubic", "bilinear", "nearest"):
            raise UserInputError(
                f"unknown interpolation {method!r}; use bicubic, bilinear or nearest"
            )
        self.method = method
        self.uint8 = bool(uint8)

    @property
    def registry_name(self) -> str:
        return self.method

    def get_config(self) -> dict[str, Any]:
        return {"method": self.method, "uint8": self.uint8}

    def encode_state(self, lr: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"lr": lr}

    def representation(self, state, input_size=None) -> InterpolationRepresentation:
        return InterpolationRepresentation(self, state["lr"])

    def resize(self, lr: torch.Tensor, H: int, W: int) -> torch.Tensor:
        """lr (B, 3, h, w) in [0, 1] -> (B, 3, H, W) in [0, 1]."""
        if self.uint8:
            q = (lr.clamp(0, 1) * 255.0).round().to(torch.uint8)
            return imresize(q, size=(H, W), method=self.method).to(lr.dtype) / 255.0
        return imresize(lr, size=(H, W), method=self.method)

    def forward(self, lr: torch.Tensor, H: int, W: int) -> torch.Tensor:
        return self.resize(lr, H, W)


BASELINES = ("bicubic", "bilinear", "nearest")


def get_baseline(name: str) -> InterpolationBaseline:
    """The built-in ``bicubic``, ``bilinear`` or ``nearest`` baseline."""
    if name not in BASELINES:
        raise UserInputError(f"unknown baseline {name!r}; use one of {', '.join(BASELINES)}")
    return InterpolationBaseline(name)


def parse_scale(value: Any) -> float:
    """A scale factor >= 1 (finite); raises UserInputError otherwise."""
    try:
        s = float(value)
    except (TypeError, ValueError):
        raise UserInputError(f"scale must be a number, got {value!r}") from None
    if not math.isfinite(s) or s < 1:
        raise UserInputError(f"scale must be a finite number >= 1, got {value!r}")
    return s


# --------------------------------------------------------------------------- helpers


def _model_device(model) -> torch.device:
    if isinstance(model, nn.Module):
        for t in list(model.parameters()) + list(model.buffers()):
            return t.device
    return torch.device("cpu")


def _num(v: Any) -> float | None:
    """A JSON-safe float: None for NaN / inf / None."""
    if v is None:
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def _mean(vals: Sequence[float | None]) -> float | None:
    """Mean of per-image values; None if any value is missing or not finite (e.g. +inf PSNR)."""
    if not vals or any(v is None or not math.isfinite(v) for v in vals):
        return None
    return float(sum(vals) / len(vals))


def _scale_out(s: float) -> int | float:
    return int(round(s)) if abs(s - round(s)) < 1e-9 else float(s)


def _open_all(
    datasets: Iterable[ImageDataset | str | os.PathLike], max_images: int | None
) -> list[ImageDataset]:
    out = []
    for d in datasets:
        if isinstance(d, ImageDataset):
            if max_images is not None:
                d = copy.copy(d)
                d.paths = d.paths[: max(0, int(max_images))]
            out.append(d)
        else:
            out.append(open_dataset(d, max_images=max_images))
    return out


class _Scorer:
    """Per-image metrics under one protocol and shave."""

    def __init__(self, channel: str, shave: int, lpips_model, thresholds, patch_size: int):
        self.channel = channel
        self.shave = shave
        self.lpips_model = lpips_model
        self.thresholds = thresholds
        self.patch_size = patch_size

    def fits(self, H: int, W: int) -> bool:
        s = self.shave
        return H - 2 * s >= 11 and W - 2 * s >= 11

    def __call__(self, pred: torch.Tensor, hr: torch.Tensor, want_lpips: bool) -> dict[str, Any]:
        """pred, hr: (1, 3, H, W) in [0, 1]."""
        res: dict[str, Any] = {
            "psnr": _num(psnr(pred, hr, channel=self.channel, shave=self.shave)[0]),
            "ssim": _num(ssim(pred, hr, channel="y", shave=self.shave)[0]),
        }
        s = self.shave
        p_c = pred[..., s : pred.shape[-2] - s, s : pred.shape[-1] - s]
        t_c = hr[..., s : hr.shape[-2] - s, s : hr.shape[-1] - s]
        if want_lpips:
            res["lpips"] = None if self.lpips_model is None else _num(self.lpips_model(p_c, t_c)[0])
        if self.thresholds is not None:
            P = self.patch_size
            if p_c.shape[-2] >= P and p_c.shape[-1] >= P:
                labels = label_patches(t_c, P, self.thresholds)
                for key, fn in (
                    ("psnr", per_patch_psnr),
                    ("ssim", per_patch_ssim),
                    ("local_spectrum_error", per_patch_lse),
                ):
                    vals = per_region_mean(fn(p_c, t_c, P), labels)[0]
                    res[f"{key}_region"] = {r: _num(vals[i]) for i, r in enumerate(REGIONS)}
        return res


def _region_means(images: list[dict]) -> dict[str, dict[str, float | None]]:
    out: dict[str, dict[str, float | None]] = {}
    for key in ("psnr_region", "ssim_region", "local_spectrum_error_region"):
        per = [im[key] for im in images if key in im]
        if not per:
            continue
        out[key] = {}
        for r in REGIONS:
            vals = [d[r] for d in per if d[r] is not None]
            out[key][r] = float(sum(vals) / len(vals)) if vals else None
    return out


def _make_row(
    ds: ImageDataset,
    scale: float,
    proto: Protocol,
    shave: int,
    lr_source: str,
    images: list[dict],
    skipped: list[str],
    want_lpips: bool,
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "dataset": ds.name,
        "path": str(ds.root),
        "layout": ds.layout,
        "scale": _scale_out(scale),
        "protocol": proto.name,
        "channel": proto.channel,
        "shave": shave,
        "lr_source": lr_source,
        "psnr": _mean([im["psnr"] for im in images]),
        "ssim": _mean([im["ssim"] for im in images]),
    }
    if want_lpips:
        row["lpips"] = _mean([im.get("lpips") for im in images])
    row.update(_region_means(images))
    row["n_images"] = len(images)
    if skipped:
        row["skipped"] = skipped
    row["images"] = images
    return row


# --------------------------------------------------------------------------- evaluation


def evaluate_sr(
    model: nn.Module,
    datasets: Sequence[ImageDataset],
    scales: Sequence[float],
    protocol: str = "benchmark",
    lr_source: str = "auto",
    device: torch.device | str | None = None,
    lpips: bool = False,
    region_thresholds: RegionThresholds | None = None,
    patch_size: int = 32,
    on_image: Callable[[], None] | None = None,
) -> list[dict[str, Any]]:
    """Arbitrary-scale SR evaluation; see :func:`evaluate`."""
    if protocol not in ("benchmark", "div2k"):
        raise UserInputError(f"unknown protocol {protocol!r}; use benchmark or div2k")
    if lr_source not in LR_SOURCES:
        raise UserInputError(f"unknown LR source {lr_source!r}; use one of {', '.join(LR_SOURCES)}")
    proto = PROTOCOLS[protocol]
    dev = torch.device(device) if device is not None else _model_device(model)
    lp = get_lpips(dev) if lpips else None
    rows = []
    for ds in datasets:
        for s in scales:
            s = parse_scale(s)
            shave = proto.shave(s)
            scorer = _Scorer(proto.channel, shave, lp, region_thresholds, patch_size)
            pairs = SRPairs(ds, s, lr_source=lr_source)
            images, skipped = [], []
            for i in range(len(pairs)):
                try:
                    sample = pairs.get(i)
                except ImageTooSmallError:
                    sample = None
                if sample is None or not scorer.fits(*sample.hr.shape[-2:]):
                    skipped.append(ds.paths[i].stem)
                else:
                    H, W = int(sample.hr.shape[-2]), int(sample.hr.shape[-1])
                    with torch.no_grad():
                        pred = model.predict_full(sample.lr[None].to(dev), H, W)
                    if tuple(pred.shape[-2:]) != (H, W):
                        raise RuntimeError(
                            f"model returned {tuple(pred.shape)} for a {H}x{W} request"
                        )
                    pred = pred.float().clamp(0, 1)
                    hr = sample.hr[None].to(pred.device)
                    scores = scorer(pred, hr, lpips)
                    images.append({"name": sample.name, **scores, "lr_origin": sample.lr_origin})
                if on_image is not None:
                    on_image()
            rows.append(_make_row(ds, s, proto, shave, lr_source, images, skipped, lpips))
    return rows


def evaluate_reconstruction(
    model: nn.Module,
    datasets: Sequence[ImageDataset],
    device: torch.device | str | None = None,
    lpips: bool = False,
    region_thresholds: RegionThresholds | None = None,
    patch_size: int = 32,
    on_image: Callable[[], None] | None = None,
) -> list[dict[str, Any]]:
    """Native reconstruction: ``model(hr)["recon"]`` vs ``hr`` (scale 1, RGB PSNR, no shave)."""
    proto = PROTOCOLS["reconstruction"]
    dev = torch.device(device) if device is not None else _model_device(model)
    lp = get_lpips(dev) if lpips else None
    scorer = _Scorer(proto.channel, 0, lp, region_thresholds, patch_size)
    rows = []
    for ds in datasets:
        images, skipped = [], []
        for i in range(len(ds)):
            hr = ds[i][None].to(dev)
            name = ds.paths[i].stem
            if not scorer.fits(hr.shape[-2], hr.shape[-1]):
                skipped.append(name)
            else:
                with torch.no_grad():
                    out = model(hr)
                recon = out["recon"] if isinstance(out, dict) else out
                if tuple(recon.shape) != tuple(hr.shape):
                    raise RuntimeError(
                        f"model returned {tuple(recon.shape)} for a {tuple(hr.shape)} image"
                    )
                images.append({"name": name, **scorer(recon.float().clamp(0, 1), hr, lpips)})
            if on_image is not None:
                on_image()
        rows.append(_make_row(ds, 1.0, proto, 0, "identity", images, skipped, lpips))
    return rows


def evaluate(
    model: nn.Module,
    datasets: Iterable[ImageDataset | str | os.PathLike],
    scales: Sequence[float] = (2, 3, 4),
    protocol: str = "benchmark",
    lr_source: str = "auto",
    device: torch.device | str | None = None,
    lpips: bool = False,
    max_images: int | None = None,
    region_thresholds: RegionThresholds | None = None,
    patch_size: int = 32,
    on_image: Callable[[], None] | None = None,
) -> list[dict[str, Any]]:
    """Evaluate ``model`` on ``datasets`` (folders or :class:`ImageDataset`) at ``scales``.

    model: an SR model (``task == "sr"``, ``predict_full(lr, H, W)``), e.g. a baseline from
        :func:`get_baseline`, or a native model (``task == "reconstruction"``,
        ``forward(x)["recon"]``), which is evaluated at scale 1 and ignores ``scales``,
        ``protocol`` and ``lr_source``.
    protocol: "benchmark" (Y, shave ceil(s)) or "div2k" (RGB, shave ceil(s) + 6).
    lr_source: "auto", "matlab", "pil" or "liif" (see :class:`gblsr.data.SRPairs`).
    lpips: add LPIPS (null when the package or its weights are missing).
    region_thresholds: add per-region PSNR / SSIM / local spectrum error with these thresholds
        (patches of ``patch_size``).
    on_image: called once per image processed (progress bars).

    Returns one dict per (dataset, scale): dataset, path, layout, scale, protocol, channel,
    shave, lr_source, psnr, ssim[, lpips][, *_region], n_images[, skipped], images (per-image
    dicts). Means are over images; a mean is None when a value is missing or infinite.
    """
    ds_list = _open_all(datasets, max_images)
    task = getattr(model, "task", "sr")
    was_training = getattr(model, "training", None)
    if isinstance(model, nn.Module):
        model.eval()
    try:
        if task == "reconstruction":
            return evaluate_reconstruction(
                model,
                ds_list,
                device=device,
                lpips=lpips,
                region_thresholds=region_thresholds,
                patch_size=patch_size,
                on_image=on_image,
            )
        if not isinstance(model, SRModel):
            raise UserInputError(
                f"model {type(model).__name__} has no predict_full(lr, H, W); "
                "cannot evaluate it as SR"
            )
        return evaluate_sr(
            model,
            ds_list,
            scales,
            protocol=protocol,
            lr_source=lr_source,
            device=device,
            lpips=lpips,
            region_thresholds=region_thresholds,
            patch_size=patch_size,
            on_image=on_image,
        )
    finally:
        if isinstance(model, nn.Module) and was_training is not None:
            model.train(was_training)
