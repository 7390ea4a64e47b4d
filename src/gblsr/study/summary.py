"""The report's verdict sentences: where the reference method leads in PSNR and where (by how
much) it does not, beside the decode times; whether methods beat bicubic; and, for native
studies, the reference arm against the global Fourier-MLP control."""

from __future__ import annotations

from typing import Any

__all__ = ["lead_summary", "cell"]


def _set_names(entries) -> list[str]:
    """Dataset names in first-seen order over result dicts."""
    out: list[str] = []
    for res in entries:
        for r in (res or {}).get("rows", []):
            if r["dataset"] not in out:
                out.append(r["dataset"])
    return out


def _fmt(v: Any, nd: int = 2) -> str:
    return "-" if v is None else f"{v:.{nd}f}"


def cell(res: dict, ds: str, scale: Any, key: str) -> float | None:
    """One number (``key``: psnr, ssim, ...) of a method's result rows at a set and scale."""
    for r in res.get("rows", []):
        if r["dataset"] == ds and r.get("scale", 1) == scale:
            return r.get(key)
    return None


def _reference(cfg, results: dict[str, dict]) -> str | None:
    if cfg.reference:
        return cfg.reference if cfg.reference in results else None
    for name, res in results.items():
        if res.get("model") in ("gblsr_asr", "local_spectral"):
            return name
    return next(iter(results), None)


def _tset(cfg, timing: dict | None) -> dict:
    """The timing settings that were measured (else the config's)."""
    return (timing or {}).get("settings") or cfg.timing


def _decode_ms(cfg, timing: dict | None, name: str) -> float | None:
    t = ((timing or {}).get("methods") or {}).get(name) or {}
    if cfg.kind == "sr":
        t = t.get(f"x{float(_tset(cfg, timing)['scales'][0]):g}", {})
    else:
        t = t.get("image", {})
    return t.get("decode_ms")


def lead_summary(cfg, results: dict[str, dict], timing: dict | None) -> list[str]:
    """Sentences saying where the reference method leads in PSNR and where (by how much) not."""
    ref = _reference(cfg, results)
    if ref is None or len(results) < 2:
        return []
    sets = _set_names(results.values())
    scales = cfg.scales if cfg.kind == "sr" else [1]
    behind, cells = [], 0
    for ds in sets:
        for s in scales:
            mine = cell(results[ref], ds, s, "psnr")
            others = [(n, cell(r, ds, s, "psnr")) for n, r in results.items() if n != ref]
            others = [(n, v) for n, v in others if v is not None]
            if mine is None or not others:
                continue
            cells += 1
            best_n, best_v = max(others, key=lambda t: t[1])
            if best_v > mine:
                where = f"{ds} x{s:g}" if cfg.kind == "sr" else ds
                behind.append((where, best_n, best_v - mine))
    if not cells:
        return []
    dec = {n: _decode_ms(cfg, timing, n) for n in results}
    at = f" at x{float(_tset(cfg, timing)['scales'][0]):g}" if cfg.kind == "sr" else ""
    times = ", ".join(f"{n} {_fmt(v, 1)} ms" for n, v in dec.items() if v is not None)
    time_txt = f" Decode times{at}: {times}." if times else " (Decode times not measured yet.)"
    extra = _versus_global(cfg, results, timing, ref, sets)
    if not behind:
        return [f"**{ref} leads in PSNR in all {cells} (set, scale) cells.**{time_txt}", *extra]
    worst = max(behind, key=lambda t: t[2])
    if len(behind) <= 8:
        listing = "; ".join(f"{w}: {n} +{g:.2f} dB" for w, n, g in behind)
    else:  # grouped by the method that leads
        parts = []
        for leader in dict.fromkeys(n for _, n, _ in behind):
            gaps = [(g, w) for w, n, g in behind if n == leader]
            lo, hi = min(gaps)[0], max(gaps)
            parts.append(
                f"{leader} leads in {len(gaps)} cells by {lo:.2f} to {hi[0]:.2f} dB "
                f"(most at {hi[1]})"
            )
        listing = "; ".join(parts)
    return [
        f"**{ref} does not lead in PSNR in {len(behind)} of {cells} cells** (largest gap "
        f"{worst[2]:.2f} dB, {worst[0]}, behind {worst[1]}): {listing}.{time_txt}",
        *extra,
    ]


def _versus_global(cfg, results, timing, ref: str, sets: list[str]) -> list[str]:
    """Native studies: the reference arm against the global Fourier-MLP control, plainly."""
    if cfg.kind != "native":
        return []
    out = []
    tm = (timing or {}).get("methods") or {}
    for name, res in results.items():
        if res.get("model") != "global_fourier_mlp" or name == ref:
            continue
        gaps = [
            cell(results[ref], ds, 1, "psnr") - cell(res, ds, 1, "psnr")
            for ds in sets
            if cell(results[ref], ds, 1, "psnr") is not None and cell(res, ds, 1, "psnr")
        ]
        if not gaps:
            continue
        mean = sum(gaps) / len(gaps)
        verdict = (
            "beats" if min(gaps) > 0 else ("loses to" if max(gaps) < 0 else "is mixed against")
        )
        t_ref = (tm.get(ref) or {}).get("image", {})
        t_gfm = (tm.get(name) or {}).get("image", {})
        out.append(
            f"**{ref} {verdict} the global Fourier-MLP control ({name}) at equal budget:** "
            f"{mean:+.2f} dB PSNR on average over {len(gaps)} set(s) "
            f"({', '.join(f'{g:+.2f}' for g in gaps)}), at {_fmt(t_ref.get('total_ms'), 1)} ms "
            f"against {_fmt(t_gfm.get('total_ms'), 1)} ms per {t_ref.get('image_size', '?')}px "
            f"image ({t_gfm.get('image_size', '?')}px for the shape-locked control)."
        )
    return out


def _bicubic_check(cfg, results, bicubic) -> list[str]:
    if not bicubic:
        return []
    fails: dict[str, list[tuple[float, str]]] = {}
    cells = 0
    for n, res in results.items():
        for r in res.get("rows", []):
            if r.get("scale") in cfg.eval["scales_in"]:
                b = cell(bicubic, r["dataset"], r["scale"], "psnr")
                if b is not None and r.get("psnr") is not None:
                    cells += 1
                    if r["psnr"] <= b:
                        where = f"{r['dataset']} x{r['scale']}"
                        fails.setdefault(n, []).append((r["psnr"] - b, where))
    if not fails:
        return [
            "Every scored method beats bicubic on every set at every in-distribution scale "
            f"({cells} cells)."
        ]
    parts = []
    for n, f in fails.items():
        worst = min(f)
        listing = (
            ", ".join(f"{w} ({d:+.2f} dB)" for d, w in f)
            if len(f) <= 4
            else (f"{len(f)} cells, worst {worst[1]} ({worst[0]:+.2f} dB)")
        )
        parts.append(f"{n}: {listing}")
    return ["Methods that do **not** beat bicubic in-distribution: " + "; ".join(parts) + "."]
