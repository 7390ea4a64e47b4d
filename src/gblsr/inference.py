"""Running a model on one image: output sizes, encode / decode, alpha handling, streamed output.

``reconstruct_image`` is ``decode_features(encode_image(...))``, so a feature blob written by
``gblsr-encode`` and decoded by ``gblsr-decode`` gives exactly what ``gblsr-reconstruct`` gives.

Feature blobs (an encoded image on disk) are :mod:`gblsr.features`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from .data.image_io import ImageData, to_uint8
from .encoder_tiles import DEFAULT_ENCODER_OVERLAP, tiled_encoding
from .errors import UserInputError
from .feasibility import MIN_TILE_BYTES, check_image_output, plan_encoder_tile, reserved_bytes
from .fileio import atomic_write
from .representation import SRModel

__all__ = [
    "DEFAULT_MAX_MEMORY",
    "EncodedImage",
    "output_size",
    "parse_size",
    "parse_bytes",
    "render_bands",
    "write_decoded",
    "encode_image",
    "decode_features",
    "reconstruct_image",
    "resize_alpha",
]


# Working memory the renderer of an arbitrary-scale model may use on top of the model and its
# coefficients when writing an image (see --max-memory); a PNG is written band by band within it.
DEFAULT_MAX_MEMORY = 1 << 30


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


@dataclass
class EncodedImage:
    """What decoding needs: the model's encoded tensors plus the geometry of the input.

    state: for arbitrary-scale models what ``model.encode_state`` returns (rebuilt into a
    renderable representation by ``model.representation``); for native models
    ``{"features": (1, D, nH, nW)}`` with ``pad_info``.
    """

    state: dict[str, torch.Tensor]
    input_size: tuple[int, int]
    task: str
    pad_info: dict[str, Any] | None = None
    alpha: torch.Tensor | None = None  # (1, H, W) float in [0, 1]
    meta: dict[str, str] = field(default_factory=dict)


def _device_of(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


@torch.no_grad()
def encode_image(
    model: nn.Module,
    image: ImageData,
    *,
    encoder_tile: int | None = None,
    encoder_overlap: int = DEFAULT_ENCODER_OVERLAP,
    max_memory: int | None = None,
    log: Callable[[str], None] | None = None,
) -> EncodedImage:
    """Run the encoder on one image.

    ``encoder_tile``: encode in tiles of this many input pixels with ``encoder_overlap`` pixels
    of context (:mod:`gblsr.encoder_tiles`). Without it, when ``max_memory`` is given and the
    encoder's estimated working set for the whole image exceeds it, a tile that fits is chosen
    (:func:`gblsr.feasibility.plan_encoder_tile`) and ``log`` is told so in one line."""
    x = image.rgb.unsqueeze(0).to(_device_of(model))
    task = getattr(model, "task", None)
    if isinstance(model, SRModel):
        if encoder_tile is None and max_memory is not None:
            encoder = getattr(model, "encoder", None)
            if isinstance(encoder, nn.Module):
                encoder_tile, note = plan_encoder_tile(
                    encoder, *image.size, max_memory, encoder_overlap
                )
                if note is not None and log is not None:
                    log(note)
        with tiled_encoding(model, encoder_tile, encoder_overlap):
            state, pad_info = model.encode_state(x), None
    elif encoder_tile is not None:
        raise UserInputError(f"{type(model).__name__} cannot encode in tiles (--encoder-tile)")
    elif task == "reconstruction":
        feat, pad_info = model.encode(x)
        state = {"features": feat}
    else:
        raise UserInputError(f"{type(model).__name__} cannot be split into encode and decode")
    return EncodedImage(
        state={k: v.float() for k, v in state.items()},
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
    h, w = enc.input_size
    if enc.task == "sr":
        out_hw = output_size(h, w, scale, size)
        rgb = _render_sr(model, enc, out_hw)
    else:
        if (scale is not None and scale != 1) or (size is not None and tuple(size) != (h, w)):
            raise UserInputError(
                "a native reconstruction model renders at the input size; --scale and --size "
                "are for arbitrary-scale models"
            )
        out_hw = (h, w)
        feat = enc.state["features"].to(_device_of(model))
        rgb = model.decode(feat, enc.pad_info)["recon"][0]
    alpha = None if enc.alpha is None else resize_alpha(enc.alpha, out_hw)
    return rgb.clamp(0, 1).cpu(), alpha


def _representation(model: nn.Module, enc: EncodedImage):
    """The renderable representation of an encoded image, on the model's device."""
    device = _device_of(model)
    return model.representation(
        {k: v.to(device) for k, v in enc.state.items()}, input_size=enc.input_size
    )


