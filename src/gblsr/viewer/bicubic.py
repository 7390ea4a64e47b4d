"""Bicubic interpolation as a :class:`~gblsr.representation.Representation`, the viewer's
baseline: any window of ``F.interpolate(lr, (H, W), mode="bicubic", align_corners=False)``
without computing the whole H x W image.

PyTorch's CPU bicubic is separable: it equals a width pass to (h, W) followed by a height pass to
(H, W), each a call of ``F.interpolate`` whose other axis keeps its size (that axis is then an
exact identity). A window needs only

* the source rows its output rows read (4 taps each): the width pass runs on those rows only,
  and is cropped to the window's columns;
* the height pass on that (h, width) strip, zero outside those rows (rows that no output row of
  the window reads), cropped to the window's rows.

Both calls are the same PyTorch kernels on the same values, so a window is bit-identical to the
crop of the whole-image resize (tested). The cost is about (rows read) x W + H x width outputs.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from ..representation import Representation, check_window

__all__ = ["BicubicRepresentation"]


class BicubicRepresentation(Representation):
    """lr (B, 3, h, w) in [0, 1] -> renderable by bicubic resizing. Computed on the CPU in
    float32 (where the separable identity above holds), whatever ``lr``'s device."""

    name = "bicubic"

    def __init__(self, lr: torch.Tensor):
        if lr.dim() != 4 or lr.shape[1] != 3:
            raise ValueError(f"lr must be (B, 3, h, w), got {tuple(lr.shape)}")
        self.lr = lr.detach().to("cpu", torch.float32).contiguous()
        self.batch_size = int(lr.shape[0])
        self.device = self.lr.device
        self.dtype = self.lr.dtype
        self.input_size = (int(lr.shape[2]), int(lr.shape[3]))

    def bytes_per_pixel(self, H: int, W: int) -> int:
        return 4 * 3 * self.batch_size * 3

    def _source_rows(self, top: int, height: int, H: int) -> tuple[int, int]:
        """[r0, r1): the source rows read by output rows [top, top + height), with a margin of
        one row for the float rounding of the source coordinate."""
        h = self.input_size[0]
        s = h / H
        first = math.floor(s * (top + 0.5) - 0.5) - 2
        last = math.floor(s * (top + height - 0.5) - 0.5) + 3
        return max(0, first), min(h, last + 1)

    def render_region(
        self, top: int, left: int, height: int, width: int, H: int, W: int, **options: Any
    ) -> torch.Tensor:
        if options:
            raise TypeError(f"bicubic takes no render options, got {sorted(options)}")
        top, left, height, width, H, W = (int(v) for v in (top, left, height, width, H, W))
        check_window(top, left, height, width, H, W)
        h, w = self.input_size
        r0, r1 = self._source_rows(top, height, H)
        rows = self.lr[:, :, r0:r1, :]
        wide = F.interpolate(rows, size=(r1 - r0, W), mode="bicubic", align_corners=False)
        strip = self.lr.new_zeros(self.batch_size, 3, h, width)
        strip[:, :, r0:r1] = wide[..., left : left + width]
        tall = F.interpolate(strip, size=(H, width), mode="bicubic", align_corners=False)
        return tall[:, :, top : top + height].contiguous()
