"""Feature blobs: an encoded image on disk, decodable only by the model that made it.

A feature blob is a safetensors file:
    tensors  ``state.<name>``: what the model's ``encode_state`` returns (float32), ``alpha``
             (1, H, W) uint8 if the image had transparency
    metadata format "gblsr.features", gblsr_version, architecture, model_sha256 (fingerprint of
             the weights and config that made it), task, input_h, input_w, pad_info (JSON)

Tensors, metadata and the model are checked against each other before anything is decoded.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
import torch.nn as nn

from ._version import __version__
from .checkpoint import model_identity
from .data.image_io import to_uint8
from .errors import CheckpointError
from .fileio import atomic_write
from .inference import EncodedImage, _device_of
from .representation import SRModel

__all__ = ["FEATURES_FORMAT", "model_fingerprint", "save_features", "load_features"]

FEATURES_FORMAT = "gblsr.features"


def model_fingerprint(model: nn.Module) -> str:
    """sha256 over the architecture, its config and every weight: equal iff same model."""
    arch, config = model_identity(model)
    digest = hashlib.sha256(json.dumps([arch, config], sort_keys=True).encode())
    for name, t in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


def save_features(model: nn.Module, enc: EncodedImage, path: str | os.PathLike) -> Path:
    """Write a feature blob (atomically) that only this model will decode."""
    from safetensors.torch import save_file

    arch, _ = model_identity(model)
    tensors = {f"state.{k}": v.detach().cpu().contiguous() for k, v in enc.state.items()}
    if enc.alpha is not None:
        tensors["alpha"] = to_uint8(enc.alpha).contiguous()
    meta = {
        "format": FEATURES_FORMAT,
        "gblsr_version": __version__,
        "architecture": arch,
        "model_sha256": model_fingerprint(model),
        "task": enc.task,
        "input_h": str(enc.input_size[0]),
        "input_w": str(enc.input_size[1]),
        "pad_info": json.dumps(enc.pad_info),
    }
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))


def load_features(path: str | os.PathLike, model: nn.Module) -> EncodedImage:
    """Read a feature blob, refusing one written by another model."""
    from .checkpoint import read_checkpoint

    tensors, meta = read_checkpoint(path)
    name = Path(path).name
    state = {k[len("state.") :]: v.float() for k, v in tensors.items() if k.startswith("state.")}
    if meta.get("format") != FEATURES_FORMAT or not state:
        raise CheckpointError(f"{name} is not a gblsr feature blob (make one with gblsr-encode)")
    if meta.get("model_sha256") != model_fingerprint(model):
        raise CheckpointError(
            f"{name} was encoded by another model ({meta.get('architecture', '?')}, "
            f"fingerprint {meta.get('model_sha256', '?')[:12]}); decode it with that checkpoint"
        )
    try:
        size = (int(meta["input_h"]), int(meta["input_w"]))
        pad_info = json.loads(meta.get("pad_info", "null"))
    except (KeyError, ValueError):
        raise CheckpointError(f"damaged metadata in feature blob {name}") from None
    alpha = tensors.get("alpha")
    raw_state = {k[len("state.") :]: v for k, v in tensors.items() if k.startswith("state.")}
    _check_blob(model, raw_state, size, meta.get("task", ""), alpha, name)
    return EncodedImage(
        state=state,
        input_size=size,
        task=meta.get("task", ""),
        pad_info=pad_info,
        alpha=None if alpha is None else alpha.float() / 255.0,
        meta=meta,
    )


# Probe input for checking a blob's tensors against what the model's encoder makes.
_PROBE = (16, 24)


def _check_blob(
    model: nn.Module,
    state: dict[str, torch.Tensor],
    size: tuple[int, int],
    task: str,
    alpha: torch.Tensor | None,
    name: str,
) -> None:
    """A feature blob's metadata, tensors and model checked against each other before use:
    the task, the claimed input size, the state tensors' names, dtypes, channels and spatial
    sizes (against the model's own encoding of a small probe image), the alpha plane."""

    def bad(why: str) -> CheckpointError:
        return CheckpointError(f"damaged feature blob {name}: {why}")

    h, w = size
    if not (1 <= h <= 1 << 20 and 1 <= w <= 1 << 20):
        raise bad(f"input size {h}x{w} is out of range")
    own_task = getattr(model, "task", None)
    if task != own_task:
        raise bad(f"task {task!r}, but the model's is {own_task!r}")
    for k, v in state.items():
        if not v.is_floating_point():
            raise bad(f"state.{k} has dtype {v.dtype}, not floating point")
    if alpha is not None and (alpha.dtype != torch.uint8 or tuple(alpha.shape) != (1, h, w)):
        raise bad(
            f"alpha is {tuple(alpha.shape)} {alpha.dtype}, expected (1, {h}, {w}) uint8 for the "
            f"claimed {h}x{w} input"
        )
    if not isinstance(model, SRModel):
        feat = state.get("features")
        if feat is None or feat.dim() != 4 or feat.shape[0] != 1:
            raise bad("a native blob holds one (1, D, nH, nW) features tensor")
        if feat.shape[2] > h or feat.shape[3] > w:
            raise bad(f"features {tuple(feat.shape)} exceed the claimed {h}x{w} input")
        return
    ph, pw = _PROBE
    with torch.no_grad():
        probe = model.encode_state(torch.zeros(1, 3, ph, pw, device=_device_of(model)))
    if set(probe) != set(state):
        raise bad(f"holds {sorted(state)}, the model encodes {sorted(probe)}")
    for k, ref in probe.items():
        got = state[k]
        shape = f"state.{k} {tuple(got.shape)}"
        if got.dim() != ref.dim():
            raise bad(f"{shape} has {got.dim()} dimensions, the model makes {ref.dim()}")
        if ref.dim() < 3:
            if got.shape != ref.shape:
                raise bad(f"{shape}, the model makes {tuple(ref.shape)}")
            continue
        if tuple(got.shape[:-2]) != tuple(ref.shape[:-2]):
            raise bad(f"{shape}: the model makes {tuple(ref.shape[:-2])} leading (channels)")
        # Spatial sizes scale with the input as in the probe (to within rounding and padding).
        for n_in, n_probe, n_ref, n_got in zip(
            (h, w), (ph, pw), ref.shape[-2:], got.shape[-2:], strict=True
        ):
            expect = n_in * n_ref / n_probe
            if abs(n_got - expect) > max(2.0, n_ref / n_probe * 2):
                raise bad(
                    f"{shape} does not fit the claimed {h}x{w} input (expected about "
                    f"{round(expect)} for this axis)"
                )
