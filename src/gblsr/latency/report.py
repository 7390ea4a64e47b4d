"""One latency measurement of a model as a JSON-able report (what ``gblsr-measure-latency``
prints): the protocol's numbers plus what was measured, on what."""

from __future__ import annotations

import os
import platform
from typing import Any

import torch
import torch.nn as nn

from ..checkpoint import _model_from_config_file, load_model
from ..errors import UserInputError
from ..registry import create_model
from ..representation import SRModel
from .protocol import LatencyConfig, measure_latency

__all__ = ["load_for_latency", "latency_report"]


def load_for_latency(
    checkpoint: str | os.PathLike | None,
    config: str | os.PathLike | None,
    arm_index: int,
    device: torch.device,
) -> nn.Module:
    """The model to time: a checkpoint, or random weights of the architecture ``config``
    describes."""
    if checkpoint:
        return load_model(checkpoint, device=device, config=config, arm_index=arm_index)
    if not config:
        raise UserInputError("give --checkpoint FILE (or --config YAML to time random weights)")
    arch, cfg = _model_from_config_file(config, arm_index)
    return create_model(arch, **cfg).to(device).eval()


def _default_input(model: nn.Module) -> tuple[int, int]:
    if isinstance(model, SRModel):
        return 64, 64
    n = int(getattr(getattr(model, "cfg", None), "image_size", 256))
    return n, n


def _check_fits(h: int, w: int, batch: int, scale: float | None, device: torch.device) -> None:
    """Refuse, before allocating, an input (and, for SR, a whole output) that cannot fit."""
    from ..feasibility import check_tensor_memory

    if h > 1 << 20 or w > 1 << 20:
        raise UserInputError(f"input size {h}x{w} is out of range (at most 1048576 a side)")
    inp = 4 * batch * 3 * h * w
    check_tensor_memory(f"a {batch}x3x{h}x{w} input", inp, "cpu", size=(h, w))
    if scale is not None:
        H, W = round(scale * h), round(scale * w)
        need = inp + 4 * batch * 3 * H * W  # predict_full returns the whole output
        check_tensor_memory(
            f"a {H}x{W} output (with its {h}x{w} input)",
            need,
            device,
            "or use a smaller --scale",
            size=(h, w),
        )


def latency_report(
    model: nn.Module,
    device: torch.device,
    config: LatencyConfig,
    *,
    height: int | None = None,
    width: int | None = None,
    scale: float | None = None,
    batch: int = 1,
    seed: int = 0,
    track_peak_memory: bool = True,
    per_pass: bool = False,
) -> dict[str, Any]:
    """Time ``model`` under ``config`` on a seeded random input (B, 3, H, W): arbitrary-scale
    models on ``predict_full`` at round(scale * size) (scale default 4), native models on
    ``forward`` at the input size (default: the model's image_size, 64x64 for SR)."""
    model.eval()
    dh, dw = _default_input(model)
    h, w = height or dh, width or dw
    sr = isinstance(model, SRModel)
    _check_fits(h, w, batch, (4.0 if scale is None else scale) if sr else None, device)
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, 3, h, w, generator=gen).to(device)
    run, out_hw = None, (h, w)
    if sr:
        scale = 4.0 if scale is None else scale
        out_hw = (round(scale * h), round(scale * w))
        if min(out_hw) < 1:
            raise UserInputError(f"scale {scale} turns a {h}x{w} input into an empty output")

        def run(t: torch.Tensor) -> torch.Tensor:
            return model.predict_full(t, *out_hw)

    else:
        if scale is not None and scale != 1:
            raise UserInputError(
                "a native reconstruction model renders at the input size; --scale is for "
                "arbitrary-scale models"
            )
        n = getattr(getattr(model, "cfg", None), "image_size", None)
        if type(model).__name__ == "BaselineArm" and (h, w) != (n, n):
            raise UserInputError(f"this model is shape-locked to {n}x{n} inputs")
    res = measure_latency(model, x, config, track_peak_memory=track_peak_memory, run=run)
    cuda = device.type == "cuda"
    report = {
        "model": getattr(model, "registry_name", type(model).__name__),
        "task": getattr(model, "task", None),
        "params": sum(p.numel() for p in model.parameters()),
        "device": str(device),
        "device_name": (torch.cuda.get_device_name(device) if cuda else platform.processor())
        or platform.machine(),
        "threads": None if cuda else torch.get_num_threads(),
        "dtype": "float32",
        "input_shape": [batch, 3, h, w],
        "output_shape": [batch, 3, *out_hw],
        "scale": scale if sr else None,
        "protocol": config.is_protocol,
        "n_warmup": config.n_warmup,
        "n_timed": config.n_timed,
        "compile": config.compile,
        "compile_mode": config.compile_mode,
        "compile_backend": config.compile_backend,
        "cuda_graphs": config.cuda_graphs,
        "median_ms": res.median_ms,
        "mean_ms": res.mean_ms,
        "std_ms": res.std_ms,
        "p90_ms": res.p90_ms,
        "p95_ms": res.p95_ms,
        "first_call_ms": res.first_call_ms,
        "peak_memory_mb": res.peak_memory_mb,
        "peak_memory_kind": res.peak_memory_kind,
        "torch_version": torch.__version__,
    }
    if per_pass:
        report["per_image_times_ms"] = res.per_image_times_ms
    return report
