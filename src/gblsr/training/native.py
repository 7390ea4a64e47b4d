"""Native GB-LSR experiments: one (arm, seed) run of a RunConfig, as the reference defines them.

The model reconstructs its input (the target is the image itself). :func:`train_one` trains
``total_steps`` AdamW steps (betas 0.9 / 0.95, constant learning rate, gradient clipping) on
random crops, evaluates the validation crops with the metric panel, and writes under
``run_dir``:

    experiment.json  rows.json  aggregate.json  report.md  region_thresholds.json
    figures/recon_error.png  figures/bandwidth_order.png (arms with s_e)  figures/region_mask.png
    model.safetensors (final weights)  checkpoints/  train_log.csv  val_log.csv
    locality.npz (with dump_locality)

Differences from the reference, all deliberate: crops are random per epoch and seed; images come
from any folders (``data.image_dirs``); validation interleaves the sources; the region
thresholds are fitted on training images (not on the validation set) and saved; the timing
uses the fixed latency protocol; weights are always saved (safetensors) and runs resume;
LPIPS is null (with a notice) when its weights are not installed.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..data.training_data import (
    PatchCropDataset,
    ResumableBatchSampler,
    build_datasets,
    collate_with_meta,
    make_collate,
)
from ..errors import UserInputError
from ..fileio import atomic_write
from ..runtime import git_commit, set_seed
from .config import RunConfig, build_model_from_run_config
from .distributed import DistContext, barrier, init_distributed, shutdown_distributed
from .engine import FINAL_MODEL_NAME, LoopConfig, TrainLoop
from .losses import LossConfig, compute_losses
from .monitor import Console, CSVLog
from .state import (
    CheckpointManager,
    check_fresh_start,
    clear_run_files,
    write_json_atomic,
)

__all__ = [
    "train_one",
    "build_loaders",
    "evaluate",
    "aggregate",
    "set_seed",
    "save_figures",
    "measure_inference_ms",
    "dump_locality_artifacts",
    "PANEL_METRICS",
]

PANEL_METRICS = ("psnr", "ssim", "lpips", "edge_lpips", "local_spectrum_error")
REGION_COLORS = ["#b0c4de", "#ff7f0e", "#2ca02c", "#9467bd"]


# --------------------------------------------------------------------------- loaders


def build_loaders(
    data_cfg,
    batch_size: int,
    num_workers: int,
    run_seed: int = 0,
    start_step: int = 0,
    total_steps: int | None = None,
    rank: int = 0,
    world_size: int = 1,
) -> tuple[DataLoader, DataLoader]:
    """(train, val) loaders. Train batches are endless (random order per epoch, from
    ``start_step`` on); validation batches are the centre crops in order."""
    train_ds, val_ds = build_datasets(data_cfg, run_seed=run_seed)
    varres = data_cfg.mode == "varres"
    if varres and batch_size != 1:
        raise UserInputError(
            "variable-resolution training (image_size: null or resize_policy: original) needs "
            f"batch_size: 1, got {batch_size}"
        )
    coll = make_collate(varres)
    sampler = ResumableBatchSampler(
        len(train_ds),
        batch_size,
        seed=run_seed,
        start_step=start_step,
        rank=rank,
        world_size=world_size,
        total_steps=total_steps,
    )
    pin = torch.cuda.is_available()
    tr = DataLoader(
        train_ds, batch_sampler=sampler, num_workers=num_workers, collate_fn=coll, pin_memory=pin
    )
    va = DataLoader(
        val_ds,
        batch_size=1 if varres else batch_size,
        shuffle=False,
        num_workers=0,
        collate_fn=coll,
        pin_memory=False,
    )
    return tr, va


# --------------------------------------------------------------------------- evaluation


def _lpips_enabled() -> bool:
    from ..metrics.quality import has_lpips

    return has_lpips()


@torch.no_grad()
def evaluate(model, val_loader, rc: RunConfig, region_th, device, max_images: int) -> list[dict]:
    """Per-image metric rows for at most ``max_images`` validation images (at least one).

    Fixed-size mode adds per-region ``psnr_<region>``, ``ssim_<region>`` and
    ``local_spectrum_error_<region>`` (labels from the ground truth). LPIPS values are None
    when LPIPS cannot run offline.
    """
    from ..data.regions import REGIONS, label_patches
    from ..metrics.quality import compute_metric_panel, compute_metric_panel_varres

    was = model.training
    model.eval()
    use_lpips = _lpips_enabled()
    rows: list[dict] = []
    limit = max(1, int(max_images))
    try:
        for batch in val_loader:
            x, names, paths = batch[0], batch[1], batch[2]
            x = x.to(device)
            recon = model(x)["recon"].float().clamp(0.0, 1.0)
            if rc.data.mode == "locked":
                labels = label_patches(x, rc.patch_size, region_th)
                panel = compute_metric_panel(recon, x, rc.patch_size, labels, lpips=use_lpips)
            else:
                panel = compute_metric_panel_varres(recon, x, rc.patch_size, lpips=use_lpips)
            for b in range(x.shape[0]):
                row: dict[str, Any] = {
                    "name": Path(paths[b]).stem,
                    "source": names[b],
                    "path": paths[b],
                }
                for m in PANEL_METRICS:
                    row[m] = _num(panel[m][b])
                if "psnr_region" in panel:
                    for i, r in enumerate(REGIONS):
                        row[f"psnr_{r}"] = _num(panel["psnr_region"][b, i])
                        row[f"ssim_{r}"] = _num(panel["ssim_region"][b, i])
                        row[f"local_spectrum_error_{r}"] = _num(
                            panel["local_spectrum_error_region"][b, i]
                        )
                rows.append(row)
                if len(rows) >= limit:
                    return rows
    finally:
        model.train(was)
    return rows


def _num(v) -> float | None:
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


def _first_images(val_loader, n: int) -> tuple[list[torch.Tensor], list[str]]:
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
    xs, names = _first_images(val_loader, n_images)
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

    xs, _ = _first_images(val_loader, max(1, max_images))
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


def _adaptivity(model, val_loader, device) -> dict | None:
    xs, _ = _first_images(val_loader, 8)
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


def _fit_thresholds(rc: RunConfig, run_dir: Path):
    """Region thresholds from training images (centre crops, first 1024 patches)."""
    from ..data.regions import fit_region_thresholds, save_thresholds

    train_ds, _ = build_datasets(rc.data, run_seed=rc.seed)
    items = train_ds.items
    probe = PatchCropDataset(
        [(n, [p]) for n, p in items],
        rc.data.image_size,
        train=False,
        seed=rc.data.seed,
        resize_policy=rc.data.resize_policy,
    )
    th = fit_region_thresholds(
        (probe[i][0] for i in range(len(probe))), rc.patch_size, n_samples=1024
    )
    save_thresholds(th, run_dir / "region_thresholds.json")
    return th


def _write_report(run_dir: Path, exp: dict, agg: dict, figures: list[str]) -> None:
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


# --------------------------------------------------------------------------- training


def _curve_point(step: int, rows: list[dict]) -> dict:
    agg = aggregate(rows)
    point: dict[str, Any] = {"step": step, "n_val_images": len(rows)}
    for m in PANEL_METRICS:
        point[m] = agg.get(m, {}).get("mean")
    return point


def train_one(
    rc: RunConfig,
    resume: bool = False,
    device: str | None = None,
    slug: str | None = None,
    overwrite: bool = False,
) -> dict:
    """Train and evaluate one (arm, seed) run; returns the experiment.json dict.

    resume: continue from the newest checkpoint in ``rc.run_dir`` (a finished run is not
    retrained; its experiment.json is returned). device: overrides ``rc.device``.
    overwrite: allow a fresh start in a folder holding an earlier run (its files are deleted).
    """
    run_dir = Path(rc.run_dir)
    done = run_dir / "experiment.json"
    if resume and done.is_file() and (run_dir / FINAL_MODEL_NAME).is_file():
        return json.loads(done.read_text())
    ctx = init_distributed(device or rc.device)
    try:
        return _train_one(rc, ctx, resume, slug, overwrite)
    finally:
        shutdown_distributed(ctx)


def _train_one(
    rc: RunConfig, ctx: DistContext, resume: bool, slug: str | None, overwrite: bool = False
) -> dict:
    run_dir = Path(rc.run_dir)
    console = Console(f"{slug or rc.arm} seed={rc.seed}", enabled=ctx.is_main)
    stale = [] if resume else check_fresh_start(run_dir, overwrite)
    barrier(ctx)  # every rank has looked before rank 0 writes anything
    if ctx.is_main:
        clear_run_files(stale)
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(
            run_dir / "train_config.json",
            {"kind": "native", "slug": slug, "run_config": rc.to_dict()},
        )
        write_json_atomic(run_dir / "run.json", {"status": "running"})
    barrier(ctx)
    device = ctx.device
    set_seed(rc.seed)
    model = build_model_from_run_config(rc).to(device)
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if (
        rc.data.mode == "locked"
        and rc.arm == "global_fourier_mlp"
        and rc.data.image_size != rc.image_size
    ):
        raise UserInputError(
            f"the global_fourier_mlp arm only accepts {rc.image_size}x{rc.image_size} images; "
            f"set data.image_size to {rc.image_size}"
        )
    _, va_loader = build_loaders(rc.data, rc.batch_size, 0, run_seed=rc.seed)
    region_th = None
    if ctx.is_main:
        console("fitting region thresholds on training images ...")
        region_th = _fit_thresholds(rc, run_dir)

    opt = torch.optim.AdamW(
        model.parameters(), lr=rc.lr, weight_decay=rc.weight_decay, betas=(0.9, 0.95)
    )
    loss_cfg = LossConfig(
        lambda_point=rc.lambda_point, loss_name=rc.loss_name, charbonnier_eps=rc.charbonnier_eps
    )

    def loss_fn(m, batch, dev):
        x = batch[0].to(dev, non_blocking=True)
        out = m(x)
        losses = compute_losses({"recon": out["recon"].float()}, x, loss_cfg)
        return losses["L_total"], {"L_point": losses["L_point"]}

    def make_batches(start_step: int):
        tr, _ = build_loaders(
            rc.data,
            rc.batch_size,
            rc.data.num_workers,
            run_seed=rc.seed,
            start_step=start_step,
            total_steps=rc.total_steps,
            rank=ctx.rank,
            world_size=ctx.world_size,
        )
        return tr

    spe = max(1, len(build_datasets(rc.data, run_seed=rc.seed)[0]) // rc.batch_size)
    found = CheckpointManager(run_dir).latest() if resume else None
    val_csv = (
        CSVLog(
            run_dir / "val_log.csv",
            ["step", "n_val_images", *PANEL_METRICS],
            found[0] if found else None,
        )
        if ctx.is_main and rc.val_every > 0
        else None
    )

    def validate(m, step):
        rows = evaluate(m, va_loader, rc, region_th, device, rc.num_val_curve_images)
        point = _curve_point(step, rows)
        if val_csv is not None:
            val_csv.write(point)
        return {k: v for k, v in point.items() if k != "step" and v is not None}

    loop = TrainLoop(
        run_dir,
        model,
        opt,
        lambda s: rc.lr,
        loss_fn,
        make_batches,
        ctx,
        LoopConfig(
            total_steps=rc.total_steps,
            steps_per_epoch=spe,
            log_every=rc.log_every,
            checkpoint_every=rc.checkpoint_every,
            keep_last=rc.keep_checkpoints,
            val_every=rc.val_every,
            grad_clip=rc.grad_clip,
            amp=rc.amp,
            compile=rc.compile,
            progress=rc.progress,
            tensorboard=rc.tensorboard,
            find_unused_parameters=True,
            extra_state={"scalar_names": ["L_point"]},
        ),
        console,
        validate if rc.val_every > 0 else None,
        model_extra={"experiment_id": rc.experiment_id, "arm": rc.arm, "seed": rc.seed},
    )
    result = loop.run(resume=resume)
    if val_csv is not None:
        val_csv.close()
    if not ctx.is_main:
        barrier(ctx)
        return {"final_checkpoint": result["final_checkpoint"]}

    console(f"final evaluation on up to {rc.num_val_images} validation images ...")
    rows = evaluate(model, va_loader, rc, region_th, device, rc.num_val_images)
    agg = aggregate(rows)
    train_curve = [
        {
            "step": r["step"],
            "n_val_images": r.get("n_val_images"),
            **{m: r.get(m) for m in PANEL_METRICS},
        }
        for r in result["val_history"]
    ]
    train_curve.append(_curve_point(rc.total_steps, rows))
    if agg.get("lpips", {}).get("n", 1) == 0:
        console(
            "LPIPS unavailable (package or AlexNet weights missing): lpips and edge_lpips "
            "are reported as null"
        )
    xs, _ = _first_images(va_loader, 1)
    sample = (
        xs[0].to(device) if xs else torch.zeros(1, 3, rc.image_size, rc.image_size, device=device)
    )
    inference_ms = measure_inference_ms(model, sample)
    adaptivity = _adaptivity(model, va_loader, device)
    figures = save_figures(model, va_loader, rc, region_th, device, run_dir)
    locality = None
    if rc.dump_locality:
        locality = dump_locality_artifacts(
            model, va_loader, rc, region_th, device, run_dir, rc.num_val_images
        )
    exp = {
        "experiment_id": rc.experiment_id,
        "arm": rc.arm,
        "slug": slug,
        "seed": rc.seed,
        "git_commit": git_commit(),
        "timestamp_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "n_params_trainable": n_params,
        "inference_ms_per_image": inference_ms,
        "config": rc.to_dict(),
        "region_thresholds": region_th.to_dict(),
        "train_log": [
            {
                "L_point": r.get("L_point"),
                "L_total": r.get("loss"),
                "step": r["step"],
                "elapsed_s": r.get("elapsed_s"),
            }
            for r in result["history"]
        ],
        "train_curve": train_curve,
        "aggregate": agg,
        "adaptivity_final": adaptivity,
        "num_val_images": len(rows),
        "locality_dump": locality,
        "checkpoint": result["final_checkpoint"],
        "device": str(device),
        "world_size": ctx.world_size,
        "resumed_from_step": result["resumed_from"],
        "train_seconds": round(result["elapsed_s"], 2),
    }
    write_json_atomic(run_dir / "rows.json", rows)
    write_json_atomic(run_dir / "aggregate.json", agg)
    _write_report(run_dir, exp, agg, figures)
    write_json_atomic(run_dir / "experiment.json", exp)
    write_json_atomic(
        run_dir / "run.json",
        {
            "status": "completed",
            "final_checkpoint": result["final_checkpoint"],
            "step": result["step"],
        },
    )
    console(
        f"done: psnr {agg.get('psnr', {}).get('mean')} on {len(rows)} images; "
        f"weights {result['final_checkpoint']}"
    )
    barrier(ctx)
    return exp


__all__ += ["git_commit"]  # re-exported from gblsr.runtime
_ = collate_with_meta  # re-exported for callers that build their own loaders
