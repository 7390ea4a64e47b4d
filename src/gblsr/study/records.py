"""What a study's result files are keyed by, and how they are read and written (atomically)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ..fileio import write_text_atomic
from .config import MethodSpec, StudyConfig, stable_hash
from .trainer import train_hash, trainer_config

__all__ = ["is_available", "method_hash", "read_json", "write_json"]


def is_available(cfg: StudyConfig, m: MethodSpec) -> str | None:
    """None when the method can be built here, else the one-line reason."""
    if cfg.kind == "native":
        return None
    from ..registry import available

    known = available("model")
    if m.model not in known:
        return f"model {m.model!r} is not in this gblsr (known: {', '.join(known)})"
    return None


def method_hash(cfg: StudyConfig, m: MethodSpec) -> str:
    """What a method's result depends on: its training recipe, the scoring and the crops."""
    tc = trainer_config(cfg, m)
    return stable_hash(
        {"train": train_hash(tc), "kind": cfg.kind, "eval": cfg.eval, "visual": cfg.visual}
    )


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(_finite(obj), indent=1, allow_nan=False) + "\n")


def _finite(obj: Any) -> Any:
    """JSON has no NaN or infinity: they become null."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj
