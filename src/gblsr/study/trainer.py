"""From a study method to a trainer config, and the study's one call into the trainers.

:func:`run_trainer` is the only place the study calls training; everything else here builds the
config dict the existing trainers read (an SR recipe, ``kind: sr``, or a native RunConfig).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from ..errors import UserInputError
from .config import MethodSpec, StudyConfig, stable_hash

__all__ = ["trainer_config", "train_hash", "run_trainer", "run_dir_of", "set_dotted"]

# Keys that change where or how visibly a run goes, not what it learns: left out of the hash.
_NOT_HASHED = ("run_dir", "device", "progress", "tensorboard", "num_workers", "log")


def set_dotted(d: dict[str, Any], key: str, value: Any) -> None:
    """``d["a"]["b"] = value`` for ``key == "a.b"`` (sections created as needed)."""
    parts = [p for p in str(key).split(".") if p]
    if not parts:
        raise UserInputError(f"empty override key {key!r}")
    cur = d
    for p in parts[:-1]:
        nxt = cur.setdefault(p, {})
        if not isinstance(nxt, dict):
            raise UserInputError(f"override {key}: {p!r} is not a section")
        cur = nxt
    cur[parts[-1]] = copy.deepcopy(value)


def _sr_config(cfg: StudyConfig, m: MethodSpec) -> dict[str, Any]:
    enc = cfg.encoder or {}
    args = {"encoder": enc.get("name"), "encoder_cfg": copy.deepcopy(enc.get("args") or {})}
    args.update(copy.deepcopy(m.args))
    d, t = cfg.data, cfg.train
    return {
        "kind": "sr",
        "description": f"study {cfg.name}: {m.name}",
        "seed": cfg.seed,
        "device": cfg.device,
        "model": {"name": m.model, "args": args},
        "data": {
            "image_dirs": list(d["train_dirs"]),
            "first_k": d["first_k"],
            "repeat": d["repeat"],
            "cache": d["cache"],
            "inp_size": d["inp_size"],
            "scale_min": d["scale_min"],
            "scale_max": d["scale_max"],
            "sample_q": d["sample_q"],
            "augment": d["augment"],
            "lr_kernel": d["lr_kernel"],
            "num_workers": d["num_workers"],
        },
        # The study scores every method itself afterwards; no validation inside training.
        "val": {"datasets": [], "every_epochs": 0, "at_end": False, "bicubic_reference": False},
        "train": {
            "batch_size": t["batch_size"],
            "epochs": 1_000_000,  # the budget is train.steps (max_steps)
            "max_steps": t["steps"],
            "loss": t["loss"],
            "grad_clip": t["grad_clip"],
        },
        "optim": copy.deepcopy(cfg.optim),
        "schedule": copy.deepcopy(cfg.schedule),
        "checkpoint": {"every_steps": t["checkpoint_every"], "keep_last": 2, "save_best": False},
        "log": {"every_steps": t["log_every"], "progress": t["progress"], "tensorboard": False},
    }


def _native_config(cfg: StudyConfig, m: MethodSpec) -> dict[str, Any]:
    d, t, o = cfg.data, cfg.train, cfg.optim
    base = copy.deepcopy(cfg.native)
    patch = int(base.get("patch_size", 32))
    rc: dict[str, Any] = {
        "experiment_id": cfg.name,
        "arm": m.model,
        "seed": cfg.seed,
        "total_steps": t["steps"],
        "batch_size": t["batch_size"],
        "lr": o["lr"],
        "weight_decay": o["weight_decay"],
        "grad_clip": t["grad_clip"],
        "log_every": t["log_every"],
        "val_every": t["val_every"],
        "num_val_images": t["val_images"],
        "num_val_curve_images": t["val_images"],
        "loss_name": t["loss"],
        "checkpoint_every": t["checkpoint_every"] or t["steps"],
        "device": cfg.device,
        "progress": t["progress"],
        "tensorboard": False,
        "image_size": d["image_size"],
        **base,
        "data": {
            "image_dirs": list(d["train_dirs"]),
            "image_size": d["image_size"],
            "patch_size": patch,
            "val_fraction": d["val_fraction"],
            "num_workers": d["num_workers"],
            "augment": d["augment"],
            "seed": cfg.seed,
        },
    }
    for k, v in m.args.items():
        set_dotted(rc, k, v)
    return rc


def _strip(d: Any) -> Any:
    if isinstance(d, dict):
        return {k: _strip(v) for k, v in d.items() if k not in _NOT_HASHED}
    return d


def train_hash(trainer_cfg: dict[str, Any]) -> str:
    """Hash of what a trainer config makes the model learn (not where it runs)."""
    return stable_hash(_strip(trainer_cfg))


def run_dir_of(cfg: StudyConfig, m: MethodSpec, trainer_cfg: dict[str, Any]) -> Path:
    """``<runs>/<method>-<train hash>``: a changed recipe trains afresh beside the old run."""
    return Path(cfg.runs) / f"{m.name}-{train_hash(trainer_cfg)}"


def trainer_config(cfg: StudyConfig, m: MethodSpec) -> dict[str, Any]:
    """The config the trainer gets for method ``m`` (with ``run_dir`` set)."""
    tc = _sr_config(cfg, m) if cfg.kind == "sr" else _native_config(cfg, m)
    for k, v in m.train.items():  # a method's own loss / sampling rules
        set_dotted(tc, k, v)
    tc["run_dir"] = str(run_dir_of(cfg, m, tc))
    return tc


def run_trainer(trainer_cfg: dict[str, Any], resume: bool = True) -> dict[str, Any]:
    """Train (or continue, or return the finished run of) one trainer config.

    Returns the trainer's summary: ``final_checkpoint`` (or ``checkpoint``), ``train_seconds``
    and, for native runs, the experiment dict (``train_curve``, ``adaptivity_final``, ...).
    """
    if trainer_cfg.get("kind") == "sr":
        from ..training import sr_config_from_dict, train_sr

        return train_sr(sr_config_from_dict(trainer_cfg), resume=resume)
    from ..training import RunConfig, train_one

    rc = RunConfig.from_dict(trainer_cfg, where="study native arm")
    return train_one(rc, resume=resume, slug=Path(rc.run_dir).name)
