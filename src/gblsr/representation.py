"""The one interface every super-resolution method in gblsr implements.

An SR model turns a low-resolution image into a *representation*: a continuous image that can be
rendered at any output size, any number of times, in windows, or at arbitrary points::

    rep = model.encode(lr)                    # lr (B, 3, h, w) in [0, 1]
    sr = rep.render(3 * h, 3 * w)             # (B, 3, H, W) in [0, 1] (unclamped)
    win = rep.render_region(top, left, height, width, H, W)   # == sr[..., top:top+height, ...]
    for top, band in rep.iter_rows(H, W, max_memory=256 << 20): ...
    rgb = rep.query(coord)                    # coord (B, Q, 2) (y, x) in [-1, 1] -> (B, Q, 3)

A method implements :meth:`Representation.render_region` and :meth:`Representation.bytes_per_pixel`
(and :meth:`Representation.query` where points make sense); tiling, banding and whole renders
come from here, so every method streams huge outputs within the same memory budget the same way.
Methods with a cheaper whole-image path (GB-LSR's separable renderer) override ``tile_shape``.

:class:`SRModel` is the matching model side: ``encode`` / ``encode_state`` / ``representation``
(feature blobs store ``encode_state``'s tensors) and one ``predict_full`` signature for all.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from .encoder_tiles import DEFAULT_ENCODER_OVERLAP, tiled_encoding

__all__ = ["Representation", "SRModel", "DEFAULT_RENDER_BUDGET", "check_window"]

# Transient bytes per tile when neither max_pixels nor max_memory is given.
DEFAULT_RENDER_BUDGET = 256 << 20


def check_window(top: int, left: int, height: int, width: int, H: int, W: int) -> None:
    """Raise ValueError unless the window lies inside an H x W output."""
    if H < 1 or W < 1:
        raise ValueError(f"output size must be positive, got {H}x{W}")
    if not (0 <= top and height >= 1 and top + height <= H):
        raise ValueError(f"rows [{top}, {top + height}) are not inside the {H} output rows")
    if not (0 <= left and width >= 1 and left + width <= W):
        raise ValueError(f"columns [{left}, {left + width}) are not inside the {W} columns")


class Representation:
    """An encoded batch of images, renderable at any size. Subclasses implement
    :meth:`render_region` and :meth:`bytes_per_pixel`; the rest has working defaults.

    Properties every representation has: ``batch_size``, ``device``, ``dtype``, ``input_size``
    ((h, w) of the encoded image).
    """

    batch_size: int
    device: torch.device
    dtype: torch.dtype
    input_size: tuple[int, int]

    # -- what a method implements -------------------------------------------------------------
    def render_region(
        self, top: int, left: int, height: int, width: int, H: int, W: int, **options: Any
    ) -> torch.Tensor:
        """Window ``[top, top + height) x [left, left + width)`` of the H x W rendering:
        (B, 3, height, width), equal to the same pixels of :meth:`render` (to float rounding
        of the contraction at most)."""
        raise NotImplementedError

    def bytes_per_pixel(self, H: int, W: int) -> int:
        """Estimated transient bytes per output pixel (whole batch) of rendering at H x W; used
        to size tiles within a memory budget."""
        raise NotImplementedError

    def query(self, coord: torch.Tensor, cell: torch.Tensor | None = None) -> torch.Tensor:
        """Arbitrary points: coord (B, Q, 2) (y, x) in [-1, 1], optional cell (B, Q, 2) (the
        output pixel's size in the same units) -> (B, Q, 3)."""
        raise NotImplementedError(f"{type(self).__name__} cannot be queried at arbitrary points")

    # -- tiling, shared by every method ---------------------------------------------------------
    def tile_shape(
        self, H: int, W: int, max_pixels: int | None = None, max_memory: int | None = None
    ) -> tuple[int, int]:
        """(rows, cols) of the tiles used for an H x W output: full-width strips unless one row
        alone exceeds the budget. ``max_pixels`` bounds pixels per tile, ``max_memory`` (bytes)
        the estimated transient memory (:data:`DEFAULT_RENDER_BUDGET` when neither is given)."""
        if max_pixels is None and max_memory is None:
            max_memory = DEFAULT_RENDER_BUDGET
        limit = H * W
        if max_pixels is not None:
            limit = min(limit, max(1, int(max_pixels)))
        if max_memory is not None:
            limit = min(limit, max(1, int(max_memory) // max(1, self.bytes_per_pixel(H, W))))
        cols = min(W, limit)
        rows = max(1, min(H, limit // cols))
        return rows, cols

    def tiles(
        self,
        H: int,
        W: int,
        max_pixels: int | None = None,
        max_memory: int | None = None,
        **options: Any,
    ) -> Iterator[tuple[int, int, torch.Tensor]]:
        """Yield ``(top, left, tile)`` covering the H x W rendering in row-major order; each
        tile is (B, 3, rows, cols)."""
        rows, cols = self.tile_shape(H, W, max_pixels, max_memory)
        for top in range(0, H, rows):
            height = min(rows, H - top)
            for left in range(0, W, cols):
                width = min(cols, W - left)
                yield top, left, self.render_region(top, left, height, width, H, W, **options)

    def iter_rows(
        self,
        H: int,
        W: int,
        max_pixels: int | None = None,
        max_memory: int | None = None,
        **options: Any,
    ) -> Iterator[tuple[int, torch.Tensor]]:
        """Yield ``(top, band)``: full-width bands (B, 3, rows, W), top to bottom, assembled
        from :meth:`tiles` so that memory stays bounded."""
        rows, cols = self.tile_shape(H, W, max_pixels, max_memory)
        strip = None
        for top, left, tile in self.tiles(H, W, max_pixels, max_memory, **options):
            if cols >= W:
                yield top, tile
                continue
            if left == 0:
                strip = tile.new_empty(tile.shape[0], tile.shape[1], tile.shape[2], W)
            strip[..., left : left + tile.shape[3]] = tile
            if left + tile.shape[3] == W:
                yield top, strip

    def render(
        self,
        H: int,
        W: int,
        max_pixels: int | None = None,
        max_memory: int | None = None,
        out: torch.Tensor | None = None,
        **options: Any,
    ) -> torch.Tensor:
        """The whole (B, 3, H, W) rendering at pixel centres, tiled within the budget; the
        result does not depend on the tiling. ``out`` may be a preallocated tensor to fill."""
        H, W = int(H), int(W)
        check_window(0, 0, H, W, H, W)
        rows, cols = self.tile_shape(H, W, max_pixels, max_memory)
        if out is None and rows >= H and cols >= W:
            return self.render_region(0, 0, H, W, H, W, **options).contiguous()
        for top, left, tile in self.tiles(H, W, max_pixels, max_memory, **options):
            if out is None:
                out = tile.new_empty(tile.shape[0], tile.shape[1], H, W)
            elif top == 0 and left == 0 and tuple(out.shape[-2:]) != (H, W):
                raise ValueError(f"out has shape {tuple(out.shape)}, expected (B, C, {H}, {W})")
            out[..., top : top + tile.shape[2], left : left + tile.shape[3]] = tile
        return out


class SRModel:
    """Mixin of every arbitrary-scale SR model (an ``nn.Module``): encode once, render many.

    Subclasses implement :meth:`encode_state` (the tensors an encoded image is stored as) and
    :meth:`representation` (rebuild a :class:`Representation` from them).
    """

    task = "sr"

    def encode_state(self, lr: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def representation(
        self, state: dict[str, torch.Tensor], input_size: tuple[int, int] | None = None
    ) -> Representation:
        raise NotImplementedError

    def encode(self, lr: torch.Tensor) -> Representation:
        """lr (B, 3, h, w) in [0, 1] -> a :class:`Representation`. Autograd flows through when
        enabled (wrap in ``torch.no_grad()`` for inference)."""
        return self.representation(self.encode_state(lr), input_size=tuple(lr.shape[-2:]))

    @torch.no_grad()
    def predict_full(
        self,
        lr: torch.Tensor,
        H: int,
        W: int,
        *,
        max_memory: int | None = None,
        tile: int | None = None,
        generator: torch.Generator | None = None,
        encoder_tile: int | None = None,
        encoder_overlap: int = DEFAULT_ENCODER_OVERLAP,
        **render_options: Any,
    ) -> torch.Tensor:
        """Super-resolve lr (B, 3, h, w) in [0, 1] to (B, 3, H, W) (unclamped), without an
        autograd graph. ``tile`` bounds the output pixels rendered at once and ``max_memory``
        (bytes) the transient memory per tile; the result does not depend on either.
        ``generator`` drives methods that sample while encoding (GaussianSR's Gumbel kernel
        choice; their ``encode`` takes it). ``encoder_tile`` (opt-in) runs the encoder on
        ``encoder_tile``-pixel input tiles with ``encoder_overlap`` pixels of context (see
        :mod:`gblsr.encoder_tiles`: exact for convolutional encoders whose receptive field the
        overlap covers, close otherwise). ``render_options`` are the method's own (e.g.
        ``cell_clip`` for LIIF-family models)."""
        with tiled_encoding(self, encoder_tile, encoder_overlap):
            rep = self.encode(lr) if generator is None else self.encode(lr, generator=generator)
        return rep.render(H, W, max_pixels=tile, max_memory=max_memory, **render_options)
