"""gblsr-measure-latency: time a model under the fixed latency protocol and print JSON.

The protocol (gblsr.latency): eval mode, no autocast, 10 warm-up then 50 timed passes on a random
input, CUDA events on CUDA and perf_counter on the CPU; median, mean, population std, p90 and
p95 in milliseconds; peak memory (CUDA: max allocated; CPU: peak resident set size of this
process). Native models are timed on forward(x) at the input size; arbitrary-scale models on
predict_full(x, round(S*H), round(S*W)), encoder included. --compile and --cuda-graphs time
variants outside the protocol; the JSON says so ("protocol": false).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys

import torch

from ..errors import UserInputError
from ._common import (
    add_device_arg,
    add_model_args,
    load_model_from_args,
    positive_float,
    resolve_device,
    run_main,
)

PROG = "gblsr-measure-latency"


def _nonneg_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {v}")
    return v


def _pos_int(text: str) -> int:
    v = _nonneg_int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        usage="%(prog)s --checkpoint FILE [--size HxW] [--scale S] [--device cpu|cuda] [options]",
        description=__doc__.splitlines()[0],
    )
    add_model_args(p, required=False)
    p.add_argument(
        "--size",
        help="input (low-resolution) size HxW (default: the model's image_size for native "
        "models, 64x64 for arbitrary-scale models)",
    )
    p.add_argument("--height", type=_pos_int, help="input height (overrides --size)")
    p.add_argument("--width", type=_pos_int, help="input width (overrides --size)")
    p.add_argument(
        "--scale",
        type=positive_float,
        help="arbitrary-scale models: output round(S*H) x round(S*W) (default 4)",
    )
    p.add_argument("--batch", type=_pos_int, default=1, help="batch size (default 1)")
    add_device_arg(p)
    p.add_argument("--warmup", type=_nonneg_int, default=10, help="warm-up passes (default 10)")
    p.add_argument("--timed", type=_pos_int, default=50, help="timed passes (default 50)")
    p.add_argument(
        "--no-peak-memory", action="store_true", help="do not track peak memory (CUDA or RSS)"
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="time torch.compile(model) instead of eager execution (not the protocol)",
    )
    p.add_argument(
        "--compile-mode",
        default=None,
        help="torch.compile mode, e.g. reduce-overhead or max-autotune (with --compile)",
    )
    p.add_argument(
        "--compile-backend",
        default=None,
        help="torch.compile backend (default: inductor; 'eager' only traces, for debugging)",
    )
    p.add_argument(
        "--cuda-graphs",
        action="store_true",
        help="CUDA only: capture one pass into a CUDA graph and time its replays (not the "
        "protocol)",
    )
    p.add_argument("--threads", type=_pos_int, help="CPU threads for torch (default: torch's)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random input (default 0)")
    p.add_argument("--output", help="also write the JSON to this file")
    p.add_argument(
        "--per-pass",
        action="store_true",
        help="include every timed pass (sorted, ms) in the JSON",
    )
    return p


def _input_size(args: argparse.Namespace, model) -> tuple[int, int]:
    from ..inference import parse_size

    if args.size:
        h, w = parse_size(args.size)
    elif getattr(model, "task", None) == "sr":
        h, w = 64, 64
    else:
        n = int(getattr(getattr(model, "cfg", None), "image_size", 256))
        h, w = n, n
    return (args.height or h), (args.width or w)


def _load(args: argparse.Namespace, device: torch.device):
    if args.checkpoint:
        return load_model_from_args(args, device)
    if not args.config:
        raise UserInputError("give --checkpoint FILE (or --config YAML to time random weights)")
    from ..checkpoint import _model_from_config_file
    from ..registry import create_model

    arch, cfg = _model_from_config_file(args.config, args.arm_index)
    return create_model(arch, **cfg).to(device).eval()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> int:
        from ..latency import LatencyConfig, measure_latency

        device = resolve_device(args.device)
        if args.cuda_graphs and device.type != "cuda":
            raise UserInputError("--cuda-graphs needs --device cuda")
        if (args.compile_mode or args.compile_backend) and not args.compile:
            raise UserInputError("--compile-mode and --compile-backend need --compile")
        if args.threads:
            torch.set_num_threads(args.threads)
        model = _load(args, device)
        model.eval()
        h, w = _input_size(args, model)
        task = getattr(model, "task", None)
        gen = torch.Generator().manual_seed(args.seed)
        x = torch.rand(args.batch, 3, h, w, generator=gen).to(device)

        run = None
        out_hw = (h, w)
        if task == "sr":
            scale = args.scale if args.scale is not None else 4.0
            out_hw = (round(scale * h), round(scale * w))
            if min(out_hw) < 1:
                raise UserInputError(f"scale {scale} turns a {h}x{w} input into an empty output")

            def run(t: torch.Tensor) -> torch.Tensor:
                return model.predict_full(t, *out_hw)

        else:
            if args.scale is not None and args.scale != 1:
                raise UserInputError(
                    "a native reconstruction model renders at the input size; --scale is for "
                    "arbitrary-scale models"
                )
            n = getattr(getattr(model, "cfg", None), "image_size", None)
            if type(model).__name__ == "BaselineArm" and (h, w) != (n, n):
                raise UserInputError(f"this model is shape-locked to {n}x{n} inputs")

        cfg = LatencyConfig(
            n_warmup=args.warmup,
            n_timed=args.timed,
            compile=args.compile,
            compile_mode=args.compile_mode,
            compile_backend=args.compile_backend,
            cuda_graphs=args.cuda_graphs,
        )
        res = measure_latency(model, x, cfg, track_peak_memory=not args.no_peak_memory, run=run)

        report = {
            "model": getattr(model, "registry_name", type(model).__name__),
            "task": task,
            "params": sum(p.numel() for p in model.parameters()),
            "device": str(device),
            "device_name": (
                torch.cuda.get_device_name(device)
                if device.type == "cuda"
                else platform.processor()
            )
            or platform.machine(),
            "threads": torch.get_num_threads() if device.type == "cpu" else None,
            "dtype": "float32",
            "input_shape": [args.batch, 3, h, w],
            "output_shape": [args.batch, 3, *out_hw],
            "scale": (args.scale if args.scale is not None else 4.0) if task == "sr" else None,
            "protocol": cfg.is_protocol,
            "n_warmup": cfg.n_warmup,
            "n_timed": cfg.n_timed,
            "compile": cfg.compile,
            "compile_mode": cfg.compile_mode,
            "compile_backend": cfg.compile_backend,
            "cuda_graphs": cfg.cuda_graphs,
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
        if args.per_pass:
            report["per_image_times_ms"] = res.per_image_times_ms
        text = json.dumps(report, indent=2)
        print(text)
        if args.output:
            from ..fileio import atomic_write

            def _write(tmp: str) -> None:
                with open(tmp, "w") as f:
                    f.write(text + "\n")

            atomic_write(args.output, _write)
        return 0

    return run_main(PROG, body)


if __name__ == "__main__":
    sys.exit(main())
