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
import time
from pathlib import Path
from typing import Any

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
from ..runtime import git_commit, set_seed
from .config import RunConfig, build_model_from_run_config
from .distributed import DistContext, barrier, init_distributed, shutdown_distributed
from .engine import FINAL_MODEL_NAME, LoopConfig, TrainLoop
from .losses import LossConfig, compute_losses
from .monitor import Console, CSVLog
from .native_report import (
    PANEL_METRICS,
    adaptivity_summary,
    aggregate,
    dump_locality_artifacts,
    finite_or_none,
    first_images,
    measure_inference_ms,
    save_figures,
    write_report,
)
from .state import (
    CheckpointManager,
    check_fresh_start,
    clear_run_files,
    undo_failed_start,
    write_json_atomic,
)

__all__ = [
    "train_one",
    "build_loaders",
    "validate",
    "evaluate",
    "aggregate",
    "set_seed",
    "save_figures",
    "measure_inference_ms",
    "dump_locality_artifacts",
    "PANEL_METRICS",
]


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
def validate(model, val_loader, rc: RunConfig, region_th, device, max_images: int) -> list[dict]:
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
                    row[m] = finite_or_none(panel[m][b])
                if "psnr_region" in panel:
                    for i, r in enumerate(REGIONS):
                        row[f"psnr_{r}"] = finite_or_none(panel["psnr_region"][b, i])
                        row[f"ssim_{r}"] = finite_or_none(panel["ssim_region"][b, i])
                        row[f"local_spectrum_error_{r}"] = finite_or_none(
                            panel["local_spectrum_error_region"][b, i]
                        )
                rows.append(row)
                if len(rows) >= limit:
                    return rows
    finally:
        model.train(was)
    return rows


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
        with undo_failed_start(run_dir, resume=resume, overwrite=overwrite):
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

    def val_curve(m, step):
        rows = validate(m, va_loader, rc, region_th, device, rc.num_val_curve_images)
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
        val_curve if rc.val_every > 0 else None,
        model_extra={"experiment_id": rc.experiment_id, "arm": rc.arm, "seed": rc.seed},
    )
    result = loop.run(resume=resume)
    if val_csv is not None:
        val_csv.close()
    if not ctx.is_main:
        barrier(ctx)
        return {"final_checkpoint": result["final_checkpoint"]}

    console(f"final evaluation on up to {rc.num_val_images} validation images ...")
    rows = validate(model, va_loader, rc, region_th, device, rc.num_val_images)
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
    xs, _ = first_images(va_loader, 1)
    sample = (
        xs[0].to(device) if xs else torch.zeros(1, 3, rc.image_size, rc.image_size, device=device)
    )
    inference_ms = measure_inference_ms(model, sample)
    adaptivity = adaptivity_summary(model, va_loader, device)
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
    write_report(run_dir, exp, agg, figures)
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

# The name earlier releases exported; gblsr.evaluation.evaluate is the benchmark protocol.
evaluate = validate
