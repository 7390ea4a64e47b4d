"""Running a model on one image: output sizes, encode / decode, alpha handling, feature blobs.

``reconstruct_image`` is ``decode_features(encode_image(...))``, so a feature blob written by
``gblsr-encode`` and decoded by ``gblsr-decode`` gives exactly what ``gblsr-reconstruct`` gives.

A feature blob is a safetensors file:
    tensors  ``features`` (1, D, h, w) float32 encoder output; ``alpha`` (1, H, W) uint8 if any
    metadata format "gblsr.features", gblsr_version, architecture, model_sha256 (fingerprint of
             the weights and config that made it), task, input_h, input_w, pad_info (JSON)
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._version import __version__
from .checkpoint import model_identity
from .data.image_io import ImageData, atomic_write, to_uint8
from .errors import CheckpointError, UserInputError

__all__ = [
    "FEATURES_FORMAT",
    "EncodedImage",
    "output_size",
    "parse_size",
    "model_fingerprint",
    "encode_image",
    "decode_features",
    "reconstruct_image",
    "save_features",
    "load_features",
    "resize_alpha",
]

FEATURES_FORMAT = "gblsr.features"


def output_size(
    h: int, w: int, scale: float | None = None, size: tuple[int, int] | None = None
) -> tuple[int, int]:
    """Output (H, W) for an input of (h, w): ``size`` as given, or (round(s h), round(s w))."""
    if size is not None:
        if scale is not None:
            raise UserInputError("give either a scale or a size, not both")
        hh, ww = size
        if hh < 1 or ww < 1:
            raise UserInputError(f"output size must be positive, got {hh}x{ww}")
        return int(hh), int(ww)
    if scale is None:
        raise UserInputError("an arbitrary-scale model needs --scale or --size")
    if not math.isfinite(scale) or scale <= 0:
        raise UserInputError(f"scale must be a positive finite number, got {scale}")
    out = (round(scale * h), round(scale * w))
    if min(out) < 1:
        raise UserInputError(f"scale {scale} turns a {h}x{w} image into an empty one")
    return out


def parse_size(text: str) -> tuple[int, int]:
    """'HxW' -> (H, W)."""
    parts = text.lower().replace("*", "x").split("x")
    try:
        h, w = (int(p) for p in parts)
    except ValueError:
        raise UserInputError(f"size must look like 1080x1920 (HxW), got {text!r}") from None
    if h < 1 or w < 1:
        raise UserInputError(f"size must be positive, got {text!r}")
    return h, w


def model_fingerprint(model: nn.Module) -> str:
    """sha256 over the architecture, its config and every weight: equal iff same model."""
    arch, config = model_identity(model)
    digest = hashlib.sha256(json.dumps([arch, config], sort_keys=True).encode())
    for name, t in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


@dataclass
class EncodedImage:
    """What decoding needs: encoder features plus the geometry of the input."""

    features: torch.Tensor  # (1, D, h, w)
    input_size: tuple[int, int]
    task: str
    pad_info: dict[str, Any] | None = None
    alpha: torch.Tensor | None = None  # (1, H, W) float in [0, 1]
    meta: dict[str, str] = field(default_factory=dict)


def _device_of(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


@torch.no_grad()
def encode_image(model: nn.Module, image: ImageData) -> EncodedImage:
    """Run the encoder on one image."""
    x = image.rgb.unsqueeze(0).to(_device_of(model))
    task = getattr(model, "task", None)
    if task == "sr":
        feat, pad_info = model.encoder(x), None
    elif task == "reconstruction" and hasattr(model, "encode"):
        feat, pad_info = model.encode(x)
    else:
        raise UserInputError(f"{type(model).__name__} cannot be split into encode and decode")
    return EncodedImage(
        features=feat.float(),
        input_size=image.size,
        task=task,
        pad_info=pad_info,
        alpha=image.alpha,
    )


def resize_alpha(alpha: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(1, h, w) -> (1, H, W): the alpha plane is resized on its own (bicubic, antialiased)."""
    if tuple(alpha.shape[-2:]) == tuple(size):
        return alpha
    out = F.interpolate(
        alpha[None].float(), size=size, mode="bicubic", align_corners=False, antialias=True
    )
    return out[0].clamp(0, 1)


