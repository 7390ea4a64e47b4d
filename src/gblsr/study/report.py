"""The study report, rebuilt from the result files that exist: ``results.json`` (every number,
the protocol, data, budget, versions, machine, wall time), ``report.md`` and ``figures/``.
All files are written atomically."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

from ..data.regions import REGIONS
from ..fileio import write_text_atomic
from .records import is_available, method_hash, write_json
from .summary import _bicubic_check, _fmt, _set_names, _tset, cell, lead_summary

__all__ = ["write_report", "machine_info", "versions", "load_results"]


def machine_info(device: Any = None) -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device) if device is not None else None,
    }
    if torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name(0)
    return info


def versions() -> dict[str, Any]:
    import numpy

    from .._version import __version__
    from ..runtime import git_commit

    return {
        "gblsr": __version__,
        "git_commit": git_commit(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": numpy.__version__,
    }


def load_results(cfg, out: Path) -> tuple[dict[str, dict], dict | None, dict | None]:
    """(method results in config order, bicubic, timing) from the files under ``out``."""
    results = {}
    for m in cfg.methods:
        p = out / "methods" / f"{m.name}.json"
        if p.is_file():
            res = json.loads(p.read_text())
            res["stale"] = res.get("config_hash") != method_hash(cfg, m)
            results[m.name] = res
    bic = out / "methods" / "bicubic.json"
    tim = out / "timing.json"
    return (
        results,
        json.loads(bic.read_text()) if bic.is_file() else None,
        json.loads(tim.read_text()) if tim.is_file() else None,
    )


def _commit_lines(report_commit: str | None, results: dict[str, dict]) -> list[str]:
    """A line naming the commits methods were trained and scored at, when any differs from the
    report's (a study spans sittings; a finished method is not rerun when code moves on)."""
    by: dict[str, list[str]] = {}
    for n, res in results.items():
        c = (res.get("versions") or {}).get("git_commit")
        by.setdefault(c[:12] if c else "not recorded", []).append(n)
    if not by or set(by) == {(report_commit or "")[:12]}:
        return []
    parts = [f"`{c}`: {', '.join(ns)}" for c, ns in by.items() if c != "not recorded"]
    if "not recorded" in by:
        parts.append(f"not recorded (older records): {', '.join(by['not recorded'])}")
    return ["Methods trained and scored at commit " + "; ".join(parts) + ".", ""]


def _methods_table(cfg, results, timing) -> list[str]:
    tm = (timing or {}).get("methods") or {}
    if cfg.kind == "sr":
        key = f"x{float(_tset(cfg, timing)['scales'][0]):g}"
        head = f"| method | model | params | steps | train s | encode ms | decode ms ({key}) "
        head += f"| total ms ({key}) | decode MB | process peak MB | note |"
    else:
        key = "image"
        head = "| method | arm | params | steps | train s | encode ms | decode ms | total ms "
        head += "| decode MB | process peak MB | note |"
    lines = [head, "|" + " --- |" * (head.count("|") - 1)]
    for n, res in results.items():
        t = (tm.get(n) or {}).get(key, {})
        stale = " (stale: config changed)" if res.get("stale") else ""
        lines.append(
            f"| {n} | {res.get('model')} | {res.get('n_params', 0):,} | {res.get('train_steps')} "
            f"| {_fmt(res.get('train_seconds'), 0)} | {_fmt(t.get('encode_ms'), 1)} "
            f"| {_fmt(t.get('decode_ms'), 1)} | {_fmt(t.get('total_ms'), 1)} "
            f"| {_fmt(t.get('decode_tensor_peak_mb'), 1)} | {_fmt(t.get('peak_memory_mb'), 0)} "
            f"| {res.get('note') or ''}{stale} |"
        )
    return lines


def _sr_tables(cfg, results, bicubic) -> list[str]:
    lines: list[str] = []
    entries = list(results.items()) + ([("bicubic", bicubic)] if bicubic else [])
    sets = _set_names(res for _, res in entries)
    cols = " | ".join(
        f"x{s:g}" + ("" if s in cfg.eval["scales_in"] else " (OOD)") for s in cfg.scales
    )
    for ds in sets:
        for key, title, nd in (("psnr", "Y-PSNR (dB)", 2), ("ssim", "SSIM (Y)", 4)):
            lines += [f"### {ds}: {title}", "", f"| method | {cols} |"]
            lines.append("| --- |" + " --- |" * len(cfg.scales))
            for n, res in entries:
                vals = [_fmt(cell(res, ds, s, key), nd) for s in cfg.scales]
                lines.append(f"| {n} | " + " | ".join(vals) + " |")
            lines.append("")
    return lines


