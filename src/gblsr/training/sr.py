"""The arbitrary-scale SR recipe's training loop (LIIF's protocol, for GB-LSR-ASR and any SR
model). The YAML schema and its defaults are :mod:`gblsr.training.sr_config` (re-exported here).

:func:`train_sr` writes ``<run_dir>/model.safetensors`` (final weights, gblsr's format),
``model-best.safetensors`` (best mean validation PSNR), ``checkpoints/``, ``train_log.csv``,
``val_log.csv``, ``run.json`` and ``train_config.yaml``.
"""

from __future__ import annotations

import math
import time
import warnings
from pathlib import Path
from typing import Any

import torch
import yaml
from torch.utils.data import DataLoader

from ..data.training_data import ImageSource, ResumableBatchSampler, SRImplicitDownsampled
from ..errors import UserInputError
from ..representation import SRModel
from .distributed import DistContext, barrier, init_distributed, shutdown_distributed
from .engine import FINAL_MODEL_NAME, LoopConfig, TrainLoop
from .losses import pointwise_loss
from .monitor import Console, CSVLog
from .sr_config import (
    CheckpointSpec,
    LogSpec,
    OptimSpec,
    ScheduleSpec,
    SRDataSpec,
    SRModelSpec,
    SRTrainConfig,
    SRTrainSpec,
    SRValSpec,
    apply_overrides,
    is_sr_config,
    load_sr_config,
    lr_multiplier,
    sr_config_from_dict,
)
from .state import (
    CheckpointManager,
    check_fresh_start,
    clear_run_files,
    undo_failed_start,
    write_json_atomic,
)

__all__ = [
    "SRTrainConfig",
    "SRModelSpec",
    "SRDataSpec",
    "SRValSpec",
    "SRTrainSpec",
    "OptimSpec",
    "ScheduleSpec",
    "CheckpointSpec",
    "LogSpec",
    "load_sr_config",
    "sr_config_from_dict",
    "apply_overrides",
    "train_sr",
    "lr_multiplier",
    "is_sr_config",
]


# --------------------------------------------------------------------------- training


def _build_model(cfg: SRTrainConfig):
    from ..checkpoint import check_config
    from ..registry import create_model

    args = cfg.model.args or {}
    if not isinstance(args, dict):
        raise UserInputError(f"model.args must be a mapping, got {type(args).__name__}")
    check_config(args, "model.args")
    try:
        with warnings.catch_warnings():  # e.g. torch's note on zero-size layers: refused below
            warnings.simplefilter("ignore", UserWarning)
            model = create_model(cfg.model.name, **args)
    except UserInputError:
        raise
    except Exception as e:  # any constructor error is the config's fault
        raise UserInputError(f"cannot build model {cfg.model.name!r}: {e}") from None
    empty = next((n for n, p in model.named_parameters() if p.numel() == 0), None)
    if empty is not None:
        raise UserInputError(
            f"model.args give {cfg.model.name!r} an empty layer ({empty}); widths and sizes "
            "must be >= 1"
        )
    if not isinstance(model, SRModel):
        raise UserInputError(
            f"model {cfg.model.name!r} is not an arbitrary-scale SR model (no predict_full)"
        )
    if cfg.model.init:
        _init_weights(model, cfg.model.init)
    return model


def _init_weights(model: torch.nn.Module, init: str) -> None:
    """Start from another checkpoint's weights (names and shapes must fit the model exactly)."""
    from ..checkpoint import load_model, load_strict

    load_strict(model, load_model(init, device="cpu").state_dict(), f"model.init {init}")


