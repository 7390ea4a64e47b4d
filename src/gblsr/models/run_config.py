"""The RunConfig YAML of native GB-LSR experiments (the reference's schema, validated).

It lives with the native models because a native checkpoint is rebuilt from it
(:func:`gblsr.load_model` with a run config); training reads it from here too
(``gblsr.training.config`` re-exports it).

A run file names an experiment, a root folder for its runs, a ``base`` block of settings, a list
of ``arms`` (each an ``arm`` name, an optional ``slug`` and overrides of ``base``) and ``seeds``.
Every arm x seed pair becomes one :class:`RunConfig`, run in ``<run_root>/<slug or arm>__seed<s>``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..data.sources import DataConfig
from ..errors import UserInputError
from .arms import EncoderConfig, ModelConfig, build_model
from .basis import BasisConfig

__all__ = [
    "coerce_numbers",
    "RunConfig",
    "load_config",
    "expand_run_configs",
    "build_model_from_run_config",
    "model_config_from_run_config",
]


@dataclass
class RunConfig:
    experiment_id: str
    run_dir: str
    arm: str
    seed: int
    # schedule
    total_steps: int = 200
    batch_size: int = 8
    lr: float = 2e-4
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    log_every: int = 20
    val_every: int = 0
    num_val_images: int = 64
    num_val_curve_images: int = 64
    data: DataConfig = field(default_factory=DataConfig)
    # geometry and basis
    image_size: int = 256
    patch_size: int = 32
    d_feat: int = 128
    groupnorm: int = 8
    p_max: int = 16
    family: str = "fourier"
    s_e_lo: float = 0.25
    s_e_hi: float = 2.0
    p_soft_lo: float = 1.0
    p_soft_hi: float = 16.0
    cutoff_sharpness: float = 4.0
    # start of training (options, not in the reference schema; None = the range midpoints)
    s_e_init: float | None = None
    p_soft_init: float | None = None
    # adaptivity
    adapt_bandwidth: bool = True
    adapt_order: bool = True
    bandwidth_mode: str | None = None
    # loss
    lambda_point: float = 1.0
    loss_name: str = "mse"
    charbonnier_eps: float = 1e-3
    # global Fourier-MLP control
    n_global_freq: int = 128
    decoder_hidden: int = 256
    decoder_layers: int = 3
    max_freq_cycles_per_image: float = 16.0
    # extra outputs
    dump_locality: bool = False
    save_checkpoint: bool = False  # kept for the reference schema; weights are always saved
    # running (not in the reference schema; defaults keep its behaviour)
    device: str = "auto"
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    amp: str = "none"
    compile: bool = False
    progress: Any = "auto"
    tensorboard: Any = "auto"

    def __post_init__(self) -> None:
        if self.loss_name not in ("mse", "l1", "charbonnier"):
            raise UserInputError(
                f"unknown loss_name {self.loss_name!r}; expected mse, l1 or charbonnier"
            )
        if self.amp not in ("none", "bf16"):
            raise UserInputError(f"amp must be 'none' or 'bf16', got {self.amp!r}")
        for name in ("total_steps", "batch_size", "log_every"):
            if int(getattr(self, name)) < 1:
                raise UserInputError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("val_every", "checkpoint_every", "num_val_images", "num_val_curve_images"):
            if int(getattr(self, name)) < 0:
                raise UserInputError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.charbonnier_eps <= 0:
            raise UserInputError(f"charbonnier_eps must be positive, got {self.charbonnier_eps}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "run config") -> RunConfig:
        d = dict(d)
        data = dict(d.pop("data", None) or {})
        _check_keys(cls, d, where)
        _check_keys(DataConfig, data, f"{where} (data)")
        return cls(**d, data=DataConfig(**data))


def _check_keys(cls: type, d: dict[str, Any], where: str) -> None:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise UserInputError(f"unknown key(s) in {where}: {', '.join(unknown)}")
    coerce_numbers(cls, d, where)


def _to_number(kind: str, v: Any, key: str, where: str) -> Any:
    if v is None or isinstance(v, bool):
        return v
    try:
        if kind == "float" and isinstance(v, (int, float, str)):
            return float(v)
        if kind == "int" and isinstance(v, (int, float, str)):
            f = float(v)
            if f.is_integer():
                return int(f)
    except ValueError:
        pass
    raise UserInputError(f"{where}: {key} must be a number ({kind}), got {v!r}")


def coerce_numbers(cls: type, d: dict[str, Any], where: str) -> None:
    """In place: turn YAML strings such as ``2e-4`` (YAML 1.1 reads them as text) and
    integral floats into the float / int a dataclass field declares; one-line errors otherwise."""
    for f in dataclasses.fields(cls):
        if f.name not in d:
            continue
        t = str(f.type).replace(" ", "")
        v = d[f.name]
        if t in ("float", "float|None", "int", "int|None"):
            d[f.name] = _to_number(t.split("|")[0], v, f.name, where)
        elif t in ("list[float]", "list[int]", "tuple[float,...]", "tuple[int,...]"):
            if isinstance(v, (int, float, str)) and not isinstance(v, bool):
                v = [v]
            if not isinstance(v, (list, tuple)):
                raise UserInputError(f"{where}: {f.name} must be a list of numbers, got {v!r}")
            kind = "float" if "float" in t else "int"
            d[f.name] = [_to_number(kind, x, f.name, where) for x in v]


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML file into a dict (safe loader); one-line errors for missing or bad files."""
    p = Path(path)
    if not p.is_file():
        raise UserInputError(f"config file not found: {p}")
    try:
        cfg = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise UserInputError(f"invalid YAML in {p}{at}") from None
    if not isinstance(cfg, dict):
        raise UserInputError(f"config {p} must be a YAML mapping")
    return cfg


