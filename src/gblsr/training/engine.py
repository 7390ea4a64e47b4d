"""The training loop both trainers share: steps, schedule, checkpoints, resume, logs, DDP.

:class:`TrainLoop` runs ``total_steps`` optimizer steps from a batch stream, and owns

* the learning rate of every step (a pure function of the step, so resuming needs no
  scheduler object),
* data parallelism (DistributedDataParallel when launched by torchrun), optional bf16 autocast
  and ``torch.compile``,
* a finite-loss check on the loss averaged over ranks (all ranks stop together; nothing is
  stepped or saved after a non-finite loss),
* checkpoints every ``checkpoint_every`` steps and at the end (:class:`CheckpointManager`),
  restored exactly by ``resume=True``: weights, optimizer, random states, loss history, step,
* the CSV / TensorBoard / progress output of :mod:`.monitor`.

The task-specific parts come in as callables: ``loss_fn(model, batch, device) -> (loss,
scalars)``, ``make_batches(start_step)`` (an iterator of batches from a global step on) and
``validate(model, step)`` (main process only).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ..errors import GBLSRError
from .distributed import DistContext, all_reduce_mean, barrier
from .monitor import Console, CSVLog, Progress, TensorBoardLog
from .state import CheckpointManager, capture_rng_state, restore_rng_state, write_json_atomic

__all__ = ["LoopConfig", "TrainLoop", "TrainingDivergedError", "FINAL_MODEL_NAME", "unwrap_model"]

FINAL_MODEL_NAME = "model.safetensors"


class TrainingDivergedError(GBLSRError):
    """The loss became NaN or infinite; the message names the last good checkpoint."""


@dataclass
class LoopConfig:
    total_steps: int
    steps_per_epoch: int
    log_every: int = 50
    checkpoint_every: int = 1000
    keep_last: int = 2
    val_every: int = 0
    grad_clip: float = 0.0
    amp: str = "none"
    compile: bool = False
    progress: Any = "auto"
    tensorboard: Any = "auto"
    find_unused_parameters: bool = False
    extra_state: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.amp not in ("none", "bf16"):
            raise ValueError(f"amp must be 'none' or 'bf16', got {self.amp!r}")


def unwrap_model(m: nn.Module) -> nn.Module:
    """The plain module under DDP / torch.compile wrappers."""
    while True:
        if hasattr(m, "_orig_mod"):
            m = m._orig_mod
        elif isinstance(m, nn.parallel.DistributedDataParallel):
            m = m.module
        else:
            return m


class TrainLoop:
    def __init__(
        self,
        run_dir: str | Path,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        lr_at: Callable[[int], float],
        loss_fn: Callable[
            [nn.Module, Any, torch.device], tuple[torch.Tensor, dict[str, torch.Tensor]]
        ],
        make_batches: Callable[[int], Iterable[Any]],
        ctx: DistContext,
        cfg: LoopConfig,
        console: Console,
        validate: Callable[[nn.Module, int], dict[str, Any] | None] | None = None,
        model_extra: dict[str, Any] | None = None,
    ):
        self.run_dir = Path(run_dir)
        self.model = model
        self.optimizer = optimizer
        self.lr_at = lr_at
        self.loss_fn = loss_fn
        self.make_batches = make_batches
        self.ctx = ctx
        self.cfg = cfg
        self.console = console
        self.validate = validate
        self.model_extra = dict(model_extra or {})
        self.ckpt = CheckpointManager(self.run_dir, cfg.keep_last)
        self.history: list[dict[str, Any]] = []  # logged training rows
        self.val_history: list[dict[str, Any]] = []
        self.step = 0
        self.elapsed_before = 0.0  # training seconds spent before a resume
        self.last_checkpoint: Path | None = None
        self.saved_step: int | None = None  # same on every rank (decides collective saves)

    # ------------------------------------------------------------------ state

    def _state(self) -> dict[str, Any]:
        return {
            "optimizer": self.optimizer.state_dict(),
            "rng": capture_rng_state(),
            "history": self.history,
            "val_history": self.val_history,
            "elapsed_s": self.elapsed_before + (time.time() - self._t0),
            "epoch": self.step // self.cfg.steps_per_epoch,
            "total_steps": self.cfg.total_steps,
            "steps_per_epoch": self.cfg.steps_per_epoch,
            "lr": self.lr_at(max(0, self.step - 1)),
            "schedule": "learning rate is a function of the step (see the run's config)",
            **self.cfg.extra_state,
        }

    def save_checkpoint(self) -> Path | None:
        if self.ctx.is_main:
            self.last_checkpoint = self.ckpt.save(
                self.step,
                unwrap_model(self.model),
                self._state(),
                extra={**self.model_extra, "epoch": self.step // self.cfg.steps_per_epoch},
            )
        self.saved_step = self.step
        barrier(self.ctx)
        return self.last_checkpoint

    def restore(self) -> bool:
        """Load the newest checkpoint of the run directory; False when there is none."""
        loaded = self.ckpt.load_latest()
        if loaded is None:
            return False
        step, sd, state = loaded
        unwrap_model(self.model).load_state_dict(sd, strict=True)
        self.optimizer.load_state_dict(state["optimizer"])
        self.history = list(state.get("history") or [])
        self.val_history = list(state.get("val_history") or [])
        self.elapsed_before = float(state.get("elapsed_s", 0.0))
        self.step = int(step)
        self.last_checkpoint = self.ckpt.model_path(step)
        self.saved_step = int(step)
        restore_rng_state(state["rng"])
        return True

    # ------------------------------------------------------------------ loop

    def _wrapped(self) -> nn.Module:
        m = self.model
        if self.ctx.distributed:
            dev = self.ctx.device
            m = nn.parallel.DistributedDataParallel(
                m,
                device_ids=[dev.index] if dev.type == "cuda" else None,
                find_unused_parameters=self.cfg.find_unused_parameters,
            )
        if self.cfg.compile:
            if self.ctx.device.type != "cuda":
                self.console("compile: true is meant for CUDA; compiling for the CPU anyway")
            m = torch.compile(m)
        return m

    def _autocast(self):
        if self.cfg.amp == "bf16":
            return torch.autocast(device_type=self.ctx.device.type, dtype=torch.bfloat16)
        return nullcontext()

    def run(self, resume: bool = False) -> dict[str, Any]:
        """Train to ``total_steps``; returns a summary with the final checkpoint path."""
        ctx, cfg = self.ctx, self.cfg
        self._t0 = time.time()
        resumed = False
        if resume:
            resumed = self.restore()
            if resumed:
                self.console(f"resumed from {self.last_checkpoint} (step {self.step})")
            else:
                self.console("no checkpoint found; starting from step 0")
        resume_step = self.step if resumed else None
        main = ctx.is_main
        csv_log = (
            CSVLog(
                self.run_dir / "train_log.csv",
                [
                    "step",
                    "epoch",
                    "lr",
                    "loss",
                    *self._scalar_names(),
                    "elapsed_s",
                    "samples_per_s",
                ],
                resume_step,
            )
            if main
            else None
        )
        tb = (
            TensorBoardLog(self.run_dir / "tensorboard", cfg.tensorboard, resume_step, self.console)
            if main
            else None
        )
        progress = Progress(cfg.total_steps, self.step, cfg.progress, enabled=main)
        fwd = self._wrapped()
        self.model.train()
        batches = iter(self.make_batches(self.step))
        last_t = time.time()
        batch_items = 0
        try:
            while self.step < cfg.total_steps:
                lr = float(self.lr_at(self.step))
                for g in self.optimizer.param_groups:
                    g["lr"] = lr
                batch = next(batches)
                with self._autocast():
                    loss, scalars = self.loss_fn(fwd, batch, ctx.device)
                names = list(scalars)
                packed = torch.stack(
                    [loss.detach().float()] + [scalars[k].detach().float() for k in names]
                )
                packed = all_reduce_mean(packed, ctx)
                loss_val = float(packed[0])
                if not math.isfinite(loss_val):
                    self._diverged(loss_val)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip and cfg.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
                self.optimizer.step()
                self.step += 1
                batch_items += _batch_len(batch)

                row_vals = {k: float(v) for k, v in zip(names, packed[1:].tolist())}
                progress.update(1, loss=f"{loss_val:.4f}", lr=f"{lr:.2e}")
                if self.step % max(1, cfg.log_every) == 0 or self.step == cfg.total_steps:
                    now = time.time()
                    rate = batch_items * ctx.world_size / max(1e-9, now - last_t)
                    row = {
                        "step": self.step,
                        "epoch": (self.step - 1) // cfg.steps_per_epoch,
                        "lr": lr,
                        "loss": loss_val,
                        **row_vals,
                        "elapsed_s": round(self.elapsed_before + now - self._t0, 3),
                        "samples_per_s": round(rate, 2),
                    }
                    self.history.append(row)
                    if main:
                        csv_log.write(row)
                        tb.scalars(self.step, {"loss": loss_val, "lr": lr, **row_vals}, "train/")
                        if not progress.active:
                            self.console(
                                f"step {self.step}/{cfg.total_steps} epoch {row['epoch']} "
                                f"loss {loss_val:.5f} lr {lr:.3g} ({rate:.1f} samples/s)"
                            )
                    last_t, batch_items = now, 0

                if cfg.val_every and self.step % cfg.val_every == 0 and self.validate is not None:
                    self._run_validation(tb, progress)
                if (
                    cfg.checkpoint_every
                    and self.step % cfg.checkpoint_every == 0
                    and self.step < cfg.total_steps
                ):
                    self.save_checkpoint()
            if self.saved_step != self.step:
                self.save_checkpoint()
        finally:
            progress.close()
            if csv_log is not None:
                csv_log.close()
            if tb is not None:
                tb.close()
        final = self.run_dir / FINAL_MODEL_NAME
        if main:
            from ..checkpoint import save_model

            save_model(
                unwrap_model(self.model), final, extra={**self.model_extra, "step": self.step}
            )
        barrier(ctx)
        return {
            "final_checkpoint": str(final),
            "step": self.step,
            "resumed_from": resume_step,
            "elapsed_s": self.elapsed_before + time.time() - self._t0,
            "history": self.history,
            "val_history": self.val_history,
        }

    def _scalar_names(self) -> list[str]:
        return list(self.cfg.extra_state.get("scalar_names", []))

    def _run_validation(self, tb, progress) -> None:
        if self.ctx.is_main:
            was = self.model.training
            self.model.eval()
            try:
                res = self.validate(unwrap_model(self.model), self.step)
            finally:
                self.model.train(was)
            if res:
                row = {
                    "step": self.step,
                    "epoch": (self.step - 1) // self.cfg.steps_per_epoch,
                    **res,
                }
                self.val_history.append(row)
                if tb is not None:
                    tb.scalars(
                        self.step,
                        {k: v for k, v in res.items() if isinstance(v, (int, float))},
                        "val/",
                    )
                msg = " ".join(
                    f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in res.items()
                )
                if progress.active:
                    progress.write(f"validation at step {self.step}: {msg}")
                else:
                    self.console(f"validation at step {self.step}: {msg}")
        barrier(self.ctx)

    def _diverged(self, value: float) -> None:
        if self.ctx.is_main:
            write_json_atomic(
                self.run_dir / "run.json",
                {
                    "status": "diverged",
                    "step": self.step,
                    "loss": str(value),
                    "last_good_checkpoint": str(self.last_checkpoint)
                    if self.last_checkpoint
                    else None,
                },
            )
        where = (
            f"the last good checkpoint is {self.last_checkpoint} (step {self.ckpt.latest()[0]})"
            if self.last_checkpoint and self.ckpt.latest()
            else "no checkpoint had been written yet"
        )
        raise TrainingDivergedError(
            f"training stopped: the loss became {value} at step {self.step + 1} (epoch "
            f"{self.step // self.cfg.steps_per_epoch}); nothing was saved after it and {where}. "
            f"Lower the learning rate or set a gradient clip, then rerun or resume with "
            f"gblsr-train --resume {self.run_dir}"
        )


def _batch_len(batch: Any) -> int:
    if isinstance(batch, dict):
        for v in batch.values():
            if isinstance(v, torch.Tensor):
                return int(v.shape[0])
    if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], torch.Tensor):
        return int(batch[0].shape[0])
    return 1
