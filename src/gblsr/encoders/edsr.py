"""EDSR feature extractor without the upsampler (Lim et al., CVPRW 2017), as LIIF, LTE and LMF
use it.

(B, in_channels, H, W) -> (B, num_features, H, W): a 3x3 head conv, ``num_blocks`` residual
blocks (conv, ReLU, conv, times ``res_scale``, plus the block input; no batch norm), a closing
3x3 conv, and a global skip from the head. The output is linear (no activation).

The defaults are EDSR-baseline (16 blocks of 64 features): 1,220,440 parameters. That count
includes 24 frozen values: the RGB mean-shift 1x1 convs ``sub_mean``/``add_mean`` that the
official LIIF/LTE/LMF code builds and keeps in its state dicts but never applies. They are kept
here, frozen and unused, so official checkpoints load strictly and parameter counts agree.

State-dict keys equal the official ones: ``head.0``, ``body.{i}.body.{0,2}``, ``body.{N}``,
``sub_mean``, ``add_mean``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn as nn

from ..registry import register

__all__ = ["EDSRConfig", "EDSREncoder", "EDSR_RGB_MEAN"]

# DIV2K RGB mean used by the (unused) mean-shift layers.
EDSR_RGB_MEAN = (0.4488, 0.4371, 0.4040)


@dataclass
class EDSRConfig:
    """EDSR-baseline by default; the full EDSR is 32 blocks, 256 features, res_scale 0.1."""

    num_blocks: int = 16
    num_features: int = 64
    res_scale: float = 1.0
    kernel_size: int = 3
    in_channels: int = 3


def _conv(c_in: int, c_out: int, k: int) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, k, padding=k // 2)


def _mean_shift(sign: float) -> nn.Conv2d:
    """Frozen 1x1 conv x -> x + sign * mean (identity weight); never applied in forward."""
    conv = nn.Conv2d(3, 3, kernel_size=1)
    with torch.no_grad():
        conv.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
        conv.bias.copy_(sign * torch.tensor(EDSR_RGB_MEAN))
    for p in conv.parameters():
        p.requires_grad_(False)
    return conv


class _ResBlock(nn.Module):
    def __init__(self, num_features: int, kernel_size: int, res_scale: float):
        super().__init__()
        self.body = nn.Sequential(
            _conv(num_features, num_features, kernel_size),
            nn.ReLU(inplace=True),
            _conv(num_features, num_features, kernel_size),
        )
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        res = self.body(x).mul(self.res_scale)
        res += x
        return res


@register("encoder", "edsr")
class EDSREncoder(nn.Module):
    """EDSR without upsampling; ``out_dim`` is the output channel count.

    Registered as ``edsr``; its defaults are EDSR-baseline (official name ``edsr-baseline``).
    """

    out_dim: int

    def __init__(self, cfg: EDSRConfig | None = None):
        super().__init__()
        cfg = cfg if cfg is not None else EDSRConfig()
        self.cfg = cfg
        self.out_dim = cfg.num_features
        nf, k = cfg.num_features, cfg.kernel_size
        self.sub_mean = _mean_shift(-1.0)
        self.add_mean = _mean_shift(+1.0)
        self.head = nn.Sequential(_conv(cfg.in_channels, nf, k))
        self.body = nn.Sequential(
            *(_ResBlock(nf, k, cfg.res_scale) for _ in range(cfg.num_blocks)), _conv(nf, nf, k)
        )

    def get_config(self) -> dict:
        return dataclasses.asdict(self.cfg)

    @classmethod
    def from_config(cls, config: dict) -> EDSREncoder:
        return cls(EDSRConfig(**config))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(x)
        res = self.body(x)
        res += x
        return res
