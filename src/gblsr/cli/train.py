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

The work is :func:`gblsr.training.run`; this module parses arguments. Messages and progress go
to stderr; stdout receives only the path of each final checkpoint,
so the last line on stdout is the path of the final checkpoint. Exit codes: 0 done, 2 a
problem with the input, 3 the loss diverged (the last good checkpoint is kept), 130 stopped by
the user (resume with --resume).
"""

from __future__ import annotations

import argparse
import os
import sys

EXIT_DIVERGED = 3


def build_parser() -> argparse.ArgumentParser:
    from ._types import ArgumentParser  # imports the package: after the OpenMP re-exec

    p = ArgumentParser(
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


def _main(argv) -> int:
    from ..training.runner import run

    args = build_parser().parse_args(argv)
    finals = run(
        args.config,
        args.overrides,
        resume=args.resume,
        run_dir=args.run_dir,
        device=args.device,
        overwrite=args.overwrite,
        only_arm=args.only_arm,
        only_seed=args.only_seed,
    )
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, rank 0 speaks for the run
        for path in finals:
            print(path, flush=True)
    return 0


def _passive_openmp() -> None:
    """Re-run this command with ``OMP_WAIT_POLICY=PASSIVE`` unless the policy is set already.

    OpenMP threads busy-wait by default. On a CPU whose cores are shared with other work, the
    waiting threads steal the cores the working ones need, and training slows down several
    times (measured: 60 quickstart steps in 132 s instead of 28 s on 2 busy cores). The policy
    is read once, when torch loads OpenMP, which happens before this module runs, hence the
    re-exec (same process id). Set OMP_WAIT_POLICY yourself (e.g. ACTIVE) to skip it; torchrun
    workers are left alone.
    """
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
    from ._common import run_main

    if argv is None:  # the command line, not a call from Python
        _passive_openmp()

    def body() -> int:
        try:
            return _main(argv)
        except TrainingDivergedError as e:
            print(f"gblsr-train: {e}", file=sys.stderr)
            return EXIT_DIVERGED

    return run_main(
        "gblsr-train",
        body,
        interrupted_hint="; continue with gblsr-train --resume RUN_DIR (from the newest "
        "checkpoint)",
    )


if __name__ == "__main__":
    sys.exit(main())
