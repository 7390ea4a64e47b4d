"""What a native GB-LSR run reports: the metric aggregate, timing, figures, the locality dump,
the adaptivity summary and report.md (the loop is :mod:`gblsr.training.native`)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from ..fileio import atomic_write
from ..models.run_config import RunConfig

__all__ = [
    "PANEL_METRICS",
    "REGION_COLORS",
    "aggregate",
    "measure_inference_ms",
    "save_figures",
    "dump_locality_artifacts",
    "first_images",
    "finite_or_none",
    "adaptivity_summary",
    "write_report",
]

PANEL_METRICS = ("psnr", "ssim", "lpips", "edge_lpips", "local_spectrum_error")
REGION_COLORS = ["#b0c4de", "#ff7f0e", "#2ca02c", "#9467bd"]


def finite_or_none(v) -> float | None:
    f = float(v)
    return f if math.isfinite(f) else None


def aggregate(rows: list[dict]) -> dict:
    """``{metric: {mean, std (ddof 0), n}}`` over the rows' numeric values.

    Missing values (None, NaN, inf) are skipped; a metric with none left is
    ``{mean: None, std: None, n: 0}``.
    """
    if not rows:
        return {}
    skip = {"name", "path", "source"}
    keys = [k for k in rows[0] if k not in skip]
    out = {}
    for k in keys:
        vals = [r.get(k) for r in rows]
        vals = [float(v) for v in vals if isinstance(v, (int, float)) and math.isfinite(float(v))]
        if vals:
            a = np.asarray(vals, dtype=np.float64)
            out[k] = {"mean": float(a.mean()), "std": float(a.std()), "n": int(a.size)}
        else:
            out[k] = {"mean": None, "std": None, "n": 0}
    return out


@torch.no_grad()
def measure_inference_ms(model, sample: torch.Tensor) -> float:
    """Median ms of one forward pass under the fixed latency protocol (10 warm-up, 50 timed)."""
    from ..latency import LatencyConfig, measure_latency

    was = model.training
    model.eval()
    try:
        res = measure_latency(model, sample, LatencyConfig(), track_peak_memory=False)
    finally:
        model.train(was)
    return float(res.median_ms)


def first_images(val_loader, n: int) -> tuple[list[torch.Tensor], list[str]]:
    xs, names = [], []
    for batch in val_loader:
        for b in range(batch[0].shape[0]):
            xs.append(batch[0][b : b + 1])
            names.append(Path(batch[2][b]).stem)
            if len(xs) >= n:
                return xs, names
    return xs, names


@torch.no_grad()
def save_figures(
    model, val_loader, rc: RunConfig, region_th, device, run_dir: Path, n_images: int = 6
) -> list[str]:
    """recon_error.png, bandwidth_order.png (arms with s_e) and region_mask.png for the first
    validation images; returns the file names written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    from ..data.regions import REGIONS, label_patches

    fig_dir = run_dir / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    xs, names = first_images(val_loader, n_images)
    if not xs:
        return []
    was = model.training
    model.eval()
    outs = [model(x.to(device)) for x in xs]
    model.train(was)
    n = len(xs)
    written = []

    def _img(t):
        return t[0].detach().float().cpu().clamp(0, 1).permute(1, 2, 0).numpy()

    def _save(fig, name):
        path = fig_dir / name
        atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight"))
        plt.close(fig)
        written.append(name)

    fig, axes = plt.subplots(n, 3, figsize=(9, 3 * n), squeeze=False)
    for i in range(n):
        gt, rec = _img(xs[i]), _img(outs[i]["recon"])
        axes[i, 0].imshow(gt)
        axes[i, 0].set_title(f"GT [{names[i]}]", fontsize=8)
        axes[i, 1].imshow(rec)
        axes[i, 1].set_title(f"{rc.arm} recon", fontsize=8)
        axes[i, 2].imshow(np.abs(gt - rec).mean(axis=-1), cmap="inferno")
        axes[i, 2].set_title("|GT - recon|", fontsize=8)
        for a in axes[i]:
            a.axis("off")
    fig.tight_layout()
    _save(fig, "recon_error.png")

    if outs[0].get("s_e") is not None:
        fig, axes = plt.subplots(n, 2, figsize=(6, 3 * n), squeeze=False)
        for i in range(n):
            s_e = outs[i]["s_e"][0, ..., 0].float().cpu().numpy()
            p_soft = outs[i]["p_soft"][0, ..., 0].float().cpu().numpy()
            im0 = axes[i, 0].imshow(s_e, cmap="viridis")
            axes[i, 0].set_title(f"s_e [{names[i]}]", fontsize=8)
            plt.colorbar(im0, ax=axes[i, 0], fraction=0.046, pad=0.04)
            im1 = axes[i, 1].imshow(p_soft, cmap="magma")
            axes[i, 1].set_title("p_soft", fontsize=8)
            plt.colorbar(im1, ax=axes[i, 1], fraction=0.046, pad=0.04)
            for a in axes[i]:
                a.axis("off")
        fig.tight_layout()
        _save(fig, "bandwidth_order.png")

    fig, axes = plt.subplots(n, 2, figsize=(6, 3 * n), squeeze=False)
    cmap = ListedColormap(REGION_COLORS)
    for i in range(n):
        axes[i, 0].imshow(_img(xs[i]))
        axes[i, 0].set_title("GT", fontsize=8)
        if min(xs[i].shape[-2:]) >= rc.patch_size:
            lab = label_patches(xs[i], rc.patch_size, region_th)[0].cpu().numpy()
            im = axes[i, 1].imshow(lab, cmap=cmap, vmin=-0.5, vmax=3.5, interpolation="nearest")
            cb = plt.colorbar(im, ax=axes[i, 1], fraction=0.046, pad=0.04, ticks=[0, 1, 2, 3])
            cb.ax.set_yticklabels(REGIONS)
        axes[i, 1].set_title("regions", fontsize=8)
        for a in axes[i]:
            a.axis("off")
    fig.tight_layout()
    _save(fig, "region_mask.png")
    return written


