"""Training: native GB-LSR experiments (the reference's RunConfig schema) and the
arbitrary-scale SR recipe (LIIF's protocol), resumable, on one process or many (torchrun).

    from gblsr.training import run
    run("configs/quickstart.yaml", overrides=["train.epochs=2"])   # any kind of config
    run(resume="runs/quickstart")                                # continue a stopped run

    from gblsr.training import load_sr_config, train_sr
    summary = train_sr(load_sr_config("configs/quickstart.yaml"))
    summary["final_checkpoint"]                      # runs/quickstart/model.safetensors

    from gblsr.training import expand_run_configs, load_config, train_one
    for rc in expand_run_configs(load_config("configs/example.yaml")):
        train_one(rc)                                # experiment.json, rows.json, figures, ...

The command line is ``gblsr-train`` (:mod:`gblsr.cli.train`).
"""

from .config import (
    RunConfig,
    build_model_from_run_config,
    expand_run_configs,
    load_config,
    model_config_from_run_config,
)
from .distributed import DistContext, init_distributed, resolve_device
from .engine import LoopConfig, TrainingDivergedError, TrainLoop, unwrap_model
from .losses import (
    LossConfig,
    LossName,
    compute_losses,
    pointwise_charbonnier,
    pointwise_l1,
    pointwise_loss,
    pointwise_mse,
)
from .native import (
    aggregate,
    build_loaders,
    dump_locality_artifacts,
    evaluate,
    measure_inference_ms,
    save_figures,
    set_seed,
    train_one,
    validate,
)
from .runner import run
from .sr import (
    SRTrainConfig,
    apply_overrides,
    load_sr_config,
    lr_multiplier,
    sr_config_from_dict,
    train_sr,
)
from .state import CheckpointManager, capture_rng_state, restore_rng_state

__all__ = [
    "run",
    # native experiments
    "RunConfig",
    "build_model_from_run_config",
    "model_config_from_run_config",
    "expand_run_configs",
    "load_config",
    "train_one",
    "build_loaders",
    "validate",
    "evaluate",
    "aggregate",
    "set_seed",
    "save_figures",
    "measure_inference_ms",
    "dump_locality_artifacts",
    # losses
    "LossConfig",
    "LossName",
    "compute_losses",
    "pointwise_loss",
    "pointwise_mse",
    "pointwise_l1",
    "pointwise_charbonnier",
    # arbitrary-scale recipe
    "SRTrainConfig",
    "load_sr_config",
    "sr_config_from_dict",
    "apply_overrides",
    "train_sr",
    "lr_multiplier",
    # machinery
    "TrainLoop",
    "LoopConfig",
    "TrainingDivergedError",
    "unwrap_model",
    "CheckpointManager",
    "capture_rng_state",
    "restore_rng_state",
    "DistContext",
    "init_distributed",
    "resolve_device",
]
