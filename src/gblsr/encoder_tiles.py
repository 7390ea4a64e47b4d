"""Tiled encoding: run any encoder on overlapping tiles of a large image and stitch the centres,
so the encoder's working memory is bounded by the tile size instead of the image size.

Opt-in, because it is not exact: a feature near a tile's centre sees the image only up to
``overlap`` input pixels beyond its tile, while the untiled encoder sees everything (for a
transformer, through every window it is shifted into). With an overlap at least the encoder's
receptive-field radius (EDSR-baseline: 33 px; convolutional encoders generally) the result is
exact up to float rounding; for SwinIR/HAT, whose receptive field is the whole image in
principle, the difference falls quickly with the overlap (measured in
``benchmarks/bench_encoder_tiling.py`` and ``docs/encoders.md``).

Encoders describe their geometry with optional attributes:
  * ``scale`` (int, default 1): output pixels per input pixel (ContinuousSR's x4 features: 4);
  * ``pad_input(x)`` and ``crops_to_input`` (bool): an encoder whose output covers its *padded*
    input (LTE's SwinIR) is padded once, as a whole, before tiling, so the stitched map has the
    untiled map's size and the same border pixels.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn as nn

from .errors import UserInputError

# Context around each tile when none is asked for: EDSR-baseline's receptive-field radius is 33 px
# of which 16 covers nearly all of its weight; SwinIR/HAT at 16 px differ from untiled by about
# 3e-4 of a mean feature (docs/encoders.md).
DEFAULT_ENCODER_OVERLAP = 16

__all__ = [
    "DEFAULT_ENCODER_OVERLAP",
    "encode_tiled",
    "tile_spans",
    "TiledEncoder",
    "tiled_encoding",
    "encoder_bytes_per_pixel",
    "encoder_tile_for_budget",
]


def tile_spans(n: int, tile: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """Tiles of a length-``n`` axis: (core_start, core_end, in_start, in_end) with cores of
    ``tile`` pixels partitioning [0, n) and inputs extending them by ``overlap`` on each side.
    Every input span has the same length min(n, tile + 2 overlap): at the image borders it is
    shifted inwards (more context on the inner side) rather than cut, so no tile is too small
    for an encoder's own padding and all tiles cost the same."""
    if tile < 1 or overlap < 0:
        raise ValueError(f"tile must be >= 1 and overlap >= 0 (got {tile}, {overlap})")
    length = min(n, tile + 2 * overlap)
    spans = []
    for c0 in range(0, n, tile):
        c1 = min(n, c0 + tile)
        i0 = max(0, min(c0 - overlap, n - length))
        spans.append((c0, c1, i0, i0 + length))
    return spans


@torch.no_grad()
def encode_tiled(encoder: nn.Module, x: torch.Tensor, tile: int, overlap: int = 16) -> torch.Tensor:
    """``encoder(x)`` computed tile by tile (inference only; no gradients).

    x: (B, C, h, w). Each ``tile`` x ``tile`` core of the input is encoded together with
    ``overlap`` pixels of context on every side (fewer at the image border), and the core's
    part of the output is kept. The result has the shape of ``encoder(x)``. Memory: the
    encoder's own working memory for one (tile + 2 overlap)^2 input, plus the output map.
    For window transformers choose ``tile`` and ``overlap`` as multiples of the window, so
    inner tiles need no internal padding.
    """
    scale = int(getattr(encoder, "scale", 1))
    if hasattr(encoder, "pad_input") and not getattr(encoder, "crops_to_input", True):
        x = encoder.pad_input(x)
    h, w = x.shape[-2:]
    if tile >= h and tile >= w:
        return encoder(x)
    out = None
    for y0, y1, iy0, iy1 in tile_spans(h, tile, overlap):
        for x0, x1, ix0, ix1 in tile_spans(w, tile, overlap):
            feat = encoder(x[..., iy0:iy1, ix0:ix1])
            if out is None:
                out = feat.new_empty(feat.shape[0], feat.shape[1], scale * h, scale * w)
            # The core's rows/columns within the tile's output (which may extend past the tile
            # when the encoder pads internally; that padding is cut off here).
            oy, ox = scale * (y0 - iy0), scale * (x0 - ix0)
            core = feat[..., oy : oy + scale * (y1 - y0), ox : ox + scale * (x1 - x0)]
            out[..., scale * y0 : scale * y1, scale * x0 : scale * x1] = core
    return out


def encoder_bytes_per_pixel(encoder: nn.Module, itemsize: int = 4) -> int:
    """Rough peak inference memory of ``encoder`` per input pixel (its
    ``bytes_per_input_pixel`` when it has one; else 8 maps of ``out_dim`` channels at the
    output's resolution, enough for EDSR/RDN-style convolutional encoders)."""
    if hasattr(encoder, "bytes_per_input_pixel"):
        return int(encoder.bytes_per_input_pixel(itemsize))
    scale = int(getattr(encoder, "scale", 1))
    return int(8 * encoder.out_dim * scale * scale * itemsize)


def encoder_tile_for_budget(
    encoder: nn.Module, max_memory: int, overlap: int = 16, multiple: int | None = None
) -> int:
    """The largest tile (a multiple of ``multiple``, default the encoder's window or 8) whose
    (tile + 2 overlap)^2 input fits ``max_memory`` bytes of encoder working memory (at least
    one ``multiple``). Use with :func:`tiled_encoding` for a ``--max-memory`` budget; untiled
    encoding is preferable whenever the whole image fits."""
    m = int(multiple or getattr(encoder, "window_size", 8))
    side = int((max(1, int(max_memory)) / encoder_bytes_per_pixel(encoder)) ** 0.5)
    tile = (side - 2 * overlap) // m * m
    return max(m, tile)


class TiledEncoder(nn.Module):
    """``encoder`` run through :func:`encode_tiled` (inference only); exposes the wrapped
    encoder's ``out_dim`` and ``scale``."""

    def __init__(self, encoder: nn.Module, tile: int, overlap: int = 16):
        super().__init__()
        self.inner = encoder
        self.tile, self.overlap = int(tile), int(overlap)
        self.out_dim = encoder.out_dim
        self.scale = getattr(encoder, "scale", 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return encode_tiled(self.inner, x, self.tile, self.overlap)


@contextlib.contextmanager
def tiled_encoding(model: nn.Module, tile: int | None, overlap: int = DEFAULT_ENCODER_OVERLAP):
    """Within the block, ``model.encoder`` runs tile by tile (``tile`` None: unchanged)::

        with tiled_encoding(model, encoder_tile, encoder_overlap):
            sr = model.predict_full(lr, H, W)

    Works for every model that calls ``self.encoder`` (LIIF, LTE, LMF, GB-LSR-ASR, ...)."""
    if tile is None:
        yield model
        return
    if tile < 1 or overlap < 0:
        raise UserInputError(
            f"encoder tile must be >= 1 and overlap >= 0 pixels (got {tile}, {overlap})"
        )
    inner = getattr(model, "encoder", None)
    if not isinstance(inner, nn.Module):
        raise UserInputError(f"{type(model).__name__} has no encoder that can run in tiles")
    model.encoder = TiledEncoder(inner, tile, overlap)
    try:
        yield model
    finally:
        model.encoder = inner
