"""gblsr-study: train, score and time every method of a study config, then write its report.

    gblsr-study --config configs/study/smoke.yaml
    gblsr-study --config configs/study/cpu_small.yaml          # rerun to continue after a stop
    gblsr-study --config configs/study/cpu_small.yaml --report-only
    gblsr-study --config configs/study/native_cpu.yaml --only gb_lsr_scalar

Finished methods are skipped, interrupted training continues from its newest checkpoint, and
the report (results.json, report.md, figures/) is rebuilt from what exists at the end of every
sitting. Progress and one status line per method go to stderr; stdout gets the report's path.
Exit codes: 0 done (or stopped as asked), 2 a problem with the input, 3 a training run
diverged, 130 interrupted (rerun the same command to continue).
"""

from __future__ import annotations

import argparse
import sys

from ..errors import UserInputError
from ._types import ArgumentParser


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="gblsr-study",
        description="Train, score and time every method of a study under one protocol; "
        "resumable; writes results.json, report.md and figures into the study's output folder.",
    )
    p.add_argument("--config", required=True, help="study YAML (see docs/study.md)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value (dotted keys, YAML values), e.g. --set train.steps=50",
    )
    p.add_argument("--output", help="report folder (default: the config's output)")
    p.add_argument("--runs", help="folder of the training runs (default: the config's runs)")
    p.add_argument("--device", help="auto, cpu, cuda, cuda:N (default: the config's)")
    p.add_argument(
        "--only",
        action="append",
        metavar="METHOD",
        help="train and score only this method in this sitting (repeatable)",
    )
    p.add_argument(
        "--stop-after",
        type=int,
        metavar="N",
        help="stop after N methods were trained and scored in this sitting (the report is "
        "still written; rerun to continue)",
    )
    p.add_argument(
        "--report-only",
        action="store_true",
        help="rebuild the report from the results that exist; train nothing",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def _main(argv) -> int:
    from ..study import load_study_config, run_study

    args = build_parser().parse_args(argv)
    overrides = list(args.overrides)
    for key in ("output", "runs", "device"):
        if getattr(args, key):
            overrides.append(f"{key}={getattr(args, key)}")
    if args.no_progress:
        overrides.append("train.progress=false")
    if args.stop_after is not None and args.stop_after < 1:
        raise UserInputError("--stop-after must be >= 1")
    cfg = load_study_config(args.config, overrides)
    summary = run_study(
        cfg,
        stop_after=args.stop_after,
        only=args.only,
        report_only=args.report_only,
        progress=not args.no_progress,
    )
    counts: dict[str, int] = {}
    for v in summary.status.values():
        counts[v] = counts.get(v, 0) + 1
    print(
        "gblsr-study: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())),
        file=sys.stderr,
    )
    print(str(summary.report), flush=True)
    return 0


def _passive_openmp() -> None:
    """Re-run with OMP_WAIT_POLICY=PASSIVE unless set (see gblsr.cli.train: busy-waiting
    OpenMP threads slow training several times on shared cores)."""
    import os

    if os.environ.get("OMP_WAIT_POLICY") or os.name != "posix" or not sys.executable:
        return
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    try:
        os.execv(sys.executable, [sys.executable, "-m", "gblsr.cli.study", *sys.argv[1:]])
    except OSError:
        return


def main(argv: list[str] | None = None) -> int:
    from ..training import TrainingDivergedError

    if argv is None:
        _passive_openmp()
    try:
        return _main(argv)
    except TrainingDivergedError as e:
        print(f"gblsr-study: {e}", file=sys.stderr)
        return 3
    except UserInputError as e:
        print(f"gblsr-study: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "gblsr-study: interrupted; rerun the same command to continue (finished methods "
            "are skipped, training resumes from its newest checkpoint)",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
