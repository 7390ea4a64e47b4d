"""Pixel losses: mse, l1 and charbonnier (mean of sqrt(d^2 + eps^2))."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

__all__ = [
    "LossName",
    "LossConfig",
    "pointwise_mse",
    "pointwise_l1",
    "pointwise_charbonnier",
    "pointwise_loss",
    "compute_losses",
]

LossName = Literal["mse", "l1", "charbonnier"]


@dataclass
class LossConfig:
    lambda_point: float = 1.0
    loss_name: LossName = "mse"
    charbonnier_eps: float = 1e-3


def pointwise_mse(recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(recon, target)


def pointwise_l1(recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.l1_loss(recon, target)


def pointwise_charbonnier(
    recon: torch.Tensor, target: torch.Tensor, eps: float = 1e-3
) -> torch.Tensor:
    if eps <= 0:
        raise ValueError(f"charbonnier eps must be positive, got {eps}")
    return torch.sqrt((recon - target) ** 2 + eps * eps).mean()


def pointwise_loss(
    recon: torch.Tensor, target: torch.Tensor, loss_name: str = "mse", charbonnier_eps: float = 1e-3
) -> torch.Tensor:
    if loss_name == "mse":
        return pointwise_mse(recon, target)
    if loss_name == "l1":
        return pointwise_l1(recon, target)
    if loss_name == "charbonnier":
        return pointwise_charbonnier(recon, target, charbonnier_eps)
    raise ValueError(f"unknown loss {loss_name!r}; expected mse, l1 or charbonnier")


def compute_losses(out: dict, target: torch.Tensor, cfg: LossConfig) -> dict[str, torch.Tensor]:
    """``{"L_point", "L_total"}`` for a model output dict with ``recon``."""
    point = pointwise_loss(out["recon"], target, cfg.loss_name, cfg.charbonnier_eps)
    return {"L_point": point, "L_total": cfg.lambda_point * point}
