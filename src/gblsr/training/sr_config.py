"""The arbitrary-scale SR recipe's config: LIIF's training protocol, for GB-LSR-ASR and any SR
model (the loop is :mod:`gblsr.training.sr`).

A run is described by one YAML file (:class:`SRTrainConfig`)::

    kind: sr
    run_dir: runs/my_run            # relative to the current directory unless absolute
    seed: 0
    device: auto                    # auto | cpu | cuda | cuda:N
    model: {name: gblsr_asr, args: {encoder_cfg: {...}, decoder_cfg: {...}}}
                                    # or a named variant: {name: gblsr_asr_rdn}
    data:                           # training samples (LIIF's sr-implicit-downsampled)
      image_dirs: [path/to/DIV2K/DIV2K_train_HR]   # or builtin:samples
      repeat: 20                    # samples per image per epoch
      cache: memory                 # none | memory
      inp_size: 48                  # LR patch; HR crop = round(48 s)
      scale_min: 1.0                # s ~ U(scale_min, scale_max)
      scale_max: 4.0
      sample_q: 2304                # HR query pixels per sample (null: the whole HR crop)
      scale_per_batch: false        # true: one s per global batch (whole crops then collate)
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import UserInputError
from ..models.run_config import coerce_numbers

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
    "lr_multiplier",
    "is_sr_config",
]


# --------------------------------------------------------------------------- config


@dataclass
class SRModelSpec:
    name: str = "gblsr_asr"
    args: dict[str, Any] = field(default_factory=dict)
    # Weights to start from (fine-tuning): any checkpoint load_model reads, or "default".
    init: str | None = None


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
    scale_per_batch: bool = False
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
    if not isinstance(dcfg.image_dirs, (list, tuple)) or not all(
        isinstance(d, str) for d in dcfg.image_dirs
    ):
        raise UserInputError(
            f"data.image_dirs must be a folder or a list of folders, got {dcfg.image_dirs!r}"
        )
    if dcfg.sample_q is None and dcfg.scale_min != dcfg.scale_max and dcfg.inp_size is not None:
        if not dcfg.scale_per_batch and t.batch_size > 1:
            raise UserInputError(
                "data.sample_q: null (whole HR crops) with a scale range gives crops of "
                "different sizes in one batch; set data.scale_per_batch: true (or sample_q, "
                "or batch_size: 1)"
            )
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
    from ..models.run_config import load_config

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
