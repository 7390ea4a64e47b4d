"""The native RunConfig schema; it lives in :mod:`gblsr.models.run_config` (loading a native
checkpoint needs it without the trainer) and is re-exported here."""

from ..models.run_config import (
    RunConfig,
    build_model_from_run_config,
    coerce_numbers,
    expand_run_configs,
    load_config,
    model_config_from_run_config,
)

__all__ = [
    "coerce_numbers",
    "RunConfig",
    "load_config",
    "expand_run_configs",
    "build_model_from_run_config",
    "model_config_from_run_config",
]
