"""Run a study: train, score and time every method, resumably, then write the report.

Resumable at every level:

* a method whose ``<output>/methods/<name>.json`` exists with the current config hash is
  skipped;
* its training continues from the newest checkpoint in ``<runs>/<name>-<train hash>/`` (a
  finished run is only reloaded);
* timing runs once all methods are scored (all in one sitting, so the numbers are comparable)
  and is redone only when a method's result or the timing settings change;
* the report is rebuilt from the files that exist at the end of every sitting, even one that
  was stopped (``stop_after``) or interrupted.
"""

from __future__ import annotations

import csv
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .config import MethodSpec, StudyConfig, stable_hash
from .records import is_available, method_hash, read_json, write_json
from .trainer import run_trainer, trainer_config

__all__ = ["run_study", "StudySummary", "resolve_device"]


@dataclass
class StudySummary:
    """What one sitting did: per method "trained", "skipped", "unavailable" or "pending"."""

    output: Path
    status: dict[str, str] = field(default_factory=dict)
    stopped: bool = False
    timed: bool = False
    report: Path | None = None


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def resolve_device(spec: str) -> torch.device:
    from ..runtime import resolve_device as _resolve

    return _resolve(spec)


def _save_png(path: Path, img: torch.Tensor) -> None:
    from ..data.image_io import write_image

    path.parent.mkdir(parents=True, exist_ok=True)
    write_image(path, img)


def _csv_rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _f(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if f == f and abs(f) != float("inf") else None


def _thin(points: list[dict], n: int = 200) -> list[dict]:
    if len(points) <= n:
        return points
    step = len(points) / n
    return [points[int(i * step)] for i in range(n)] + [points[-1]]


def _loss_curve(run_dir: Path) -> list[dict[str, float | None]]:
    pts = [
        {"step": int(float(r["step"])), "loss": _f(r.get("loss")), "elapsed_s": _f(r["elapsed_s"])}
        for r in _csv_rows(run_dir / "train_log.csv")
        if r.get("step")
    ]
    return _thin(pts)


def _wall_at(step: int, loss_curve: list[dict]) -> float | None:
    """Training seconds at ``step``, interpolated from the loss log."""
    pts = [(p["step"], p["elapsed_s"]) for p in loss_curve if p["elapsed_s"] is not None]
    if not pts:
        return None
    prev = (0, 0.0)
    for s, e in pts:
        if s >= step:
            if s == prev[0]:
                return e
            return prev[1] + (e - prev[1]) * (step - prev[0]) / (s - prev[0])
        prev = (s, e)
    return pts[-1][1]


def _n_params(model: torch.nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad))


def _run_method(cfg: StudyConfig, m: MethodSpec, out: Path, device, progress: bool) -> dict:
    from ..checkpoint import load_model
    from .report import versions

    tc = trainer_config(cfg, m)
    run_dir = Path(tc["run_dir"])
    t0 = time.time()
    summary = run_trainer(tc, resume=True)
    t_train = time.time() - t0
    ckpt = summary.get("final_checkpoint") or summary.get("checkpoint")
    model = load_model(ckpt, device=device).eval()
    loss_curve = _loss_curve(run_dir)
    res: dict[str, Any] = {
        "method": m.name,
        "model": m.model,
        "note": m.note,
        "config_hash": method_hash(cfg, m),
        "trainer_config": tc,
        "n_params": _n_params(model),
        "train_seconds": summary.get("train_seconds"),
        "train_steps": summary.get("step") or tc.get("total_steps") or tc["train"]["max_steps"],
        "sitting_train_wall_s": round(t_train, 2),
        "resumed_from_step": summary.get("resumed_from_step"),
        "checkpoint": str(ckpt),
        "loss_curve": loss_curve,
        # A study can span sittings and commits: each method records the code it ran on.
        "versions": versions(),
    }
    t1 = time.time()
    if cfg.kind == "sr":
        from .scoring import score_sr, visual_crops_sr

        res["rows"] = score_sr(model, cfg, progress, m.name)
        crops = visual_crops_sr(model, cfg)
        for key, c in crops.items():
            _save_png(out / "crops" / f"{m.name}_{key}.png", c["pred"])
            _save_png(out / "crops" / f"gt_{key}.png", c["gt"])
            _save_png(out / "crops" / f"bicubic_{key}.png", c["bicubic"])
    else:
        from ..data.regions import load_thresholds
        from .scoring import score_native, visual_crops_native

        th = load_thresholds(run_dir / "region_thresholds.json")
        res["rows"] = score_native(model, cfg, th, progress, m.name)
        res["adaptivity"] = summary.get("adaptivity_final")
        # The reference's train_curve ends with the final evaluation, appended even when a
        # periodic one already stands at that step: one point per step, the later one kept.
        curve = {int(p["step"]): p for p in summary.get("train_curve") or []}
        res["val_curve"] = [
            {"step": step, "psnr": p.get("psnr"), "elapsed_s": _wall_at(step, loss_curve)}
            for step, p in curve.items()
        ]
        crops = visual_crops_native(model, cfg)["recon"]
        _save_png(out / "crops" / f"{m.name}_recon.png", crops["pred"])
        _save_png(out / "crops" / "gt_recon.png", crops["gt"])
        err = (crops["pred"] - crops["gt"]).abs().mean(0, keepdim=True)
        _save_png(out / "crops" / f"{m.name}_error.png", (err * 4).clamp(0, 1).expand(3, -1, -1))
        fig = run_dir / "figures" / "bandwidth_order.png"
        if fig.is_file():
            (out / "figures").mkdir(parents=True, exist_ok=True)
            shutil.copyfile(fig, out / "figures" / f"{m.name}_bandwidth_order.png")
    res["score_seconds"] = round(time.time() - t1, 2)
    write_json(out / "methods" / f"{m.name}.json", res)
    return res


