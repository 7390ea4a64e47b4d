"""Residual Dense Network feature extractor (Zhang et al., CVPR 2018) without the upsampler.

(B, in_channels, H, W) -> (B, num_features, H, W): shallow features (two 3x3 convs), D residual
dense blocks of C densely connected conv+ReLU layers with 1x1 local fusion and a local residual,
then global fusion (1x1 over all block outputs, 3x3) plus a global residual from the first conv.
Defaults (G0 = G = 64, D = 16, C = 8) have 21,973,952 parameters.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn as nn

from ..registry import register

__all__ = ["RDNConfig", "RDNEncoder", "ResidualDenseBlock", "build_rdn_encoder"]


@dataclass
class RDNConfig:
    """G0 = ``num_features`` (also the output width), G = ``growth_rate``, D = ``num_rdbs``,
    C = ``num_layers_per_rdb``."""

    num_features: int = 64
    growth_rate: int = 64
    num_rdbs: int = 16
    num_layers_per_rdb: int = 8
    kernel_size: int = 3
    in_channels: int = 3


class _DenseLayer(nn.Module):
    """conv + ReLU whose output is appended to its input along channels."""

    def __init__(self, in_channels: int, growth_rate: int, kernel_size: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, growth_rate, kernel_size, padding=kernel_size // 2)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.relu(self.conv(x))], dim=1)


class ResidualDenseBlock(nn.Module):
    """C dense layers, 1x1 fusion back to G0 channels, plus the block input."""

    def __init__(self, num_features: int, growth_rate: int, num_layers: int, kernel_size: int = 3):
        super().__init__()
        self.dense_layers = nn.Sequential(
            *(
                _DenseLayer(num_features + i * growth_rate, growth_rate, kernel_size)
                for i in range(num_layers)
            )
        )
        self.local_feature_fusion = nn.Conv2d(
            num_features + num_layers * growth_rate, num_features, kernel_size=1
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.local_feature_fusion(self.dense_layers(x)) + x


@register("encoder", "rdn")
class RDNEncoder(nn.Module):
    """RDN without upsampling; ``out_dim`` is the output channel count."""

    out_dim: int

    def __init__(self, cfg: RDNConfig | None = None):
        super().__init__()
        cfg = cfg if cfg is not None else RDNConfig()
        self.cfg = cfg
        self.out_dim = cfg.num_features
        g0, k = cfg.num_features, cfg.kernel_size
        self.sfe_1 = nn.Conv2d(cfg.in_channels, g0, k, padding=k // 2)
        self.sfe_2 = nn.Conv2d(g0, g0, k, padding=k // 2)
        self.rdbs = nn.ModuleList(
            ResidualDenseBlock(g0, cfg.growth_rate, cfg.num_layers_per_rdb, k)
            for _ in range(cfg.num_rdbs)
        )
        self.gff_1x1 = nn.Conv2d(cfg.num_rdbs * g0, g0, kernel_size=1)
        self.gff_3x3 = nn.Conv2d(g0, g0, k, padding=k // 2)

    def get_config(self) -> dict:
        return dataclasses.asdict(self.cfg)

    @classmethod
    def from_config(cls, config: dict) -> RDNEncoder:
        return cls(RDNConfig(**config))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shallow = self.sfe_1(x)
        h = self.sfe_2(shallow)
        block_outputs = []
        for block in self.rdbs:
            h = block(h)
            block_outputs.append(h)
        return self.gff_3x3(self.gff_1x1(torch.cat(block_outputs, dim=1))) + shallow


def build_rdn_encoder(
    *,
    num_features: int = 64,
    growth_rate: int = 64,
    num_rdbs: int = 16,
    num_layers_per_rdb: int = 8,
) -> RDNEncoder:
    """RDN encoder from keyword arguments (nf 48 / 64 / 96: 20.57 / 21.97 / 24.85 M params)."""
    return RDNEncoder(
        RDNConfig(
            num_features=num_features,
            growth_rate=growth_rate,
            num_rdbs=num_rdbs,
            num_layers_per_rdb=num_layers_per_rdb,
        )
    )