def _native_tables(cfg, results) -> list[str]:
    lines: list[str] = []
    sets = _set_names(results.values())
    for ds in sets:
        lines += [
            f"### {ds} (whole images)",
            "",
            "| arm | PSNR | SSIM | LPIPS | LSE | PSNR seam px | PSNR interior px | seam gap dB |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for n, res in results.items():
            r = next((x for x in res.get("rows", []) if x["dataset"] == ds), {})
            lines.append(
                f"| {n} | {_fmt(r.get('psnr'))} | {_fmt(r.get('ssim'), 4)} "
                f"| {_fmt(r.get('lpips'), 4)} "
                f"| {_fmt(r.get('local_spectrum_error'), 3)} | {_fmt(r.get('psnr_seam'))} "
                f"| {_fmt(r.get('psnr_interior'))} | {_fmt(r.get('seam_gap_db'))} |"
            )
        for key, title, nd in (
            ("psnr_region", "PSNR per region", 2),
            ("ssim_region", "SSIM per region", 4),
            ("local_spectrum_error_region", "local spectrum error per region", 3),
        ):
            lines += ["", f"{ds}, {title}:", "", "| arm | " + " | ".join(REGIONS) + " |"]
            lines.append("| --- |" + " --- |" * len(REGIONS))
            for n, res in results.items():
                r = next((x for x in res.get("rows", []) if x["dataset"] == ds), {})
                reg = r.get(key) or {}
                lines.append(f"| {n} | " + " | ".join(_fmt(reg.get(g), nd) for g in REGIONS) + " |")
        lines.append("")
    return lines


def _protocol_lines(cfg) -> list[str]:
    d, t, o, ev = cfg.data, cfg.train, cfg.optim, cfg.eval
    lines = [f"- Training data: {', '.join(d['train_dirs'])}"]
    if cfg.kind == "sr":
        enc = cfg.encoder or {}
        lines += [
            f"- Shared encoder: `{enc.get('name')}` {json.dumps(enc.get('args') or {})}",
            f"- Sampling: {d['inp_size']}x{d['inp_size']} LR crops, s ~ U({d['scale_min']:g}, "
            f"{d['scale_max']:g}), {d['sample_q']} query pixels per crop, {d['lr_kernel']} "
            f"bicubic LR, augment={d['augment']}",
        ]
    else:
        lines.append(
            f"- Crops {d['image_size']}x{d['image_size']}; native settings {json.dumps(cfg.native)}"
        )
    lines += [
        f"- Budget per method: {t['steps']} steps x batch {t['batch_size']}, loss {t['loss']}, "
        f"{o['name']} lr {o['lr']:g}, schedule {cfg.schedule['name']}, grad clip "
        f"{t['grad_clip']:g}, seed {cfg.seed}",
    ]
    ins, outs = ev["scales_in"], ev["scales_out"]
    sets = [
        f"{Path(p).name} ({'all images' if c is None else f'first {c} images'})"
        for p, c in zip(ev["sets"], ev["caps"])
    ]
    lines.append(f"- Scored on: {', '.join(sets)}")
    if cfg.kind == "sr":
        lines.append(
            f"- Scoring: {ev['protocol']} protocol (Y-PSNR with ceil(s) border shave; SSIM on Y); "
            "LR from the set's LR files where they exist, else MATLAB-compatible bicubic "
            f"(lr_source {ev['lr_source']}); in-distribution x{', x'.join(map(str, ins))}; "
            f"out-of-distribution x{', x'.join(map(str, outs))}"
        )
    else:
        lines.append(
            "- Scoring: whole images through each arm's padding (RGB PSNR, SSIM on Y, local "
            "spectrum error on patches), per region (labels from the ground truth); seam: PSNR of "
            "pixels next to an internal patch border vs the other pixels (2-pixel frame excluded)"
        )
    tm = cfg.timing
    lines.append(
        f"- Timing: median of {tm['runs']} passes after {tm['warmup']} warm-up, eager, no AMP, "
        "all methods in one sitting on one machine"
    )
    for m in cfg.methods:
        if m.train or m.note:
            lines.append(f"- {m.name}: {m.note} {json.dumps(m.train) if m.train else ''}".rstrip())
    return lines


def write_report(cfg, out: Path, sitting_seconds: float = 0.0) -> Path:
    """Write results.json, report.md and the figures from what exists; returns report.md."""
    from .figures import draw_figures

    out.mkdir(parents=True, exist_ok=True)
    results, bicubic, timing = load_results(cfg, out)
    unavailable = {m.name: is_available(cfg, m) for m in cfg.methods}
    unavailable = {k: v for k, v in unavailable.items() if v}
    pending = [m.name for m in cfg.methods if m.name not in results and m.name not in unavailable]
    try:
        figures = draw_figures(cfg, out, results, bicubic, timing)
    except Exception as e:  # a figure must never cost the numbers
        print(f"gblsr-study: figures not drawn: {e}", file=sys.stderr)
        figures = []
    summary = lead_summary(cfg, results, timing)
    train_s = sum(r.get("train_seconds") or 0 for r in results.values())
    score_s = sum(r.get("score_seconds") or 0 for r in results.values())
    doc = {
        "study": cfg.name,
        "kind": cfg.kind,
        "description": cfg.description,
        "budget": cfg.budget,
        "command": f"gblsr-study --config {cfg.source}" if cfg.source else None,
        "config": cfg.to_dict(),
        "protocol": _protocol_lines(cfg),
        "versions": versions(),
        "machine": machine_info(),
        "written_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "wall_time_s": {
            "train": round(train_s, 1),
            "score": round(score_s, 1),
            "timing": (timing or {}).get("seconds"),
            "this_sitting": round(sitting_seconds, 1),
        },
        "methods": results,
        "bicubic": bicubic,
        "timing": timing,
        "pending": pending,
        "unavailable": unavailable,
        "summary": summary,
        "figures": figures,
    }
    write_json(out / "results.json", doc)
    lines = [f"# Study `{cfg.name}` ({cfg.kind})", ""]
    if cfg.description:
        lines += [cfg.description, ""]
    lines += [
        f"**Budget:** {cfg.budget or 'see the protocol'}. Equal for every method; these are not "
        "paper-scale numbers.",
        "",
        f"Made with `{doc['command']}` (gblsr {doc['versions']['gblsr']}, commit "
        f"`{doc['versions']['git_commit'][:12]}`, torch {doc['versions']['torch']}); machine: "
        f"{doc['machine']['processor']}, {doc['machine']['cpu_count']} CPUs. Wall time: "
        f"training {train_s / 60:.1f} min, scoring {score_s / 60:.1f} min.",
        "",
    ]
    lines += _commit_lines(doc["versions"]["git_commit"], results)
    if pending or unavailable:
        lines.append(
            "**Incomplete:** "
            + "; ".join(
                [f"{n}: not run yet" for n in pending]
                + [f"{n}: skipped, {why}" for n, why in unavailable.items()]
            )
        )
        lines.append("")
    lines += ["## Summary", ""]
    for sentence in summary:
        lines += [sentence, ""]
    if cfg.kind == "sr":
        lines += _bicubic_check(cfg, results, bicubic)
    lines += ["", "## Protocol", "", *_protocol_lines(cfg), "", "## Methods", ""]
    lines += _methods_table(cfg, results, timing)
    lines += [
        "",
        "train s: the wall time of each method's own training as it ran (summed over "
        "sittings); a method trained while other jobs shared the machine shows more, so compare "
        "speed by the timing columns, which are measured in one sitting.",
    ]
    if timing:
        kinds = {
            str(v.get("peak_memory_kind")) for m in timing["methods"].values() for v in m.values()
        }
        lines += [
            "",
            f"Timing device: {timing.get('device')}. decode MB: peak bytes of the tensors the "
            "decode allocates and holds at once (output included, weights excluded), counted "
            f"at the dispatcher; process peak MB: {', '.join(sorted(kinds))} during the decode "
            "passes (on a CPU the process's high-water mark, mostly its baseline).",
        ]
        if timing.get("settings") != cfg.timing or set(timing["methods"]) != set(results):
            lines += [
                "",
                "**Timing is from an earlier sitting with other settings or methods;** it is "
                "redone when every method is scored.",
            ]
    else:
        lines += ["", "Timing: not measured yet (runs once every method is scored)."]
    lines += ["", "## Scores", ""]
    lines += _sr_tables(cfg, results, bicubic) if cfg.kind == "sr" else _native_tables(cfg, results)
    if cfg.kind == "native":
        ad = [(n, r.get("adaptivity")) for n, r in results.items() if r.get("adaptivity")]
        if ad:
            lines += [
                "Learned bandwidth s_e and soft order p_soft (mean over validation crops):",
                "",
            ]
            lines += [
                f"- {n}: s_e {a['s_e']['mean']:.3f} (min {a['s_e']['min']:.3f}, max "
                f"{a['s_e']['max']:.3f}); p_soft {a['p_soft']['mean']:.2f}"
                for n, a in ad
            ]
            lines.append("")
    lines += ["## Figures", ""]
    lines += [f"![{f}](figures/{f})" for f in figures]
    extra = sorted(p.name for p in (out / "figures").glob("*_bandwidth_order.png"))
    lines += [f"- [{f}](figures/{f})" for f in extra]
    text = "\n".join(lines) + "\n"
    write_text_atomic(out / "report.md", text)
    return out / "report.md"
