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
import sys

import torch

from ..errors import UserInputError
from ..fileio import check_output_path, write_text_atomic
from ._common import (
    add_device_arg,
    add_model_args,
    checkpoint_or_default,
    nonneg_int,
    positive_float,
    positive_int,
    resolve_device,
    run_main,
)
from ._types import ArgumentParser

PROG = "gblsr-measure-latency"


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
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
    p.add_argument("--height", type=positive_int, help="input height (overrides --size)")
    p.add_argument("--width", type=positive_int, help="input width (overrides --size)")
    p.add_argument(
        "--scale",
        type=positive_float,
        help="arbitrary-scale models: output round(S*H) x round(S*W) (default 4)",
    )
    p.add_argument("--batch", type=positive_int, default=1, help="batch size (default 1)")
    add_device_arg(p)
    p.add_argument("--warmup", type=nonneg_int, default=10, help="warm-up passes (default 10)")
    p.add_argument("--timed", type=positive_int, default=50, help="timed passes (default 50)")
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
    p.add_argument("--threads", type=positive_int, help="CPU threads for torch (default: torch's)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random input (default 0)")
    p.add_argument("--output", help="also write the JSON to this file")
    p.add_argument(
        "--per-pass",
        action="store_true",
        help="include every timed pass (sorted, ms) in the JSON",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()

    def body() -> int:
        args = parser.parse_args(argv)
        from ..inference import parse_size
        from ..latency import LatencyConfig, latency_report, load_for_latency

        device = resolve_device(args.device)
        if args.cuda_graphs and device.type != "cuda":
            raise UserInputError("--cuda-graphs needs --device cuda")
        if (args.compile_mode or args.compile_backend) and not args.compile:
            raise UserInputError("--compile-mode and --compile-backend need --compile")
        if args.threads:
            torch.set_num_threads(args.threads)
        if args.output:  # refused before the (long) measurement
            check_output_path(args.output)
        path = checkpoint_or_default(args, PROG)
        model = load_for_latency(path, args.config, args.arm_index, device)
        h, w = parse_size(args.size) if args.size else (None, None)
        cfg = LatencyConfig(
            n_warmup=args.warmup,
            n_timed=args.timed,
            compile=args.compile,
            compile_mode=args.compile_mode,
            compile_backend=args.compile_backend,
            cuda_graphs=args.cuda_graphs,
        )
        report = latency_report(
            model,
            device,
            cfg,
            height=args.height or h,
            width=args.width or w,
            scale=args.scale,
            batch=args.batch,
            seed=args.seed,
            track_peak_memory=not args.no_peak_memory,
            per_pass=args.per_pass,
        )
        text = json.dumps(report, indent=2)
        print(text)
        if args.output:
            write_text_atomic(args.output, text + "\n")
        return 0

    return run_main(PROG, body)


if __name__ == "__main__":
    sys.exit(main())
