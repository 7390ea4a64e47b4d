"""The study's pictures (matplotlib, Agg), drawn only from the result files.

SR studies: PSNR against scale per method (one panel per set), PSNR against decode time (the
speed/quality front), the visual grid (the same crop at each visual scale for every method,
beside bicubic and the ground truth) and training-loss curves. Native studies: validation PSNR
against step and wall time, PSNR against decode time and the reconstruction / error grid.
"""

from __future__ import annotations

import math
from pathlib import Path

from .summary import cell

__all__ = ["draw_figures"]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> str:
    from ..fileio import atomic_write

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png"))
    _plt().close(fig)
    return path.name


def _sets(results: dict[str, dict]) -> list[str]:
    out: list[str] = []
    for res in results.values():
        for r in res.get("rows", []):
            if r["dataset"] not in out:
                out.append(r["dataset"])
    return out


def _psnr_vs_scale(results, bicubic, scales, path: Path) -> str:
    """PSNR by scale per set; with a bicubic reference, a second row of gains over it (the
    methods' absolute curves lie within a dB of each other and hide their order)."""
    plt = _plt()
    sets = _sets(results)
    n_rows = 2 if bicubic else 1
    fig, axes = plt.subplots(
        n_rows, len(sets), figsize=(4.2 * len(sets), 3.4 * n_rows), squeeze=False
    )
    entries = list(results.items()) + ([("bicubic", bicubic)] if bicubic else [])
    for col, ds in enumerate(sets):
        base = {s: cell(bicubic, ds, s, "psnr") for s in scales} if bicubic else {}
        for name, res in entries:
            pts = [(s, cell(res, ds, s, "psnr")) for s in scales]
            pts = [(s, p) for s, p in pts if p is not None]
            if not pts:
                continue
            style = "k--" if name == "bicubic" else "-o"
            axes[0][col].plot([s for s, _ in pts], [p for _, p in pts], style, label=name, ms=3)
            if bicubic:
                gain = [(s, p - base[s]) for s, p in pts if base.get(s) is not None]
                axes[1][col].plot([s for s, _ in gain], [g for _, g in gain], style, ms=3)
        for row in range(n_rows):
            ax = axes[row][col]
            ax.set_xscale("log")
            ax.minorticks_off()
            ax.set_xticks(scales)
            ax.set_xticklabels([f"x{s:g}" for s in scales])
            ax.set_xlabel("scale")
            ax.grid(alpha=0.3)
        axes[0][col].set_title(ds)
        axes[0][col].set_ylabel("Y-PSNR (dB)")
        if bicubic:
            axes[1][col].set_ylabel("gain over bicubic (dB)")
    axes[0][-1].legend(fontsize=7)
    return _save(fig, path)


def _front(points: list[tuple[str, float, float]], xlabel: str, ylabel: str, path: Path) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.2, 3.8))
    ys = [y for _, _, y in points]
    y_span = (max(ys) - min(ys)) or 1.0
    placed: list[tuple[float, float]] = []
    for name, x, y in points:
        ax.scatter([x], [y])
        # A label near an earlier point (within 0.15 decades and 4% of the PSNR span) goes
        # below its point instead of above, so two close methods stay readable.
        near = any(
            abs(math.log10(x) - math.log10(px)) < 0.15 and abs(y - py) < 0.04 * y_span
            for px, py in placed
        )
        ax.annotate(
            name, (x, y), textcoords="offset points", xytext=(4, -11 if near else 4), fontsize=8
        )
        placed.append((x, y))
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title("speed / quality (up and left is better)")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def _grid(rows: list[tuple[str, list[tuple[str, Path]]]], path: Path) -> str | None:
    from PIL import Image

    plt = _plt()
    rows = [(t, [(n, p) for n, p in cells if p.is_file()]) for t, cells in rows]
    rows = [r for r in rows if r[1]]
    if not rows:
        return None
    ncol = max(len(c) for _, c in rows)
    fig, axes = plt.subplots(len(rows), ncol, figsize=(1.9 * ncol, 2.1 * len(rows)), squeeze=False)
    for i, (title, cells) in enumerate(rows):
        for j in range(ncol):
            ax = axes[i][j]
            ax.axis("off")
            if j < len(cells):
                name, p = cells[j]
                with Image.open(p) as im:
                    ax.imshow(im.convert("RGB"), interpolation="nearest")
                ax.set_title(f"{name} {title}".strip(), fontsize=7)
    return _save(fig, path)


