"""A whole evaluation as one call, and its reports: what ``gblsr-eval`` runs.

    from gblsr.evaluation import run_evaluation, write_reports
    result = run_evaluation("bicubic", ["benchmark/Set5"], scales=[2, 3, 4])
    write_reports("out/", result)           # results.json, results.md, psnr_vs_scale.png

:func:`run_evaluation` resolves the model (a baseline name, a checkpoint file or a model),
opens the datasets, fits or loads region thresholds and runs :func:`~gblsr.evaluation.evaluate`;
its result is the JSON ``gblsr-eval`` prints.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ..checkpoint import DEFAULT_MODEL, load_model
from ..data.datasets import open_dataset
from ..data.regions import fit_region_thresholds, load_or_fit_thresholds
from ..errors import UserInputError
from ..fileio import atomic_write, write_text_atomic
from ..metrics.quality import lpips_status
from .core import BASELINES, evaluate, get_baseline

__all__ = [
    "DEFAULT_SCALES",
    "run_evaluation",
    "resolve_model",
    "data_roots_from_config",
    "markdown_report",
    "plot_psnr_vs_scale",
    "write_reports",
    "result_json",
]

DEFAULT_SCALES = (2.0, 3.0, 4.0)


def _load_checkpoint(path: str | os.PathLike, device, config=None, arm_index: int = 0):
    p = Path(path)
    if not p.exists():
        raise UserInputError(f"checkpoint not found: {p}")
    if p.is_dir():
        raise UserInputError(f"checkpoint must be a file, got a folder: {p}")
    if config is not None and not Path(config).is_file():
        raise UserInputError(f"config not found: {config}")
    try:
        return load_model(p, device=device, config=config, arm_index=arm_index)
    except UserInputError:
        raise
    except Exception as e:  # a damaged or foreign file: say so in one line
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserInputError(f"cannot load checkpoint {p}: {msg}") from None


def resolve_model(
    model: str | os.PathLike | nn.Module, device=None, config=None, arm_index: int = 0
) -> tuple[nn.Module, str]:
    """(model, display name) from a baseline name, a checkpoint path or a model."""
    if isinstance(model, nn.Module):
        return model, getattr(model, "registry_name", type(model).__name__)
    if str(model) in BASELINES:
        return get_baseline(str(model)), str(model)
    if str(model) == DEFAULT_MODEL:  # the built-in model, unless a file of that name exists
        if not Path(model).exists():
            return load_model(DEFAULT_MODEL, device=device), "default"
    p = Path(model)
    if p.exists() or p.suffix or len(p.parts) > 1:  # a path: say what is wrong with it
        return _load_checkpoint(p, device, config, arm_index), p.name
    raise UserInputError(
        f"unknown model {str(model)!r}: use bicubic, bilinear, nearest or the path of a "
        "checkpoint file"
    )


def data_roots_from_config(path: str | os.PathLike) -> list[str]:
    """The data folders a native RunConfig YAML trains on (dtd_root, div2k_root, image_dirs)."""
    import yaml

    try:
        cfg = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as e:
        raise UserInputError(f"cannot read config {path}: {str(e).splitlines()[0]}") from None
    if not isinstance(cfg, dict):
        raise UserInputError(f"config {path} is not a YAML mapping")
    base = cfg.get("base") if isinstance(cfg.get("base"), dict) else cfg
    data = base.get("data") if isinstance(base.get("data"), dict) else {}
    roots = [data.get("dtd_root"), data.get("div2k_root"), *(data.get("image_dirs") or [])]
    return [str(r) for r in roots if r]


def run_evaluation(
    model: str | os.PathLike | nn.Module,
    datasets: Sequence[str | os.PathLike] | None,
    scales: Sequence[float] | None = None,
    *,
    protocol: str = "benchmark",
    lr_source: str = "auto",
    device: torch.device | str = "cpu",
    lpips: bool = True,
    region_thresholds: str | os.PathLike | None = None,
    region_threshold_samples: int = 1024,
    patch_size: int = 32,
    max_images: int | None = None,
    config: str | os.PathLike | None = None,
    arm_index: int = 0,
    selection: str | None = None,
    gumbel_seed: int | None = 0,
    on_image: Callable[[], Any] | None = None,
    note: Callable[[str], Any] | None = None,
) -> dict[str, Any]:
    """Evaluate ``model`` on ``datasets`` at ``scales`` (default 2, 3, 4).

    model: ``bicubic`` / ``bilinear`` / ``nearest``, a checkpoint file (``config`` /
        ``arm_index`` for reference native files) or a model.
    datasets: dataset folders; None or empty: the data roots of ``config`` (a RunConfig).
    region_thresholds: a JSON file of region thresholds (fitted on the first dataset and written
        there when missing); with ``config`` and a native model, thresholds are refitted on the
        first dataset with the model's patch size, as the reference does.
    selection, gumbel_seed: the kernel selection of models that choose kernels at test time
        (GaussianSR: "gumbel", seeded by ``gumbel_seed`` so runs repeat, or "argmax"); what was
        used is part of the result.
    note: called with one-line remarks for the user (LPIPS unavailable, scale ignored).

    returns ``{"model", "task", "protocol", "lr_source", "device", "rows"}`` (rows: see
    :func:`~gblsr.evaluation.evaluate`).
    """
    note = note or (lambda msg: warnings.warn(msg, stacklevel=2))
    device = torch.device(device)
    datasets = list(datasets or [])
    if not datasets and config:
        datasets = data_roots_from_config(config)
        if not datasets:
            raise UserInputError(f"no --dataset given and {config} names no data roots")
    if not datasets:
        raise UserInputError("give at least one dataset (--dataset DIR)")
    ds_list = [open_dataset(d, max_images=max_images) for d in datasets]
    model, name = resolve_model(model, device, config, arm_index)
    task = getattr(model, "task", "sr")
    used = {}  # a test-time choice the model made, reported with its numbers
    if hasattr(model, "set_selection"):
        used = model.set_selection(selection, gumbel_seed)
    elif selection:
        raise UserInputError(f"--selection applies to GaussianSR models, not {name}")
    if task == "reconstruction" and scales:
        note(f"{name} is a native reconstruction model; evaluating at scale 1, --scale ignored")
    scales = list(scales) if scales else list(DEFAULT_SCALES)
    if lpips and (reason := lpips_status()) is not None:
        note(f"LPIPS not computed (values are null): {reason}")
    thresholds, patch = None, patch_size
    if region_thresholds:
        thresholds = load_or_fit_thresholds(
            region_thresholds, ds_list[0], patch, n_samples=region_threshold_samples
        )
    elif config and task == "reconstruction":
        patch = int(getattr(getattr(model, "cfg", None), "patch_size", patch))
        thresholds = fit_region_thresholds(ds_list[0], patch, n_samples=region_threshold_samples)
    with warnings.catch_warnings():
        # The note above already said why LPIPS is missing; nulls are reported.
        warnings.filterwarnings("ignore", message="LPIPS unavailable", category=RuntimeWarning)
        rows = evaluate(
            model,
            ds_list,
            scales,
            protocol=protocol,
            lr_source=lr_source,
            device=device,
            lpips=lpips,
            region_thresholds=thresholds,
            patch_size=patch,
            on_image=on_image,
        )
    recon = task == "reconstruction"
    return {
        "model": name,
        "task": task,
        "protocol": "reconstruction" if recon else protocol,
        "lr_source": "identity" if recon else lr_source,
        "device": str(device),
        **used,
        "rows": rows,
    }


def _fmt(v: Any, digits: int) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def markdown_report(result: dict[str, Any]) -> str:
    """A Markdown page of a :func:`run_evaluation` result: a dataset x scale PSNR / SSIM table
    and one row per (dataset, scale) with every metric."""
    rows = result["rows"]
    lines = [
        f"# gblsr-eval: {result['model']}",
        "",
        f"Protocol `{result['protocol']}`, LR source `{result['lr_source']}`. PSNR in dB (mean of "
        "per-image values), SSIM on Y; see docs/evaluation.md.",
        "",
    ]
    scales = sorted({r["scale"] for r in rows})
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    by = {(r["dataset"], r["scale"]): r for r in rows}
    lines.append("| dataset | " + " | ".join(f"x{s:g}" for s in scales) + " |")
    lines.append("|---|" + "---|" * len(scales))
    for d in datasets:
        cells = []
        for s in scales:
            r = by.get((d, s))
            cells.append("" if r is None else f"{_fmt(r['psnr'], 2)} / {_fmt(r['ssim'], 4)}")
        lines.append(f"| {d} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "| dataset | scale | protocol | PSNR | SSIM | LPIPS | images |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['dataset']} | {r['scale']:g} | {r['protocol']} | {_fmt(r['psnr'], 4)} | "
            f"{_fmt(r['ssim'], 4)} | {_fmt(r.get('lpips'), 4)} | {r['n_images']} |"
        )
    return "\n".join(lines) + "\n"


def plot_psnr_vs_scale(rows: list[dict], path: str | os.PathLike, title: str) -> bool:
    """PSNR-vs-scale lines, one per dataset, as a PNG; False when there is nothing to plot."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    series: dict[str, list[tuple[float, float]]] = {}
    for r in rows:
        if r["psnr"] is not None:
            series.setdefault(r["dataset"], []).append((float(r["scale"]), r["psnr"]))
    if not series:
        return False
    fig = Figure(figsize=(6, 4), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for name, pts in series.items():
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
    ax.set_xlabel("scale")
    ax.set_ylabel("PSNR (dB)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    return True


def result_json(result: dict[str, Any]) -> str:
    return json.dumps(result, indent=2) + "\n"


def write_reports(folder: str | os.PathLike, result: dict[str, Any]) -> Path:
    """Write results.json, results.md and psnr_vs_scale.png of a result into ``folder``."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise UserInputError(f"the report folder is a file: {folder}") from None
    write_text_atomic(folder / "results.json", result_json(result))
    write_text_atomic(folder / "results.md", markdown_report(result))
    title = f"{result['model']} ({result['protocol']})"
    plot_psnr_vs_scale(result["rows"], folder / "psnr_vs_scale.png", title)
    return folder
