"""Resumable training state: checkpoints written atomically, and everything needed to resume.

A checkpoint at step N is two files in ``<run_dir>/checkpoints/``:

* ``step-<N>.safetensors``: the model in gblsr's self-describing format
  (:func:`gblsr.save_model`: weights + architecture + config + gblsr version), loadable by
  ``gblsr.load_model``, ``gblsr-eval`` and ``gblsr-reconstruct`` on its own;
* ``step-<N>.state.safetensors``: the optimizer's tensors, and in its metadata (JSON) the
  optimizer's other settings, the learning-rate schedule position, the step and epoch, the
  Python / NumPy / torch (CPU and CUDA) random states and the trainer's own counters.

``checkpoints/latest.json`` names the newest complete pair. Each file is written to a temporary
name and renamed into place, and ``latest.json`` is replaced only after both files of the new
pair exist, so a run killed at any instant leaves ``latest.json`` pointing at a complete
checkpoint. Older pairs beyond ``keep_last`` are deleted after the pointer moves.

Nothing here unpickles: states are stored as tensors plus JSON, with a small tagged encoding
for the tuples, int-keyed dicts and tensors that optimizer state dicts hold.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from .._version import __version__
from ..checkpoint import save_model
from ..errors import CheckpointError
from ..fileio import atomic_write, write_json_atomic

__all__ = [
    "RUN_ARTIFACTS",
    "stale_run_files",
    "clear_run_files",
    "check_fresh_start",
    "STATE_FORMAT",
    "encode_state",
    "decode_state",
    "save_state_file",
    "load_state_file",
    "capture_rng_state",
    "restore_rng_state",
    "CheckpointManager",
    "write_json_atomic",
    "undo_failed_start",
]

STATE_FORMAT = "gblsr.train_state"
_LATEST = "latest.json"


# What gblsr-train writes into a run directory (and nothing else is ever deleted).
RUN_ARTIFACTS = (
    "checkpoints",
    "tensorboard",
    "figures",
    "model.safetensors",
    "model-best.safetensors",
    "run.json",
    "train_log.csv",
    "val_log.csv",
    "train_config.yaml",
    "train_config.json",
    "experiment.json",
    "rows.json",
    "aggregate.json",
    "report.md",
    "region_thresholds.json",
    "locality.npz",
)


def stale_run_files(run_dir: str | os.PathLike) -> list[Path]:
    """Artifacts of an earlier run in ``run_dir`` (empty for a new or empty folder)."""
    d = Path(run_dir)
    return [d / n for n in RUN_ARTIFACTS if (d / n).exists()] if d.is_dir() else []


def clear_run_files(paths: list[Path]) -> None:
    import shutil

    for p in paths:
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


def check_fresh_start(run_dir: str | os.PathLike, overwrite: bool) -> list[Path]:
    """The earlier run's files to delete before a fresh start; refuses without ``overwrite``."""
    from ..errors import UserInputError

    stale = stale_run_files(run_dir)
    if stale and not overwrite:
        raise UserInputError(
            f"{run_dir} already holds a training run; continue it with "
            f"gblsr-train --resume {run_dir}, or start afresh with --overwrite (deletes its "
            "checkpoints and results), or choose another --run-dir"
        )
    return stale


@contextlib.contextmanager
def undo_failed_start(run_dir: str | os.PathLike, *, resume: bool, overwrite: bool):
    """Around a fresh training start: if it fails (a user mistake, an interrupt, anything)
    before the run has produced anything (no checkpoint, no logged step, no model), remove what
    it created, so that the corrected command starts without ``--overwrite``.

    Nothing is touched on resume, on another rank than 0, or when ``run_dir`` holds an earlier
    run that the start will refuse to replace.
    """
    d = Path(run_dir)
    existed = d.exists()
    active = (
        not resume
        and int(os.environ.get("RANK", "0")) == 0
        and (overwrite or not stale_run_files(d))
    )
    try:
        yield
    except BaseException:
        if active and not _produced_anything(d):
            # Every run artifact here is this start's: a fresh start refuses (or, with
            # overwrite, deletes) an earlier run's.
            clear_run_files(stale_run_files(d))
            if not existed:
                with contextlib.suppress(OSError):
                    d.rmdir()  # only if nothing else was put there
        raise