@torch.no_grad()
def dump_locality_artifacts(
    model, val_loader, rc: RunConfig, region_th, device, run_dir: Path, max_images: int
) -> dict:
    """``locality.npz``: per-patch s_e, p_soft and region labels of validation images."""
    from ..data.regions import label_patches

    xs, _ = first_images(val_loader, max(1, max_images))
    s_e, p_soft, labels, names, paths = [], [], [], [], []
    was = model.training
    model.eval()
    has = True
    for x in xs:
        out = model(x.to(device))
        if out.get("s_e") is None:
            has = False
            break
        s_e.append(out["s_e"][..., 0].float().cpu().numpy())
        p_soft.append(out["p_soft"][..., 0].float().cpu().numpy())
        if min(x.shape[-2:]) >= rc.patch_size:
            labels.append(label_patches(x.to(device), rc.patch_size, region_th).cpu().numpy())
    model.train(was)
    path = run_dir / "locality.npz"
    same = has and s_e and len({a.shape for a in s_e}) == 1 and len(labels) == len(s_e)
    if has and s_e and same:
        se, ps, lab = (
            np.concatenate(s_e).astype(np.float32),
            np.concatenate(p_soft).astype(np.float32),
            np.concatenate(labels).astype(np.int8),
        )
    else:
        se = ps = np.zeros((0, 0, 0), np.float32)
        lab = np.zeros((0, 0, 0), np.int8)
    for batch in val_loader:
        names.extend(Path(p).stem for p in batch[2])
        paths.extend(batch[2])
    names, paths = names[: se.shape[0]], paths[: se.shape[0]]
    atomic_write(
        path,
        lambda tmp: np.savez_compressed(
            open(tmp, "wb"),
            s_e=se,
            p_soft=ps,
            region_labels=lab,
            image_names=np.array(names, dtype=np.str_),
            image_paths=np.array(paths, dtype=np.str_),
        ),
    )
    if se.size == 0:
        return {"n_images": 0, "has_adaptivity": bool(has)}
    return {
        "n_images": int(se.shape[0]),
        "n_patches_h": int(se.shape[1]),
        "n_patches_w": int(se.shape[2]),
        "s_e_global_min": float(se.min()),
        "s_e_global_max": float(se.max()),
        "s_e_global_mean": float(se.mean()),
        "p_soft_global_min": float(ps.min()),
        "p_soft_global_max": float(ps.max()),
        "p_soft_global_mean": float(ps.mean()),
    }


def adaptivity_summary(model, val_loader, device) -> dict | None:
    xs, _ = first_images(val_loader, 8)
    se, ps = [], []
    was = model.training
    model.eval()
    with torch.no_grad():
        for x in xs:
            out = model(x.to(device))
            if out.get("s_e") is None:
                model.train(was)
                return None
            se.append(out["s_e"].flatten().float().cpu())
            ps.append(out["p_soft"].flatten().float().cpu())
    model.train(was)
    if not se:
        return None

    def stats(t):
        return {
            "min": float(t.min()),
            "max": float(t.max()),
            "mean": float(t.mean()),
            "std": float(t.std(unbiased=False)),
        }

    return {"s_e": stats(torch.cat(se)), "p_soft": stats(torch.cat(ps))}


def write_report(run_dir: Path, exp: dict, agg: dict, figures: list[str]) -> None:
    lines = [
        f"# {exp['arm']} ({exp.get('slug') or exp['arm']}) seed={exp['seed']}",
        "",
        f"- Experiment: `{exp['experiment_id']}`",
        f"- Commit: `{exp['git_commit']}`",
        f"- Timestamp (UTC): {exp['timestamp_utc']}",
        f"- Trainable parameters: {exp['n_params_trainable']:,}",
        f"- Inference ms/image (median, latency protocol): {exp['inference_ms_per_image']:.3f}",
        f"- Validation images: {exp['num_val_images']}",
        f"- Steps: {exp['config']['total_steps']}, device: {exp['device']}",
        f"- Final weights: `{exp['checkpoint']}`",
        "",
        "## Validation metrics",
        "",
        "| metric | mean | std | n |",
        "| --- | --- | --- | --- |",
    ]
    for k, v in agg.items():
        mean = "null" if v["mean"] is None else f"{v['mean']:.4f}"
        std = "null" if v["std"] is None else f"{v['std']:.4f}"
        lines.append(f"| {k} | {mean} | {std} | {v['n']} |")
    if agg.get("lpips", {}).get("n", 1) == 0:
        lines += ["", "LPIPS is null: the lpips package or its AlexNet weights are not installed."]
    lines += ["", "## Figures", ""]
    lines += [f"- `figures/{f}`" for f in figures] or ["(none)"]
    text = "\n".join(lines) + "\n"
    atomic_write(run_dir / "report.md", lambda tmp: Path(tmp).write_text(text))
