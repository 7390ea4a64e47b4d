"""Process-level helpers every layer shares: choosing a device, seeding, the git revision."""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

import numpy as np
import torch

from .errors import UserInputError

__all__ = ["resolve_device", "set_seed", "git_commit"]


def resolve_device(spec: str | torch.device | None, local_rank: int = 0) -> torch.device:
    """``auto`` / None: CUDA (this process's local GPU under torchrun) when available, else the
    CPU; otherwise ``cpu``, ``cuda``, ``cuda:N`` or ``mps``. Unavailable or unknown devices are
    a :class:`~gblsr.errors.UserInputError`."""
    if isinstance(spec, torch.device):
        spec = str(spec)
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserInputError(f"device {spec!r} was asked for, but no CUDA device is available")
        if spec == "cuda":
            return torch.device("cuda", local_rank % max(1, torch.cuda.device_count()))
        try:
            return torch.device(spec)
        except RuntimeError:
            raise UserInputError(
                f"unknown device {spec!r}; use auto, cpu, cuda or cuda:N"
            ) from None
    if spec == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise UserInputError("device 'mps' was asked for, but it is not available")
        return torch.device("mps")
    if spec == "cpu":
        return torch.device("cpu")
    raise UserInputError(f"unknown device {spec!r}; use auto, cpu, cuda, cuda:N or mps")


def set_seed(seed: int) -> None:
    """Seed Python ``random``, NumPy and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def git_commit() -> str:
    """The git revision of the source tree gblsr runs from, or ``unknown``."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parents[2],
            capture_output=True,
            text=True,
            timeout=5,
        )
        return out.stdout.strip() or "unknown" if out.returncode == 0 else "unknown"
    except Exception:
        return "unknown"