def _render_sr(
    model: nn.Module,
    enc: EncodedImage,
    size: tuple[int, int],
    max_memory: int | None = None,
    tile: int | None = None,
) -> torch.Tensor:
    """An encoded image -> (3, H, W) for an arbitrary-scale model."""
    rep = _representation(model, enc)
    return rep.render(*size, max_pixels=tile, max_memory=_budget(rep, max_memory, tile))[0]


def _budget(rep, max_memory: int | None, tile: int | None, reserve: int = 0) -> int | None:
    """Transient bytes per band: a quarter of --max-memory is left to the band's conversion to
    8 bits and its compression, ``reserve`` bytes to planning and band assembly (see
    :func:`gblsr.feasibility.reserved_bytes`), and bands are no bigger than render fastest on
    the device."""
    from .asr.tiling import preferred_tile_budget

    if max_memory is None and tile is not None:
        return None
    cap = (3 * (max_memory if max_memory is not None else DEFAULT_MAX_MEMORY)) // 4 - reserve
    return max(MIN_TILE_BYTES, min(cap, preferred_tile_budget(rep.device)))


def parse_bytes(text: str) -> int:
    """'512M', '2G', '1.5GiB', '1000000' -> bytes (K/M/G/T are powers of 1024)."""
    t = text.strip().upper().removesuffix("IB").removesuffix("B")
    mult = 1
    for suffix, m in (("K", 1 << 10), ("M", 1 << 20), ("G", 1 << 30), ("T", 1 << 40)):
        if t.endswith(suffix):
            t, mult = t[:-1], m
            break
    try:
        value = float(t) * mult
    except ValueError:
        raise UserInputError(f"memory size must look like 512M or 2G, got {text!r}") from None
    if not math.isfinite(value) or value < (1 << 20):
        raise UserInputError(f"memory size must be at least 1M, got {text!r}")
    return int(value)


@torch.no_grad()
def render_bands(
    model: nn.Module,
    enc: EncodedImage,
    scale: float | None = None,
    size: tuple[int, int] | None = None,
    *,
    max_memory: int | None = None,
    tile: int | None = None,
    reserve: int = 0,
):
    """Render an encoded image as bands of full rows: returns ((H, W), iterator of
    (top, rgb (3, rows, W) float in [0, 1] on the CPU)).

    Arbitrary-scale models render band by band within ``max_memory`` bytes of working memory
    (default :data:`DEFAULT_MAX_MEMORY`) or ``tile`` output pixels per band; the bands are exact
    pieces of the same rendering that :func:`decode_features` returns. Native models
    reconstruct at the input size in one band.
    """
    h, w = enc.input_size
    if enc.task != "sr":
        rgb, _ = decode_features(model, enc, scale=scale, size=size)
        return (h, w), iter([(0, rgb)])
    out_hw = output_size(h, w, scale, size)
    rep = _representation(model, enc)
    budget = _budget(rep, max_memory, tile, reserve)

    def bands():
        with torch.no_grad():
            for top, band in rep.iter_rows(*out_hw, max_pixels=tile, max_memory=budget):
                yield top, band[0].clamp_(0, 1).cpu()

    return out_hw, bands()