def expand_run_configs(cfg: dict[str, Any]) -> list[RunConfig]:
    """One RunConfig per (arm, seed), arms outer, seeds inner."""
    for key in ("experiment_id", "run_root"):
        if key not in cfg:
            raise UserInputError(f"run config is missing '{key}'")
    base = dict(cfg.get("base") or {})
    seeds = cfg.get("seeds", [0]) or [0]
    runs = []
    if isinstance(seeds, int):
        seeds = [seeds]
    for i, arm_entry in enumerate(cfg.get("arms") or []):
        arm_entry = dict(arm_entry)
        if "arm" not in arm_entry:
            raise UserInputError(f"arms[{i}] has no 'arm' name")
        slug = arm_entry.pop("slug", None) or arm_entry["arm"]
        for seed in seeds:
            merged = {**base, **arm_entry}
            merged.update(
                seed=int(seed),
                experiment_id=cfg["experiment_id"],
                run_dir=str(Path(cfg["run_root"]) / f"{slug}__seed{seed}"),
            )
            runs.append(RunConfig.from_dict(merged, where=f"arms[{i}]"))
    return runs


def model_config_from_run_config(rc: RunConfig) -> ModelConfig:
    return ModelConfig(
        arm=rc.arm,
        image_size=rc.image_size,
        patch_size=rc.patch_size,
        basis=BasisConfig(
            patch_size=rc.patch_size,
            p_max=rc.p_max,
            family=rc.family,
            s_e_range=(rc.s_e_lo, rc.s_e_hi),
            p_soft_range=(rc.p_soft_lo, rc.p_soft_hi),
            cutoff_sharpness=rc.cutoff_sharpness,
        ),
        encoder=EncoderConfig(d_feat=rc.d_feat, groupnorm=rc.groupnorm),
        n_global_freq=rc.n_global_freq,
        decoder_hidden=rc.decoder_hidden,
        decoder_layers=rc.decoder_layers,
        max_freq_cycles_per_image=rc.max_freq_cycles_per_image,
    )


def build_model_from_run_config(rc: RunConfig):
    """The native model a RunConfig describes."""
    model = build_model(
        model_config_from_run_config(rc),
        adapt_bandwidth=rc.adapt_bandwidth,
        adapt_order=rc.adapt_order,
        bandwidth_mode=rc.bandwidth_mode,
    )
    if rc.s_e_init is not None or rc.p_soft_init is not None:
        if rc.arm != "local_spectral":
            raise UserInputError("s_e_init / p_soft_init apply to the local_spectral arm only")
        try:
            model.decoder.set_initial_spectrum(rc.s_e_init, rc.p_soft_init)
        except ValueError as e:
            raise UserInputError(str(e)) from None
    return model