def _produced_anything(d: Path) -> bool:
    ckpt = d / "checkpoints"
    if (d / "model.safetensors").exists() or (ckpt.is_dir() and any(ckpt.iterdir())):
        return True
    log = d / "train_log.csv"
    try:
        with open(log) as f:
            return sum(1 for _ in f) > 1  # a header and at least one step
    except OSError:
        return False


# ------------------------------------------------------------------ state <-> tensors + JSON


def encode_state(obj: Any, tensors: dict[str, torch.Tensor], prefix: str = "s") -> Any:
    """JSON-able form of ``obj``; tensors are moved into ``tensors`` under unique keys."""
    if isinstance(obj, torch.Tensor):
        key = f"{prefix}"
        tensors[key] = obj.detach().to("cpu").contiguous().clone()
        return {"__tensor__": key}
    if isinstance(obj, np.ndarray):
        key = f"{prefix}"
        arr = np.ascontiguousarray(obj)
        if arr.dtype.kind == "u" and arr.dtype.itemsize > 1:  # torch lacks most unsigned types
            arr = arr.astype(np.int64)
        tensors[key] = torch.from_numpy(arr).clone()
        return {"__ndarray__": key, "dtype": str(obj.dtype)}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj) and not any(k.startswith("__") for k in obj):
            return {k: encode_state(v, tensors, f"{prefix}.{k}") for k, v in obj.items()}
        return {
            "__items__": [
                [_encode_key(k), encode_state(v, tensors, f"{prefix}.{i}")]
                for i, (k, v) in enumerate(obj.items())
            ]
        }
    if isinstance(obj, tuple):
        return {"__tuple__": [encode_state(v, tensors, f"{prefix}.{i}") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [encode_state(v, tensors, f"{prefix}.{i}") for i, v in enumerate(obj)]
    if isinstance(obj, (bool, int, float, str)) or obj is None:
        if isinstance(obj, float) and not np.isfinite(obj):
            return {"__float__": repr(obj)}
        return obj
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    raise TypeError(f"cannot store a {type(obj).__name__} in a training state")


def _encode_key(k: Any) -> Any:
    if isinstance(k, (bool, int, float, str)) or k is None:
        return k
    raise TypeError(f"cannot store a dict key of type {type(k).__name__} in a training state")


def decode_state(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of :func:`encode_state`."""
    if isinstance(obj, list):
        return [decode_state(v, tensors) for v in obj]
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__ndarray__" in obj:
            return tensors[obj["__ndarray__"]].numpy().astype(obj["dtype"], copy=False)
        if "__tuple__" in obj:
            return tuple(decode_state(v, tensors) for v in obj["__tuple__"])
        if "__items__" in obj:
            return {k: decode_state(v, tensors) for k, v in obj["__items__"]}
        if "__float__" in obj:
            return float(obj["__float__"])
        return {k: decode_state(v, tensors) for k, v in obj.items()}
    return obj


def save_state_file(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write a nested state (tensors anywhere inside) as one safetensors file, atomically."""
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}
    encoded = encode_state(state, tensors)
    metadata = {
        "format": STATE_FORMAT,
        "gblsr_version": __version__,
        "state": json.dumps(encoded),
    }
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def load_state_file(path: str | os.PathLike) -> dict[str, Any]:
    from safetensors import safe_open

    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"training state not found: {p}")
    try:
        with safe_open(str(p), framework="pt") as f:
            meta = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:
        raise CheckpointError(f"damaged training state {p}: {str(e).splitlines()[0]}") from None
    if meta.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{p} is not a gblsr training state")
    return decode_state(json.loads(meta["state"]), tensors)


# --------------------------------------------------------------------------- RNG


def capture_rng_state() -> dict[str, Any]:
    """Python, NumPy and torch (CPU + every CUDA device) random states."""
    version, internal, gauss = random.getstate()
    np_state = np.random.get_state()
    state = {
        "python": {"version": version, "internal": list(internal), "gauss": gauss},
        "numpy": {
            "name": np_state[0],
            "keys": np_state[1],
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
        "cuda": [],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss"]))
    n = state["numpy"]
    np.random.set_state(
        (
            n["name"],
            np.asarray(n["keys"], dtype=np.uint32),
            n["pos"],
            n["has_gauss"],
            n["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available():
        n_dev = min(len(cuda), torch.cuda.device_count())
        torch.cuda.set_rng_state_all(list(cuda)[:n_dev])


# --------------------------------------------------------------------------- checkpoints


class CheckpointManager:
    """The ``<run_dir>/checkpoints`` folder: atomic saves, the ``latest.json`` pointer, pruning."""

    def __init__(self, run_dir: str | os.PathLike, keep_last: int = 2):
        self.dir = Path(run_dir) / "checkpoints"
        self.keep_last = max(1, int(keep_last))

    def model_path(self, step: int) -> Path:
        return self.dir / f"step-{int(step):08d}.safetensors"

    def state_path(self, step: int) -> Path:
        return self.dir / f"step-{int(step):08d}.state.safetensors"

    def save(
        self,
        step: int,
        model: nn.Module,
        state: dict[str, Any],
        extra: dict[str, Any] | None = None,
    ) -> Path:
        """Write the model and the training state for ``step`` and move the pointer to them."""
        self.dir.mkdir(parents=True, exist_ok=True)
        mp = save_model(model, self.model_path(step), extra={"step": int(step), **(extra or {})})
        sp = save_state_file(self.state_path(step), {**state, "step": int(step)})
        write_json_atomic(
            self.dir / _LATEST, {"step": int(step), "model": mp.name, "state": sp.name}
        )
        self._prune(keep={mp.name, sp.name})
        return mp

    def _steps_on_disk(self) -> list[int]:
        if not self.dir.is_dir():
            return []
        steps = set()
        for p in self.dir.iterdir():
            m = re.fullmatch(r"step-(\d+)\.safetensors", p.name)
            if m and self.state_path(int(m.group(1))).is_file():
                steps.add(int(m.group(1)))
        return sorted(steps)

    def _prune(self, keep: set[str]) -> None:
        steps = self._steps_on_disk()
        for s in steps[: max(0, len(steps) - self.keep_last)]:
            for p in (self.model_path(s), self.state_path(s)):
                if p.name not in keep:
                    try:
                        p.unlink()
                    except FileNotFoundError:
                        pass
        # Temporary files of a write that was killed half-way.
        for p in self.dir.glob(".step-*.tmp"):
            try:
                p.unlink()
            except FileNotFoundError:
                pass

    def latest(self) -> tuple[int, Path, Path] | None:
        """(step, model file, state file) of the newest complete checkpoint, or None."""
        ptr = self.dir / _LATEST
        if ptr.is_file():
            try:
                d = json.loads(ptr.read_text())
                mp, sp = self.dir / d["model"], self.dir / d["state"]
                if mp.is_file() and sp.is_file():
                    return int(d["step"]), mp, sp
            except (ValueError, KeyError, TypeError):
                pass
        # No usable pointer (e.g. deleted by hand): the newest pair on disk.
        steps = self._steps_on_disk()
        if not steps:
            return None
        s = steps[-1]
        return s, self.model_path(s), self.state_path(s)

    def load_latest(self) -> tuple[int, dict[str, torch.Tensor], dict[str, Any]] | None:
        """(step, model state dict, training state) of the newest checkpoint, or None."""
        from ..checkpoint import read_checkpoint

        found = self.latest()
        if found is None:
            return None
        step, mp, sp = found
        sd, _info = read_checkpoint(mp)
        return step, sd, load_state_file(sp)
