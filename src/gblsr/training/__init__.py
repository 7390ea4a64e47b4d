"""Training: the RunConfig schema of native experiments and the losses.

The training loops (native experiments and the arbitrary-scale recipe) live in this package too.
"""

from .config import (
    RunConfig,
    build_model_from_run_config,
    expand_run_configs,
    load_config,
    model_config_from_run_config,
)
from .losses import (
    LossConfig,
    LossName,
    compute_losses,
    pointwise_charbonnier,
    pointwise_l1,
    pointwise_loss,
    pointwise_mse,
)

__all__ = [
    "RunConfig",
    "build_model_from_run_config",
    "model_config_from_run_config",
    "expand_run_configs",
    "load_config",
    "LossConfig",
    "LossName",
    "compute_losses",
    "pointwise_loss",
    "pointwise_mse",
    "pointwise_l1",
    "pointwise_charbonnier",
]