def _curves(results: dict[str, dict], key: str, ylabel: str, path: Path) -> str | None:
    plt = _plt()
    have = {n: r.get(key) or [] for n, r in results.items()}
    if not any(have.values()):
        return None
    yk = "loss" if key == "loss_curve" else "psnr"
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for name, pts in have.items():
        pts = [p for p in pts if p.get(yk) is not None]
        if not pts:
            continue
        axes[0].plot([p["step"] for p in pts], [p[yk] for p in pts], label=name, lw=1)
        wall = [(p["elapsed_s"], p[yk]) for p in pts if p.get("elapsed_s") is not None]
        if wall:
            axes[1].plot([w for w, _ in wall], [v for _, v in wall], label=name, lw=1)
    for ax, xl in zip(axes, ("step", "training wall time (s)")):
        ax.set_xlabel(xl)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if yk == "loss":
            ax.set_yscale("log")
    axes[1].legend(fontsize=7)
    return _save(fig, path)


def draw_figures(cfg, out: Path, results, bicubic, timing) -> list[str]:
    """Draw what the existing results allow; returns the file names under ``out/figures``."""
    fig_dir = out / "figures"
    crops = out / "crops"
    drawn: list[str | None] = []
    tm = (timing or {}).get("methods", {})
    tset = (timing or {}).get("settings") or cfg.timing  # what was measured
    if cfg.kind == "sr":
        if results:
            drawn.append(
                _psnr_vs_scale(results, bicubic, cfg.scales, fig_dir / "psnr_vs_scale.png")
            )
        s = tset["scales"][0]
        key = f"x{float(s):g}"
        pts = []
        for name, res in results.items():
            vals = [cell(res, ds, s, "psnr") for ds in _sets({name: res})]
            vals = [v for v in vals if v is not None]
            dec = tm.get(name, {}).get(key, {}).get("decode_ms")
            if vals and dec:
                pts.append((name, dec, sum(vals) / len(vals)))
        if pts:
            drawn.append(
                _front(
                    pts,
                    f"decode time (ms, {tset['lr_size']}px LR to {key})",
                    f"Y-PSNR at x{s:g} (dB, mean over sets)",
                    fig_dir / "psnr_vs_decode_time.png",
                )
            )
        grid = []
        for s in cfg.visual["scales"]:
            k = f"x{float(s):g}"
            cells = [("GT", crops / f"gt_{k}.png"), ("bicubic", crops / f"bicubic_{k}.png")]
            cells += [(n, crops / f"{n}_{k}.png") for n in results]
            grid.append((k, cells))
        drawn.append(_grid(grid, fig_dir / "visual_grid.png"))
        drawn.append(_curves(results, "loss_curve", "training loss", fig_dir / "loss_curves.png"))
    else:
        drawn.append(
            _curves(results, "val_curve", "validation PSNR (dB)", fig_dir / "learning_curves.png")
        )
        drawn.append(_curves(results, "loss_curve", "training loss", fig_dir / "loss_curves.png"))
        pts = []
        for name, res in results.items():
            rows = [r for r in res.get("rows", []) if r.get("psnr") is not None]
            dec = tm.get(name, {}).get("image", {}).get("decode_ms")
            if rows and dec:
                pts.append((name, dec, sum(r["psnr"] for r in rows) / len(rows)))
        if pts:
            drawn.append(
                _front(
                    pts,
                    f"decode time (ms, {tset['image_size']}px image)",
                    "PSNR (dB, mean over sets)",
                    fig_dir / "psnr_vs_decode_time.png",
                )
            )
        names = list(results)
        grid = [
            ("", [("GT", crops / "gt_recon.png")] + [(n, crops / f"{n}_recon.png") for n in names]),
            ("|error| x4", [(n, crops / f"{n}_error.png") for n in names]),
        ]
        drawn.append(_grid(grid, fig_dir / "recon_grid.png"))
    return [d for d in drawn if d]
