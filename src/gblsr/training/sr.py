"""The arbitrary-scale SR recipe: LIIF's training protocol, for GB-LSR-ASR and any SR model.

A run is described by one YAML file (:class:`SRTrainConfig`)::

    kind: sr
    run_dir: runs/my_run            # relative to the current directory unless absolute
    seed: 0
    device: auto                    # auto | cpu | cuda | cuda:N
    model: {name: gblsr_asr, args: {encoder_cfg: {...}, decoder_cfg: {...}}}
    data:                           # training samples (LIIF's sr-implicit-downsampled)
      image_dirs: [path/to/DIV2K/DIV2K_train_HR]   # or builtin:samples
      repeat: 20                    # samples per image per epoch
      cache: memory                 # none | memory
      inp_size: 48                  # LR patch; HR crop = round(48 s)
      scale_min: 1.0                # s ~ U(scale_min, scale_max)
      scale_max: 4.0
      sample_q: 2304                # HR query pixels per sample
      augment: true                 # flips and transpose
      lr_kernel: pil                # pil (LIIF) | matlab (benchmark LR files)
      num_workers: 4
    val:                            # gblsr-eval's protocol, during training and at the end
      datasets: [path/to/benchmark/Set5]
      scales: [2, 3, 4]
      protocol: benchmark           # benchmark (Y, shave s) | div2k (RGB, shave s + 6)
      every_epochs: 1               # 0: only at the end
    train:
      batch_size: 16                # global batch (split over processes under torchrun)
      epochs: 1000                  # an epoch = len(images) * repeat // batch_size steps
      max_steps: null               # optional cap on the total
      loss: l1                      # l1 | mse | charbonnier
      grad_clip: 0.0
      amp: none                     # none | bf16 (autocast)
      compile: false                # torch.compile (CUDA)
    optim: {name: adam, lr: 1.0e-4, betas: [0.9, 0.999], eps: 1.0e-8, weight_decay: 0.0}
    schedule: {name: multistep, milestones: [200, 400, 600, 800], gamma: 0.5}  # epochs
    checkpoint: {every_steps: 1000, keep_last: 2, save_best: true}
    log: {every_steps: 50, progress: auto, tensorboard: auto}

Defaults are LIIF's (the values above). :func:`train_sr` writes ``<run_dir>/model.safetensors``
(final weights, gblsr's format), ``model-best.safetensors`` (best mean validation PSNR),
``checkpoints/``, ``train_log.csv``, ``val_log.csv``, ``run.json`` and ``train_config.yaml``.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from torch.utils.data import DataLoader

from ..data.training_data import ImageSource, ResumableBatchSampler, SRImplicitDownsampled
from ..errors import UserInputError
from ..representation import SRModel
from .config import coerce_numbers
from .distributed import DistContext, barrier, init_distributed, shutdown_distributed
from .engine import FINAL_MODEL_NAME, LoopConfig, TrainLoop
from .losses import pointwise_loss
from .monitor import Console, CSVLog
from .state import CheckpointManager, check_fresh_start, clear_run_files, write_json_atomic

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


# --------------------------------------------------------------------------- config


@dataclass
class SRModelSpec:
    name: str = "gblsr_asr"
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class SRDataSpec:
    image_dirs: list[str] = field(default_factory=list)
    first_k: int | None = None
    repeat: int = 20
    cache: str = "memory"
    inp_size: int | None = 48
    scale_min: float = 1.0
    scale_max: float = 4.0
    sample_q: int | None = 2304
    augment: bool = True
    lr_kernel: str = "pil"
    num_workers: int = 4


@dataclass
class SRValSpec:
    datasets: list[str] = field(default_factory=list)
    scales: list[float] = field(default_factory=lambda: [2, 3, 4])
    protocol: str = "benchmark"
    lr_source: str = "auto"
    every_epochs: int = 1
    max_images: int | None = None
    at_end: bool = True
    bicubic_reference: bool = True


@dataclass
class SRTrainSpec:
    batch_size: int = 16
    epochs: int = 1000
    max_steps: int | None = None
    loss: str = "l1"
    charbonnier_eps: float = 1e-3
    grad_clip: float = 0.0
    amp: str = "none"
    compile: bool = False


@dataclass
class OptimSpec:
    name: str = "adam"
    lr: float = 1e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    weight_decay: float = 0.0


@dataclass
class ScheduleSpec:
    """Learning-rate multiplier per step.

    multistep: gamma ** (number of milestones <= epoch) (milestones in epochs, LIIF's rule);
    cosine: from 1 to ``min_factor`` over the run; constant. ``warmup_steps`` ramps linearly
    from 1 / warmup_steps first.
    """

    name: str = "multistep"
    milestones: list[int] = field(default_factory=lambda: [200, 400, 600, 800])
    gamma: float = 0.5
    min_factor: float = 0.0
    warmup_steps: int = 0


@dataclass
class CheckpointSpec:
    every_steps: int = 1000
    keep_last: int = 2
    save_best: bool = True


@dataclass
class LogSpec:
    every_steps: int = 50
    progress: Any = "auto"
    tensorboard: Any = "auto"


@dataclass
class SRTrainConfig:
    run_dir: str = "runs/sr"
    seed: int = 0
    device: str = "auto"
    kind: str = "sr"
    description: str = ""
    model: SRModelSpec = field(default_factory=SRModelSpec)
    data: SRDataSpec = field(default_factory=SRDataSpec)
    val: SRValSpec = field(default_factory=SRValSpec)
    train: SRTrainSpec = field(default_factory=SRTrainSpec)
    optim: OptimSpec = field(default_factory=OptimSpec)
    schedule: ScheduleSpec = field(default_factory=ScheduleSpec)
    checkpoint: CheckpointSpec = field(default_factory=CheckpointSpec)
    log: LogSpec = field(default_factory=LogSpec)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_SECTIONS = {
    "model": SRModelSpec,
    "data": SRDataSpec,
    "val": SRValSpec,
    "train": SRTrainSpec,
    "optim": OptimSpec,
    "schedule": ScheduleSpec,
    "checkpoint": CheckpointSpec,
    "log": LogSpec,
}


def is_sr_config(d: dict[str, Any]) -> bool:
    return d.get("kind") == "sr" or ("model" in d and "arms" not in d and "train" in d)


def _build(cls, d: Any, where: str):
    if d is None:
        d = {}
    if not isinstance(d, dict):
        raise UserInputError(f"'{where}' must be a mapping, got {type(d).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise UserInputError(
            f"unknown key(s) in '{where}': {', '.join(unknown)}; known: {', '.join(sorted(names))}"
        )
    d = dict(d)
    coerce_numbers(cls, d, f"'{where}'")
    return cls(**d)


def sr_config_from_dict(d: dict[str, Any]) -> SRTrainConfig:
    """Validate a YAML dict into an :class:`SRTrainConfig` (one-line errors)."""
    d = dict(d)
    top = {k: v for k, v in d.items() if k not in _SECTIONS}
    cfg = _build(SRTrainConfig, top, "top level")
    for key, cls in _SECTIONS.items():
        setattr(cfg, key, _build(cls, d.get(key), key))
    _validate(cfg)
    return cfg


def _validate(cfg: SRTrainConfig) -> None:
    t, dcfg, o, s = cfg.train, cfg.data, cfg.optim, cfg.schedule
    if cfg.kind != "sr":
        raise UserInputError(f"kind must be 'sr' for an arbitrary-scale run, got {cfg.kind!r}")
    if not dcfg.image_dirs:
        raise UserInputError("data.image_dirs is empty: name the folders of training images")
    if isinstance(dcfg.image_dirs, str):
        dcfg.image_dirs = [dcfg.image_dirs]
    if isinstance(cfg.val.datasets, str):
        cfg.val.datasets = [cfg.val.datasets]
    if t.batch_size < 1 or t.epochs < 1:
        raise UserInputError("train.batch_size and train.epochs must be >= 1")
    if t.max_steps is not None and t.max_steps < 1:
        raise UserInputError("train.max_steps must be >= 1 (or null)")
    if t.loss not in ("l1", "mse", "charbonnier"):
        raise UserInputError(f"unknown train.loss {t.loss!r}; use l1, mse or charbonnier")
    if t.amp not in ("none", "bf16"):
        raise UserInputError(f"train.amp must be none or bf16, got {t.amp!r}")
    if o.name not in ("adam", "adamw"):
        raise UserInputError(f"unknown optim.name {o.name!r}; use adam or adamw")
    if not (o.lr > 0):
        raise UserInputError(f"optim.lr must be positive, got {o.lr}")
    if s.name not in ("multistep", "cosine", "constant"):
        raise UserInputError(f"unknown schedule.name {s.name!r}; use multistep, cosine or constant")
    if cfg.val.protocol not in ("benchmark", "div2k"):
        raise UserInputError(f"val.protocol must be benchmark or div2k, got {cfg.val.protocol!r}")
    if cfg.checkpoint.every_steps < 0 or cfg.log.every_steps < 1:
        raise UserInputError("checkpoint.every_steps must be >= 0 and log.every_steps >= 1")
    for sc in cfg.val.scales:
        if not (float(sc) >= 1):
            raise UserInputError(f"validation scales must be >= 1, got {sc}")


def apply_overrides(d: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """``section.key=value`` strings (values parsed as YAML) applied to a config dict."""
    d = copy.deepcopy(d)
    for item in overrides or []:
        if "=" not in item:
            raise UserInputError(f"--set expects KEY=VALUE, got {item!r}")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise UserInputError(f"--set {key}: cannot parse {raw!r}") from None
        parts = [p for p in key.strip().split(".") if p]
        if not parts:
            raise UserInputError(f"--set expects KEY=VALUE, got {item!r}")
        cur = d
        for p in parts[:-1]:
            nxt = cur.get(p)
            if nxt is None:
                nxt = cur[p] = {}
            if not isinstance(nxt, dict):
                raise UserInputError(f"--set {key}: {p!r} is not a section")
            cur = nxt
        cur[parts[-1]] = value
    return d


def load_sr_config(path: str | Path, overrides: list[str] | None = None) -> SRTrainConfig:
    from .config import load_config

    return sr_config_from_dict(apply_overrides(load_config(path), overrides or []))


def lr_multiplier(s: ScheduleSpec, step: int, steps_per_epoch: int, total_steps: int) -> float:
    """Learning-rate factor of global step ``step`` (0-based)."""
    f = 1.0
    if s.name == "multistep":
        epoch = step // steps_per_epoch
        f = s.gamma ** sum(1 for m in s.milestones if epoch >= int(m))
    elif s.name == "cosine":
        t = min(1.0, step / max(1, total_steps))
        f = s.min_factor + (1.0 - s.min_factor) * 0.5 * (1.0 + math.cos(math.pi * t))
    if s.warmup_steps and step < s.warmup_steps:
        f *= (step + 1) / s.warmup_steps
    return f


# --------------------------------------------------------------------------- training


def _build_model(cfg: SRTrainConfig):
    from ..registry import create_model

    try:
        model = create_model(cfg.model.name, **(cfg.model.args or {}))
    except (TypeError, ValueError) as e:
        if isinstance(e, UserInputError):
            raise
        raise UserInputError(f"cannot build model {cfg.model.name!r}: {e}") from None
    if not isinstance(model, SRModel):
        raise UserInputError(
            f"model {cfg.model.name!r} is not an arbitrary-scale SR model (no predict_full)"
        )
    return model


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
