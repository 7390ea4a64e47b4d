"""gblsr-train: train from a YAML config, resume a stopped run, scale out with torchrun.

Two kinds of config:

* an arbitrary-scale SR recipe (``kind: sr``; see :mod:`gblsr.training.sr`), e.g.
  ``configs/quickstart.yaml`` or the paper-scale ``configs/asr_rdn_div2k.yaml``;
* a native experiment in the reference's RunConfig schema (``experiment_id``, ``run_root``,
  ``base``, ``arms``, ``seeds``), e.g. ``configs/example.yaml``: every arm x seed is trained
  and evaluated in ``<run_root>/<slug>__seed<s>``.

Examples::

    gblsr-train --config configs/quickstart.yaml
    gblsr-train --config configs/quickstart.yaml --set train.epochs=2 --run-dir runs/try
    gblsr-train --resume runs/quickstart            # continue where the run stopped
    torchrun --nproc_per_node 4 -m gblsr.cli.train --config configs/asr_rdn_div2k.yaml

Messages and progress go to stderr; stdout receives only the path of each final checkpoint,
so the last line on stdout is the path of the final checkpoint. Exit codes: 0 done, 2 a
problem with the input, 3 the loss diverged (the last good checkpoint is kept), 130 stopped by
the user (resume with --resume).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import UserInputError

EXIT_DIVERGED = 3


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gblsr-train",
        description="Train GB-LSR models: the arbitrary-scale SR recipe (kind: sr) or native "
        "experiments (reference RunConfig schema). Prints the final checkpoint path last.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--config", help="training YAML (an SR recipe or a native RunConfig)")
    src.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue the run in RUN_DIR (an SR run directory, a native run directory, or a "
        "native experiment's run_root) from its newest checkpoint, with its saved config",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value (dotted keys, YAML values), e.g. "
        "--set train.epochs=2 or --set base.total_steps=50; repeatable",
    )
    p.add_argument(
        "--run-dir",
        help="SR recipe: run directory (default: the config's run_dir); "
        "native: the experiment's run_root",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="start afresh in a run directory that holds an earlier run (deletes that run's "
        "checkpoints, logs and results; other files are left alone)",
    )
    p.add_argument("--device", help="auto, cpu, cuda, cuda:N (default: the config's, else auto)")
    p.add_argument("--only-arm", help="native: train only runs whose slug or arm name matches")
    p.add_argument("--only-seed", type=int, help="native: train only runs with this seed")
    return p


def _print_path(path: str) -> None:
    import os

    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, rank 0 speaks for the run
        print(str(path), flush=True)


def _slug(rc) -> str:
    return Path(rc.run_dir).name.rsplit("__seed", 1)[0]


def _run_native(cfg: dict, args, resume: bool) -> int:
    import yaml

    from ..fileio import atomic_write
    from ..training.config import expand_run_configs

    if args.run_dir:
        cfg = {**cfg, "run_root": args.run_dir}
    runs = expand_run_configs(cfg)
    if not runs:
        raise UserInputError("the config lists no arms")
    if args.only_arm:
        runs = [r for r in runs if args.only_arm in (r.arm, _slug(r))]
    if args.only_seed is not None:
        runs = [r for r in runs if r.seed == args.only_seed]
    if not runs:
        raise UserInputError("no (arm, seed) run matches --only-arm / --only-seed")
    root = Path(cfg["run_root"])
    root.mkdir(parents=True, exist_ok=True)
    if int(__import__("os").environ.get("RANK", "0")) == 0 and (
        not (root / "experiment.yaml").is_file() or not resume
    ):
        text = yaml.safe_dump(cfg, sort_keys=False)
        atomic_write(root / "experiment.yaml", lambda tmp: Path(tmp).write_text(text))
    from ..training.distributed import init_distributed, shutdown_distributed

    # Join the process group once for all runs (each run reuses it).
    ctx = init_distributed(args.device or runs[0].device)
    try:
        return _train_native_runs(runs, root, args, resume)
    finally:
        shutdown_distributed(ctx)


def _train_native_runs(runs, root: Path, args, resume: bool) -> int:
    from ..training.native import train_one
    from ..training.state import write_json_atomic

    summary, finals = [], []
    for rc in runs:
        print(
            f"=== {rc.experiment_id} / {_slug(rc)} / seed={rc.seed} ===",
            file=sys.stderr,
            flush=True,
        )
        out = train_one(
            rc, resume=resume, device=args.device, slug=_slug(rc), overwrite=args.overwrite
        )
        finals.append(out.get("checkpoint") or out.get("final_checkpoint"))
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
    if int(__import__("os").environ.get("RANK", "0")) == 0:
        print(f"all {len(runs)} run(s) complete", file=sys.stderr, flush=True)
    for f in finals:
        _print_path(f)
    return 0


def _run_sr(cfg_dict: dict, args, resume: bool) -> int:
    from ..training.sr import sr_config_from_dict, train_sr

    if args.run_dir:
        cfg_dict = {**cfg_dict, "run_dir": args.run_dir}
    if args.device:
        cfg_dict = {**cfg_dict, "device": args.device}
    cfg = sr_config_from_dict(cfg_dict)
    out = train_sr(cfg, resume=resume, overwrite=getattr(args, "overwrite", False))
    _print_path(out["final_checkpoint"])
    return 0


def _resume(args) -> int:
    from ..training.config import load_config
    from ..training.sr import apply_overrides

    d = Path(args.resume)
    if not d.is_dir():
        raise UserInputError(f"run directory not found: {d}")
    if (d / "train_config.yaml").is_file():  # an SR run
        cfg = apply_overrides(load_config(d / "train_config.yaml"), args.overrides)
        cfg["run_dir"] = str(d)
        args.run_dir = None
        return _run_sr(cfg, args, resume=True)
    if (d / "train_config.json").is_file():  # one native run
        from ..training.config import RunConfig
        from ..training.native import train_one

        saved = json.loads((d / "train_config.json").read_text())
        rc_dict = apply_overrides(saved["run_config"], args.overrides)
        rc_dict["run_dir"] = str(d)
        rc = RunConfig.from_dict(rc_dict, where=str(d / "train_config.json"))
        out = train_one(rc, resume=True, device=args.device, slug=saved.get("slug"))
        _print_path(out.get("checkpoint") or out.get("final_checkpoint"))
        return 0
    if (d / "experiment.yaml").is_file():  # a native experiment's run_root
        cfg = apply_overrides(load_config(d / "experiment.yaml"), args.overrides)
        cfg["run_root"] = str(d)
        args.run_dir = None
        return _run_native(cfg, args, resume=True)
    raise UserInputError(
        f"{d} is not a gblsr-train run directory (no train_config.yaml, train_config.json or "
        "experiment.yaml inside)"
    )


def _main(argv) -> int:
    from ..training.config import load_config
    from ..training.sr import apply_overrides, is_sr_config

    args = build_parser().parse_args(argv)
    if args.resume:
        return _resume(args)
    cfg = apply_overrides(load_config(args.config), args.overrides)
    if is_sr_config(cfg):
        return _run_sr(cfg, args, resume=False)
    if "arms" in cfg or "experiment_id" in cfg:
        return _run_native(cfg, args, resume=False)
    raise UserInputError(
        f"{args.config} is neither an SR recipe (kind: sr) nor a native RunConfig (arms: ...)"
    )


def _passive_openmp() -> None:
    """Re-run this command with ``OMP_WAIT_POLICY=PASSIVE`` unless the policy is set already.

    OpenMP threads busy-wait by default. On a CPU whose cores are shared with other work, the
    waiting threads steal the cores the working ones need, and training slows down several
    times (measured: 60 quickstart steps in 132 s instead of 28 s on 2 busy cores). The policy
    is read once, when torch loads OpenMP, which happens before this module runs, hence the
    re-exec (same process id). Set OMP_WAIT_POLICY yourself (e.g. ACTIVE) to skip it; torchrun
    workers are left alone.
    """
    import os

    if os.environ.get("OMP_WAIT_POLICY") or "WORLD_SIZE" in os.environ:
        return
    if os.name != "posix" or not sys.executable:  # exec replaces the process only on POSIX
        return
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    try:
        os.execv(sys.executable, [sys.executable, "-m", "gblsr.cli.train", *sys.argv[1:]])
    except OSError:  # cannot re-exec (unusual platforms): train with the default policy
        return


def main(argv: list[str] | None = None) -> int:
    from ..training.engine import TrainingDivergedError

    if argv is None:  # the command line, not a call from Python
        _passive_openmp()
    try:
        return _main(argv)
    except TrainingDivergedError as e:
        print(f"gblsr-train: {e}", file=sys.stderr)
        return EXIT_DIVERGED
    except UserInputError as e:
        print(f"gblsr-train: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "gblsr-train: interrupted; continue with gblsr-train --resume RUN_DIR "
            "(from the newest checkpoint)",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