def _make_optimizer(cfg: SRTrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    o = cfg.optim
    params = [p for p in model.parameters() if p.requires_grad]
    kw = dict(lr=o.lr, betas=tuple(o.betas), eps=o.eps, weight_decay=o.weight_decay)
    if o.name == "adamw":
        return torch.optim.AdamW(params, **kw)
    return torch.optim.Adam(params, **kw)


def _val_datasets(cfg: SRTrainConfig):
    from ..data.datasets import open_dataset
    from ..data.training_data import resolve_image_dir

    return [
        open_dataset(resolve_image_dir(d), max_images=cfg.val.max_images) for d in cfg.val.datasets
    ]


def _evaluate(model, datasets, cfg: SRTrainConfig) -> list[dict]:
    from ..evaluation import evaluate

    rows = evaluate(
        model,
        datasets,
        scales=cfg.val.scales,
        protocol=cfg.val.protocol,
        lr_source=cfg.val.lr_source,
    )
    return [{k: v for k, v in r.items() if k != "images"} for r in rows]


def _key(row: dict) -> str:
    return f"{row['dataset']}_x{row['scale']}"


def train_sr(
    cfg: SRTrainConfig,
    resume: bool = False,
    console: Console | None = None,
    overwrite: bool = False,
) -> dict:
    """Train (or resume) an arbitrary-scale SR run; returns the summary written to run.json
    (``final_checkpoint`` is the final weights' path).

    A fresh start (``resume=False``) in a folder that holds an earlier run raises
    :class:`~gblsr.errors.UserInputError` unless ``overwrite`` (then the earlier run's files
    are deleted).
    """
    run_dir = Path(cfg.run_dir)
    if resume:
        status = run_dir / "run.json"
        if status.is_file():
            import json

            info = json.loads(status.read_text())
            if info.get("status") == "completed" and (run_dir / FINAL_MODEL_NAME).is_file():
                return info
    ctx = init_distributed(cfg.device)
    try:
        with undo_failed_start(run_dir, resume=resume, overwrite=overwrite):
            return _train_sr(cfg, ctx, resume, console, overwrite)
    finally:
        shutdown_distributed(ctx)


def _train_sr(
    cfg: SRTrainConfig,
    ctx: DistContext,
    resume: bool,
    console: Console | None,
    overwrite: bool = False,
) -> dict:
    run_dir = Path(cfg.run_dir)
    console = console or Console(run_dir.name, enabled=ctx.is_main)
    console.enabled = ctx.is_main
    stale = [] if resume else check_fresh_start(run_dir, overwrite)
    barrier(ctx)  # every rank has looked before rank 0 writes anything
    if ctx.is_main:
        clear_run_files(stale)
        run_dir.mkdir(parents=True, exist_ok=True)
        text = yaml.safe_dump(cfg.to_dict(), sort_keys=False)
        from ..fileio import atomic_write

        atomic_write(run_dir / "train_config.yaml", lambda tmp: Path(tmp).write_text(text))
        write_json_atomic(run_dir / "run.json", {"status": "running"})
    barrier(ctx)

    from ..runtime import set_seed

    set_seed(cfg.seed)
    model = _build_model(cfg).to(ctx.device)
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    optimizer = _make_optimizer(cfg, model)

    d = cfg.data
    source = ImageSource.from_dirs(d.image_dirs, cache=d.cache, first_k=d.first_k)
    dataset = SRImplicitDownsampled(
        source,
        inp_size=d.inp_size,
        scale_min=d.scale_min,
        scale_max=d.scale_max,
        augment=d.augment,
        sample_q=d.sample_q,
        lr_kernel=d.lr_kernel,
        repeat=d.repeat,
        seed=cfg.seed,
        scale_per_batch=d.scale_per_batch,
    )
    probe = ResumableBatchSampler(len(dataset), cfg.train.batch_size, world_size=ctx.world_size)
    spe = probe.steps_per_epoch
    total = spe * cfg.train.epochs
    if cfg.train.max_steps is not None:
        total = min(total, int(cfg.train.max_steps))
    console(
        f"{cfg.model.name}: {n_params:,} parameters on {ctx.device}"
        + (f" x {ctx.world_size} processes" if ctx.distributed else "")
        + f"; {len(source)} training images x {d.repeat} = {len(dataset)} samples/epoch, "
        f"{spe} steps/epoch, {total} steps"
    )

    def make_batches(start_step: int):
        sampler = ResumableBatchSampler(
            len(dataset),
            cfg.train.batch_size,
            seed=cfg.seed,
            start_step=start_step,
            rank=ctx.rank,
            world_size=ctx.world_size,
            total_steps=total,
            step_in_key=d.scale_per_batch,
        )
        return DataLoader(
            dataset,
            batch_sampler=sampler,
            num_workers=d.num_workers,
            pin_memory=ctx.device.type == "cuda",
            persistent_workers=False,
        )

    def loss_fn(m, batch, dev):
        inp = batch["inp"].to(dev, non_blocking=True)
        coord = batch["coord"].to(dev, non_blocking=True)
        cell = batch["cell"].to(dev, non_blocking=True)
        gt = batch["gt"].to(dev, non_blocking=True)
        pred = m(inp, coord, cell)
        return pointwise_loss(pred.float(), gt, cfg.train.loss, cfg.train.charbonnier_eps), {}

    # ---- validation (main process)
    val_sets = _val_datasets(cfg) if (ctx.is_main and cfg.val.datasets) else []
    found = CheckpointManager(run_dir).latest() if resume else None
    val_csv = (
        CSVLog(
            run_dir / "val_log.csv",
            ["step", "epoch", "dataset", "scale", "psnr", "ssim", "n_images"],
            found[0] if found else None,
        )
        if ctx.is_main and cfg.val.datasets
        else None
    )
    bicubic: dict[str, float] = {}
    if val_sets and cfg.val.bicubic_reference:
        from ..evaluation import get_baseline

        for r in _evaluate(get_baseline("bicubic"), val_sets, cfg):
            if r.get("psnr") is not None:
                bicubic[_key(r)] = r["psnr"]

    def validate(m, step):
        rows = _evaluate(m, val_sets, cfg)
        out: dict[str, Any] = {}
        for r in rows:
            if val_csv is not None:
                val_csv.write(
                    {
                        "step": step,
                        "epoch": (step - 1) // spe,
                        "dataset": r["dataset"],
                        "scale": r["scale"],
                        "psnr": r["psnr"],
                        "ssim": r["ssim"],
                        "n_images": r["n_images"],
                    }
                )
            if r.get("psnr") is not None:
                out[f"psnr_{_key(r)}"] = float(r["psnr"])
        vals = [v for v in out.values()]
        if vals:
            mean = sum(vals) / len(vals)
            out["psnr_mean"] = mean
            best = max((r.get("psnr_mean", -math.inf) for r in loop.val_history), default=-math.inf)
            if cfg.checkpoint.save_best and mean > best:
                from ..checkpoint import save_model

                save_model(
                    m, run_dir / "model-best.safetensors", extra={"step": step, "psnr_mean": mean}
                )
        return out

    # Decided from the config, identically on every rank: the validation barrier is collective.
    has_val = bool(cfg.val.datasets)
    val_every = cfg.val.every_epochs * spe if (has_val and cfg.val.every_epochs > 0) else 0
    loop = TrainLoop(
        run_dir,
        model,
        optimizer,
        lambda st: cfg.optim.lr * lr_multiplier(cfg.schedule, st, spe, total),
        loss_fn,
        make_batches,
        ctx,
        LoopConfig(
            total_steps=total,
            steps_per_epoch=spe,
            log_every=cfg.log.every_steps,
            checkpoint_every=cfg.checkpoint.every_steps,
            keep_last=cfg.checkpoint.keep_last,
            val_every=val_every,
            grad_clip=cfg.train.grad_clip,
            amp=cfg.train.amp,
            compile=cfg.train.compile,
            progress=cfg.log.progress,
            tensorboard=cfg.log.tensorboard,
        ),
        console,
        validate if has_val else None,
        model_extra={"recipe": "gblsr-train sr", "seed": cfg.seed},
    )
    t0 = time.time()
    result = loop.run(resume=resume)
    summary: dict[str, Any] = {
        "status": "completed",
        "final_checkpoint": result["final_checkpoint"],
        "step": result["step"],
        "steps_per_epoch": spe,
        "epochs": result["step"] / spe,
        "n_params": n_params,
        "train_seconds": round(result["elapsed_s"], 2),
        "resumed_from_step": result["resumed_from"],
        "world_size": ctx.world_size,
        "device": str(ctx.device),
    }
    if ctx.is_main and val_sets and cfg.val.at_end:
        last = loop.val_history[-1] if loop.val_history else None
        if last is None or last["step"] != result["step"]:
            final = validate(model.eval(), result["step"])
            model.train()
        else:
            final = {k: v for k, v in last.items() if k not in ("step", "epoch")}
        summary["final_val"] = final
        if bicubic:
            summary["bicubic_val"] = {f"psnr_{k}": v for k, v in bicubic.items()}
            for k, v in bicubic.items():
                mk = f"psnr_{k}"
                if mk in final:
                    console(f"{k}: {final[mk]:.3f} dB (bicubic {v:.3f}, {final[mk] - v:+.3f})")
        if (run_dir / "model-best.safetensors").is_file():
            summary["best_checkpoint"] = str(run_dir / "model-best.safetensors")
    if val_csv is not None:
        val_csv.close()
    summary["wall_seconds_this_session"] = round(time.time() - t0, 2)
    if ctx.is_main:
        write_json_atomic(run_dir / "run.json", summary)
    barrier(ctx)
    return summary
