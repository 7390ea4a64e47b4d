"""Studies: train, score and time several methods under one protocol, resumably, and report.

    from gblsr.study import load_study_config, run_study
    summary = run_study(load_study_config("configs/study/smoke.yaml"))
    summary.report                      # <output>/report.md (results.json, figures/ beside it)

The command line is ``gblsr-study`` (:mod:`gblsr.cli.study`); see ``docs/study.md``.
"""

from .config import MethodSpec, StudyConfig, load_study_config, stable_hash, study_config_from_dict
from .records import method_hash
from .report import write_report
from .runner import StudySummary, run_study
from .scoring import masked_psnr, seam_masks
from .summary import lead_summary
from .trainer import run_trainer, trainer_config

__all__ = [
    "MethodSpec",
    "StudyConfig",
    "StudySummary",
    "load_study_config",
    "study_config_from_dict",
    "stable_hash",
    "run_study",
    "method_hash",
    "write_report",
    "lead_summary",
    "run_trainer",
    "trainer_config",
    "seam_masks",
    "masked_psnr",
]
