"""A feature upsampler on top of any registered encoder, for heads that need a feature map at a
multiple of the LR resolution (ContinuousSR: 64 channels at x4).

(B, 3, h, w) -> base encoder (B, C, h, w) -> ``conv_before_upsample`` (3x3 conv C -> num_feat,
LeakyReLU 0.01) -> ``upsample`` (log2(scale) x [3x3 conv num_feat -> 4 num_feat, PixelShuffle(2)])
-> (B, num_feat, scale h, scale w). There is no ``conv_last``: the output is the feature map the
SwinIR/HAT classic-SR upsampler produces before its last conv, which is what ContinuousSR feeds
its Gaussian heads. Registered as ``upsampled4`` (scale 4); defaults: a small EDSR-baseline
(8 blocks of 64 features) so it trains on a CPU.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ..encoder_tiles import encoder_bytes_per_pixel
from ..registry import make, register

__all__ = ["UpsampledEncoder"]

_DEFAULT_BASE_CFG = {"num_blocks": 8, "num_features": 64}


@register("encoder", "upsampled4")
class UpsampledEncoder(nn.Module):
    """Any registered LR-resolution encoder followed by a PixelShuffle feature upsampler.

    ``base`` / ``base_cfg``: the wrapped encoder (default ``edsr`` with 8 blocks); ``num_feat``:
    output channels (64); ``scale``: 2, 4 or 8 (4). ``out_dim`` = num_feat, ``scale`` = scale.
    """

    def __init__(
        self,
        base: str = "edsr",
        base_cfg: dict | None = None,
        num_feat: int = 64,
        scale: int = 4,
    ):
        super().__init__()
        if scale not in (2, 4, 8):
            raise ValueError(f"scale must be 2, 4 or 8, got {scale}")
        self.base_name = base
        self.base = make("encoder", base, **(_DEFAULT_BASE_CFG if base_cfg is None else base_cfg))
        c = int(self.base.out_dim)
        self.num_feat = int(num_feat)
        self.scale = int(scale)
        self.out_dim = self.num_feat
        self.conv_before_upsample = nn.Sequential(
            nn.Conv2d(c, self.num_feat, 3, padding=1), nn.LeakyReLU(0.01, inplace=True)
        )
        layers: list[nn.Module] = []
        for _ in range(self.scale.bit_length() - 1):
            layers += [
                nn.Conv2d(self.num_feat, 4 * self.num_feat, 3, padding=1),
                nn.PixelShuffle(2),
            ]
        self.upsample = nn.Sequential(*layers)

    def get_config(self) -> dict:
        return {
            "base": self.base_name,
            "base_cfg": self.base.get_config(),
            "num_feat": self.num_feat,
            "scale": self.scale,
        }

    @classmethod
    def from_config(cls, config: dict) -> UpsampledEncoder:
        return cls(**config)

    def bytes_per_input_pixel(self, itemsize: int = 4) -> int:
        """Peak inference memory per input pixel, for tiled encoding's budget: the last
        upsampling stage holds its input, its conv output and the shuffled copy (2.25 scale^2
        maps of ``num_feat``); 3 scale^2 leaves room for the allocator (measured on CPU with
        num_feat 64 at x4 and a tiny EDSR base: 9.7-10.2 KB per input pixel, estimate 12.5 KB)."""
        return 3 * self.scale**2 * self.num_feat * itemsize + encoder_bytes_per_pixel(
            self.base, itemsize
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.upsample(self.conv_before_upsample(self.base(x)))