def _mib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def write_decoded(
    model: nn.Module,
    enc: EncodedImage,
    path: str | os.PathLike,
    scale: float | None = None,
    size: tuple[int, int] | None = None,
    *,
    max_memory: int | None = None,
    tile: int | None = None,
    compress_level: int = 6,
) -> tuple[int, int]:
    """Render an encoded image into an image file (atomically); returns (H, W).

    PNG output is streamed: each band is converted to 8 bits and compressed as soon as it is
    rendered, so only one band of the image is ever in memory (apart from a resized alpha plane,
    when the input had one). Other formats are assembled as one 8-bit array and written by
    Pillow, and are refused when that array would exceed ``max_memory``.
    """
    from PIL import Image

    from .data.image_io import ImageError
    from .data.png_stream import write_png_streamed

    target = Path(path)
    fmt = Image.registered_extensions().get(target.suffix.lower())
    if fmt is None:
        raise ImageError(f"unknown image extension {target.suffix!r} for output {target}")
    if tile is not None and tile < 1:
        raise UserInputError(f"--tile must be a positive number of pixels, got {tile}")
    keep_alpha = enc.alpha is not None and fmt in ("PNG", "WEBP", "TIFF")
    channels = 4 if keep_alpha else 3
    # Refuse what cannot be written before any work (see gblsr.feasibility).
    sr = enc.task == "sr"
    H, W = output_size(*enc.input_size, scale, size) if sr else enc.input_size
    check_image_output(
        H,
        W,
        fmt=fmt,
        channels=channels,
        alpha=keep_alpha,
        max_memory=max_memory if max_memory is not None else DEFAULT_MAX_MEMORY,
        path=target,
        input_size=enc.input_size,
        scale=scale,
        rendered=sr,
    )
    (H, W), bands = render_bands(
        model,
        enc,
        scale=scale,
        size=size,
        max_memory=max_memory,
        tile=tile,
        reserve=reserved_bytes(H, W, keep_alpha) + (0 if fmt == "PNG" else H * W * channels),
    )
    alpha8 = to_uint8(resize_alpha(enc.alpha, (H, W)))[0] if keep_alpha else None

    def rows_uint8():
        for top, band in bands:
            # to_uint8's arithmetic, in place: the band is ours and may be big.
            rgb8 = band.clamp_(0, 1).mul_(255.0).round_().to(torch.uint8).permute(1, 2, 0)
            if alpha8 is not None:
                a = alpha8[top : top + rgb8.shape[0]].unsqueeze(-1)
                rgb8 = torch.cat([rgb8, a], dim=-1)
            yield rgb8.numpy()

    if fmt == "PNG":
        try:
            write_png_streamed(target, W, H, channels, rows_uint8(), compress_level)
        except UserInputError:
            raise
        except OSError as e:
            raise ImageError(f"cannot write {target}: {e.strerror or e}") from None
        return H, W

    nbytes = H * W * channels
    budget = max_memory if max_memory is not None else 4 * DEFAULT_MAX_MEMORY
    if nbytes > budget:
        raise UserInputError(
            f"a {H}x{W} {fmt} image is written whole ({_mib(nbytes)} in memory, over the "
            f"{_mib(budget)} allowed); write a .png, which is streamed, or raise --max-memory"
        )
    import numpy as np

    arr = np.empty((H, W, channels), dtype=np.uint8)
    row = 0
    for band in rows_uint8():
        arr[row : row + band.shape[0]] = band
        row += band.shape[0]
    mode = "RGBA" if channels == 4 else "RGB"
    img = Image.fromarray(arr, mode)
    try:
        atomic_write(target, lambda tmp: img.save(tmp, format=fmt))
    except UserInputError:
        raise
    except OSError as e:
        raise ImageError(f"cannot write {target}: {e.strerror or e}") from None
    return H, W


def reconstruct_image(
    model: nn.Module,
    image: ImageData,
    scale: float | None = None,
    size: tuple[int, int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """encode + decode of one image; (rgb (3, H, W) in [0, 1], alpha (1, H, W) or None)."""
    return decode_features(model, encode_image(model, image), scale=scale, size=size)