def _bicubic(cfg: StudyConfig, out: Path, progress: bool) -> dict | None:
    if cfg.kind != "sr":
        return None
    from ..evaluation import get_baseline
    from .scoring import score_sr

    path = out / "methods" / "bicubic.json"
    h = stable_hash({"eval": cfg.eval})
    old = read_json(path)
    if old and old.get("config_hash") == h:
        return old
    res = {"method": "bicubic", "config_hash": h, "n_params": 0}
    res["rows"] = score_sr(get_baseline("bicubic"), cfg, progress, "bicubic")
    write_json(path, res)
    return res


def _status_line(i: int, n: int, m: MethodSpec, res: dict, bic: dict | None, kind: str) -> str:
    rows = res.get("rows") or []
    head = f"[{i}/{n}] {m.name}: {res['n_params']:,} params, "
    head += f"{res.get('train_steps')} steps in {res.get('train_seconds') or 0:.1f} s"
    if not rows:
        return head
    r = rows[0]
    if kind == "sr" and r.get("psnr") is not None:
        ref = ""
        for b in (bic or {}).get("rows", []):
            if b["dataset"] == r["dataset"] and b["scale"] == r["scale"] and b.get("psnr"):
                ref = f" (bicubic {b['psnr']:.2f})"
        return head + f"; {r['dataset']} x{r['scale']} Y-PSNR {r['psnr']:.2f} dB{ref}"
    if r.get("psnr") is not None:
        gap = r.get("seam_gap_db")
        seam = f", seam gap {gap:.2f} dB" if gap is not None else ""
        return head + f"; {r['dataset']} PSNR {r['psnr']:.2f} dB{seam}"
    return head


def _time_all(cfg: StudyConfig, out: Path, results: dict[str, dict], device, progress: bool):
    from tqdm.auto import tqdm

    from ..checkpoint import load_model
    from .timing import time_native, time_sr

    path = out / "timing.json"
    hashes = {k: v["config_hash"] for k, v in results.items()}
    h = stable_hash({"timing": cfg.timing, "methods": hashes, "device": str(device)})
    old = read_json(path)
    if old and old.get("config_hash") == h:
        return old
    t0 = time.time()
    timed: dict[str, Any] = {}
    for name in tqdm(list(results), desc="timing", leave=False, disable=not progress):
        model = load_model(results[name]["checkpoint"], device=device).eval()
        timed[name] = (time_sr if cfg.kind == "sr" else time_native)(model, cfg.timing)
        del model
    from .report import machine_info

    doc = {
        "config_hash": h,
        "settings": cfg.timing,
        "device": str(device),
        "machine": machine_info(device),
        "seconds": round(time.time() - t0, 2),
        "methods": timed,
    }
    write_json(path, doc)
    return doc


def run_study(
    cfg: StudyConfig,
    *,
    stop_after: int | None = None,
    only: list[str] | None = None,
    report_only: bool = False,
    progress: bool = True,
) -> StudySummary:
    """Run (or continue) the study ``cfg``; see the module docstring.

    stop_after: stop after this many methods were trained and scored in this sitting (the
        report is still written; rerun to continue). only: restrict this sitting to these
        method names. report_only: rebuild the report from the files that exist.
    """
    from .report import write_report

    out = Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    if only:
        for name in only:
            cfg.method(name)  # one-line error for a typo
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    if not report_only:  # fail on a missing set or visual image now, not after training
        from .scoring import _visual_image

        _visual_image(cfg)
    summary = StudySummary(out)
    sitting_t0 = time.time()
    results: dict[str, dict] = {}
    done_now = 0
    n = len(cfg.methods)
    try:
        bic = None if report_only else _bicubic(cfg, out, progress)
        for i, m in enumerate(cfg.methods, 1):
            why = is_available(cfg, m)
            if why:
                summary.status[m.name] = "unavailable"
                _say(f"[{i}/{n}] {m.name}: skipped, {why}")
                continue
            old = read_json(out / "methods" / f"{m.name}.json")
            if old and old.get("config_hash") == method_hash(cfg, m):
                results[m.name] = old
                summary.status[m.name] = "skipped"
                _say(f"[{i}/{n}] {m.name}: already done (result matches the config), skipped")
                continue
            if report_only or (only and m.name not in only) or summary.stopped:
                summary.status[m.name] = "pending"
                continue
            _say(f"[{i}/{n}] {m.name}: training ({m.model}) ...")
            res = _run_method(cfg, m, out, device, progress)
            results[m.name] = res
            summary.status[m.name] = "trained"
            _say(_status_line(i, n, m, res, bic, cfg.kind))
            done_now += 1
            if stop_after is not None and done_now >= stop_after:
                summary.stopped = True
        pending = [k for k, v in summary.status.items() if v == "pending"]
        if results and not pending and not report_only:
            _time_all(cfg, out, results, device, progress)
            summary.timed = True
    finally:
        summary.report = write_report(cfg, out, time.time() - sitting_t0)
    if summary.stopped:
        _say(f"stopped after {done_now} method(s) as asked; rerun the same command to continue")
    return summary
