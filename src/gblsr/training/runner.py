"""One entry point for training: :func:`run` takes a config (or a run directory to resume) and
trains it, whatever its kind.

    from gblsr.training import run
    run("configs/quickstart.yaml", overrides=["train.epochs=2"], run_dir="runs/try")
    run(resume="runs/try")                     # continue where the run stopped

Two kinds of config:

* an arbitrary-scale SR recipe (``kind: sr``; :mod:`gblsr.training.sr`);
* a native experiment in the reference's RunConfig schema (``experiment_id``, ``run_root``,
  ``base``, ``arms``, ``seeds``): every arm x seed is trained and evaluated in
  ``<run_root>/<slug>__seed<s>`` (:mod:`gblsr.training.native`), with a ``summary.json`` over
  the runs.

A run directory says what it holds: ``train_config.yaml`` (an SR run), ``train_config.json``
(one native run) or ``experiment.yaml`` (a native experiment's run_root).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from ..errors import UserInputError
from ..fileio import write_json_atomic, write_text_atomic
from ..models.run_config import RunConfig, expand_run_configs, load_config
from .distributed import init_distributed, shutdown_distributed
from .native import train_one
from .sr import apply_overrides, is_sr_config, sr_config_from_dict, train_sr

__all__ = ["run"]


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


def run(
    config: str | os.PathLike | dict[str, Any] | None = None,
    overrides: Sequence[str] = (),
    *,
    resume: str | os.PathLike | None = None,
    run_dir: str | os.PathLike | None = None,
    device: str | None = None,
    overwrite: bool = False,
    only_arm: str | None = None,
    only_seed: int | None = None,
) -> list[str]:
    """Train ``config`` (a YAML path or a dict), or continue the run in ``resume``.

    overrides: ``KEY=VALUE`` strings (dotted keys, YAML values), applied to the config (or to
        the saved config of a resumed run).
    run_dir:   SR recipe: the run directory; native: the experiment's run_root.
    device:    auto, cpu, cuda, cuda:N (default: the config's).
    overwrite: start afresh in a directory that holds an earlier run.
    only_arm, only_seed: native experiments: train only the matching runs.

    Returns the final checkpoint path of every run trained. Raises
    :class:`~gblsr.errors.UserInputError` for a bad config or directory and
    :class:`~gblsr.training.engine.TrainingDivergedError` when the loss diverges.
    """
    if (config is None) == (resume is None):
        raise UserInputError("give either a config or a run directory to resume, not both")
    select = {"only_arm": only_arm, "only_seed": only_seed}
    if resume is not None:
        return _resume(Path(resume), list(overrides), device, select)
    cfg = load_config(config) if not isinstance(config, dict) else dict(config)
    cfg = apply_overrides(cfg, list(overrides))
    if is_sr_config(cfg):
        return _run_sr(cfg, run_dir, device, resume=False, overwrite=overwrite)
    if "arms" in cfg or "experiment_id" in cfg:
        if run_dir is not None:
            cfg = {**cfg, "run_root": str(run_dir)}
        return _run_native(cfg, device, False, overwrite, **select)
    raise UserInputError(
        f"{config if not isinstance(config, dict) else 'the config'} is neither an SR recipe "
        "(kind: sr) nor a native RunConfig (arms: ...)"
    )


def _run_sr(cfg: dict, run_dir, device, resume: bool, overwrite: bool) -> list[str]:
    if run_dir is not None:
        cfg = {**cfg, "run_dir": str(run_dir)}
    if device:
        cfg = {**cfg, "device": device}
    out = train_sr(sr_config_from_dict(cfg), resume=resume, overwrite=overwrite)
    return [str(out["final_checkpoint"])]


def _slug(rc: RunConfig) -> str:
    return Path(rc.run_dir).name.rsplit("__seed", 1)[0]


def _run_native(
    cfg: dict,
    device: str | None,
    resume: bool,
    overwrite: bool,
    only_arm: str | None = None,
    only_seed: int | None = None,
) -> list[str]:
    runs = expand_run_configs(cfg)
    if not runs:
        raise UserInputError("the config lists no arms")
    if only_arm:
        runs = [r for r in runs if only_arm in (r.arm, _slug(r))]
    if only_seed is not None:
        runs = [r for r in runs if r.seed == only_seed]
    if not runs:
        raise UserInputError("no (arm, seed) run matches only_arm / only_seed")
    root = Path(cfg["run_root"])
    new_root = not root.exists()
    root.mkdir(parents=True, exist_ok=True)
    if _rank() == 0 and (not (root / "experiment.yaml").is_file() or not resume):
        write_text_atomic(root / "experiment.yaml", yaml.safe_dump(cfg, sort_keys=False))
    # Join the process group once for all runs (each run reuses it).
    ctx = init_distributed(device or runs[0].device)
    try:
        return _train_native_runs(runs, root, device, resume, overwrite)
    except BaseException:
        # A root this start made, left holding only its experiment.yaml (each run undid its
        # own failed start): remove it too, so the corrected command starts cleanly.
        if new_root and _rank() == 0 and [p.name for p in root.iterdir()] == ["experiment.yaml"]:
            (root / "experiment.yaml").unlink()
            root.rmdir()
        raise
    finally:
        shutdown_distributed(ctx)


def _train_native_runs(runs, root: Path, device, resume: bool, overwrite: bool) -> list[str]:
    summary, finals = [], []
    for rc in runs:
        print(
            f"=== {rc.experiment_id} / {_slug(rc)} / seed={rc.seed} ===",
            file=sys.stderr,
            flush=True,
        )
        out = train_one(rc, resume=resume, device=device, slug=_slug(rc), overwrite=overwrite)
        finals.append(str(out.get("checkpoint") or out.get("final_checkpoint")))
        summary.append(
            {
                "arm": rc.arm,
                "slug": _slug(rc),
                "seed": rc.seed,
                "run_dir": rc.run_dir,
                "aggregate": out.get("aggregate"),
                "checkpoint": finals[-1],
            }
        )
    if len(runs) > 1 and summary[0].get("aggregate") is not None:
        write_json_atomic(root / "summary.json", summary)
    if _rank() == 0:
        print(f"all {len(runs)} run(s) complete", file=sys.stderr, flush=True)
    return finals


def _resume(d: Path, overrides: list[str], device, select: dict) -> list[str]:
    if not d.is_dir():
        raise UserInputError(f"run directory not found: {d}")
    if (d / "train_config.yaml").is_file():  # an SR run
        cfg = apply_overrides(load_config(d / "train_config.yaml"), overrides)
        cfg["run_dir"] = str(d)
        return _run_sr(cfg, None, device, resume=True, overwrite=False)
    if (d / "train_config.json").is_file():  # one native run
        saved = json.loads((d / "train_config.json").read_text())
        rc_dict = apply_overrides(saved["run_config"], overrides)
        rc_dict["run_dir"] = str(d)
        rc = RunConfig.from_dict(rc_dict, where=str(d / "train_config.json"))
        out = train_one(rc, resume=True, device=device, slug=saved.get("slug"))
        return [str(out.get("checkpoint") or out.get("final_checkpoint"))]
    if (d / "experiment.yaml").is_file():  # a native experiment's run_root
        cfg = apply_overrides(load_config(d / "experiment.yaml"), overrides)
        cfg["run_root"] = str(d)
        return _run_native(cfg, device, True, False, **select)
    raise UserInputError(
        f"{d} is not a gblsr-train run directory (no train_config.yaml, train_config.json or "
        "experiment.yaml inside)"
    )
