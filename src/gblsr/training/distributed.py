"""Data-parallel helpers on top of ``torch.distributed`` (launched by ``torchrun``).

One process by default. Under ``torchrun --nproc_per_node N -m gblsr.cli.train ...`` the
environment carries RANK / LOCAL_RANK / WORLD_SIZE (and the rendezvous settings, which is
how multi-node runs work: ``--nnodes``, ``--node_rank``, ``--rdzv_endpoint`` ...), and
:func:`init_distributed` joins the process group: NCCL when the run uses CUDA, gloo on CPU.
Rank 0 logs, validates and writes checkpoints; every rank trains on its slice of each global
batch (see :class:`gblsr.data.training_data.ResumableBatchSampler`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from ..runtime import resolve_device

__all__ = [
    "DistContext",
    "init_distributed",
    "resolve_device",
    "all_reduce_mean",
    "barrier",
    "broadcast_int",
    "shutdown_distributed",
]


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    initialized_here: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str | None = "auto") -> DistContext:
    """Join the torchrun process group when WORLD_SIZE > 1; otherwise a one-process context."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    if world <= 1:
        return DistContext(0, 1, 0, dev, False)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    initialized_here = False
    if not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        # Rank 0 validates and evaluates while the others wait at a barrier: allow hours.
        dist.init_process_group(backend=backend, timeout=timedelta(hours=3))
        initialized_here = True
    if dev.type == "cpu":
        # Share the cores between the processes on this machine instead of oversubscribing.
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(1, local_world)))
    return DistContext(dist.get_rank(), dist.get_world_size(), local_rank, dev, initialized_here)


def all_reduce_mean(t: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Mean of ``t`` over ranks (``t`` itself in a one-process run)."""
    if not ctx.distributed:
        return t
    t = t.detach().clone()
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t / ctx.world_size


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()


def broadcast_int(value: int, ctx: DistContext) -> int:
    """Rank 0's ``value`` on every rank."""
    if not ctx.distributed:
        return int(value)
    t = torch.tensor([int(value)], dtype=torch.int64, device=ctx.device)
    dist.broadcast(t, src=0)
    return int(t.item())


def shutdown_distributed(ctx: DistContext) -> None:
    if ctx.initialized_here and dist.is_initialized():
        dist.destroy_process_group()