@torch.no_grad()
def decode_features(
    model: nn.Module,
    enc: EncodedImage,
    scale: float | None = None,
    size: tuple[int, int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Render an encoded image: returns (rgb (3, H, W) clamped to [0, 1], alpha or None)."""
    feat = enc.features.to(_device_of(model))
    h, w = enc.input_size
    if enc.task == "sr":
        out_hw = output_size(h, w, scale, size)
        rgb = _render_sr(model, feat, out_hw)
    else:
        if (scale is not None and scale != 1) or (size is not None and tuple(size) != (h, w)):
            raise UserInputError(
                "a native reconstruction model renders at the input size; --scale and --size "
                "are for arbitrary-scale models"
            )
        out_hw = (h, w)
        rgb = model.decode(feat, enc.pad_info)["recon"][0]
    alpha = None if enc.alpha is None else resize_alpha(enc.alpha, out_hw)
    return rgb.clamp(0, 1).cpu(), alpha


def _render_sr(model: nn.Module, feat: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(1, D, h, w) encoder features -> (3, H, W) for an arbitrary-scale model."""
    from .asr.coord import make_coord

    coef = model.decoder.coefficients(feat)
    coord = make_coord(size, dtype=coef.dtype, device=coef.device)
    step = 65536
    parts = [
        model.decoder.query(coef, coord[s : s + step][None]) for s in range(0, len(coord), step)
    ]
    return torch.cat(parts, dim=1)[0].view(*size, 3).permute(2, 0, 1)


def reconstruct_image(
    model: nn.Module,
    image: ImageData,
    scale: float | None = None,
    size: tuple[int, int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """encode + decode of one image; (rgb (3, H, W) in [0, 1], alpha (1, H, W) or None)."""
    return decode_features(model, encode_image(model, image), scale=scale, size=size)


def save_features(model: nn.Module, enc: EncodedImage, path: str | os.PathLike) -> Path:
    """Write a feature blob (atomically) that only this model will decode."""
    from safetensors.torch import save_file

    arch, _ = model_identity(model)
    tensors = {"features": enc.features.detach().cpu().contiguous()}
    if enc.alpha is not None:
        tensors["alpha"] = to_uint8(enc.alpha).contiguous()
    meta = {
        "format": FEATURES_FORMAT,
        "gblsr_version": __version__,
        "architecture": arch,
        "model_sha256": model_fingerprint(model),
        "task": enc.task,
        "input_h": str(enc.input_size[0]),
        "input_w": str(enc.input_size[1]),
        "pad_info": json.dumps(enc.pad_info),
    }
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))


def load_features(path: str | os.PathLike, model: nn.Module) -> EncodedImage:
    """Read a feature blob, refusing one written by another model."""
    from .checkpoint import read_checkpoint

    tensors, meta = read_checkpoint(path)
    name = Path(path).name
    if meta.get("format") != FEATURES_FORMAT or "features" not in tensors:
        raise CheckpointError(f"{name} is not a gblsr feature blob (make one with gblsr-encode)")
    if meta.get("model_sha256") != model_fingerprint(model):
        raise CheckpointError(
            f"{name} was encoded by another model ({meta.get('architecture', '?')}, "
            f"fingerprint {meta.get('model_sha256', '?')[:12]}); decode it with that checkpoint"
        )
    try:
        size = (int(meta["input_h"]), int(meta["input_w"]))
        pad_info = json.loads(meta.get("pad_info", "null"))
    except (KeyError, ValueError):
        raise CheckpointError(f"damaged metadata in feature blob {name}") from None
    alpha = tensors.get("alpha")
    return EncodedImage(
        features=tensors["features"].float(),
        input_size=size,
        task=meta.get("task", ""),
        pad_info=pad_info,
        alpha=None if alpha is None else alpha.float() / 255.0,
        meta=meta,
    )
