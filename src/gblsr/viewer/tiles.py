"""Tile geometry of the deep-zoom viewer: the level pyramid and one tile of one level.

A level is an exact output size (H, W) of the continuous image. Its magnification ``scale`` is
relative to the input (h, w): H = round(scale * h), W = round(scale * w). Magnifications are the
powers of two from the level whose whole image fits in one tile up to below ``max_scale``, plus
``max_scale`` itself, so a level at exactly 1x (the input's size) always exists.

A tile (col, row) of a level is the window ``[row * T, row * T + height) x [col * T, ...)`` of
that level's H x W rendering (T = tile size, edge tiles are smaller). It is rendered with
``rep.render_region(top, left, height, width, H, W)``, so its pixels are the same pixels as the
whole rendering at that size: nothing is resampled between levels.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import torch

from ..data.image_io import to_uint8
from ..representation import Representation

__all__ = [
    "DEFAULT_TILE_SIZE",
    "MAX_SCALE_LIMIT",
    "Level",
    "TileRequestError",
    "build_levels",
    "tile_window",
    "render_tile",
    "encode_png",
]

DEFAULT_TILE_SIZE = 256
# Beyond this a level's side of a large photo would exceed what a browser canvas addresses well,
# and nothing new appears: a representation's detail is limited by its encoder.
MAX_SCALE_LIMIT = 64.0


class TileRequestError(ValueError):
    """A tile that does not exist (unknown level, or a tile outside the level)."""


@dataclass(frozen=True)
class Level:
    """One level of the pyramid: an H x W rendering, ``scale`` times the input."""

    index: int
    height: int
    width: int
    scale: float

    def grid(self, tile_size: int) -> tuple[int, int]:
        """(cols, rows) of tiles covering the level."""
        return math.ceil(self.width / tile_size), math.ceil(self.height / tile_size)

    def as_dict(self, tile_size: int) -> dict:
        cols, rows = self.grid(tile_size)
        return {
            "index": self.index,
            "height": self.height,
            "width": self.width,
            "scale": self.scale,
            "cols": cols,
            "rows": rows,
        }


def build_levels(
    input_size: tuple[int, int], max_scale: float, tile_size: int = DEFAULT_TILE_SIZE
) -> list[Level]:
    """The pyramid of an h x w input, smallest level first, index 0 upward.

    The smallest level is the largest power-of-two reduction whose image fits in one tile (or
    1x when the input already fits); the largest is ``max_scale`` times the input.
    """
    h, w = (int(v) for v in input_size)
    if h < 1 or w < 1:
        raise ValueError(f"input size must be positive, got {h}x{w}")
    if not (math.isfinite(max_scale) and 1.0 <= max_scale <= MAX_SCALE_LIMIT):
        raise ValueError(f"max scale must be in [1, {MAX_SCALE_LIMIT:g}], got {max_scale}")
    if tile_size < 16:
        raise ValueError(f"tile size must be at least 16, got {tile_size}")
    low = 0
    while max(h, w) * 2.0**low > tile_size:
        low -= 1
    scales = [2.0**k for k in range(low, 64) if 2.0**k < max_scale] + [float(max_scale)]
    levels: list[Level] = []
    for s in scales:
        H, W = max(1, round(s * h)), max(1, round(s * w))
        if levels and (H, W) == (levels[-1].height, levels[-1].width):
            continue  # a tiny input where two magnifications round to the same size
        levels.append(Level(len(levels), H, W, s))
    return levels


def tile_window(level: Level, col: int, row: int, tile_size: int) -> tuple[int, int, int, int]:
    """(top, left, height, width) of tile (col, row); TileRequestError when outside."""
    cols, rows = level.grid(tile_size)
    if not (0 <= col < cols and 0 <= row < rows):
        raise TileRequestError(
            f"tile ({col}, {row}) is outside level {level.index} ({cols} x {rows} tiles)"
        )
    top, left = row * tile_size, col * tile_size
    return top, left, min(tile_size, level.height - top), min(tile_size, level.width - left)


@torch.no_grad()
def render_tile(
    rep: Representation, level: Level, col: int, row: int, tile_size: int
) -> torch.Tensor:
    """Tile (col, row) of ``level``: (3, height, width) float, the same pixels as
    ``rep.render(level.height, level.width)[0, :, top:top+height, left:left+width]``."""
    top, left, height, width = tile_window(level, col, row, tile_size)
    return rep.render_region(top, left, height, width, level.height, level.width)[0]


def encode_png(tile: torch.Tensor) -> bytes:
    """(3, h, w) float in [0, 1] (clamped) -> PNG bytes; lossless, so a served tile is exactly
    ``to_uint8`` of the rendered pixels. Fast compression: tiles are rendered per view."""
    from PIL import Image

    arr = to_uint8(tile.detach().cpu()).permute(1, 2, 0).contiguous().numpy()
    buf = io.BytesIO()
    Image.fromarray(arr, "RGB").save(buf, format="PNG", compress_level=1)
    return buf.getvalue()
