"""What every command shares: loading a model, choosing a device, turning user mistakes into one
line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Iterator

import torch

from ..inference import parse_bytes
from ..runtime import resolve_device
from ._run import EXIT_USER_ERROR, run_main
from ._types import (
    ArgumentParser,
    nonneg_int,
    positive_float,
    positive_int,
    scale_factor,
)

__all__ = [
    "EXIT_USER_ERROR",
    "add_model_args",
    "add_device_arg",
    "add_output_size_args",
    "add_render_args",
    "parse_bytes",
    "resolve_device",
    "load_model_from_args",
    "checkpoint_or_default",
    "positive_float",
    "positive_int",
    "nonneg_int",
    "scale_factor",
    "ArgumentParser",
    "run_main",
    "progress_bar",
]


def add_output_size_args(p: argparse.ArgumentParser) -> None:
    """--scale S | --size HxW, for arbitrary-scale models."""
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--scale",
        type=positive_float,
        help="arbitrary-scale models: any real factor > 0, e.g. 3.7; the output is "
        "round(S*H) x round(S*W) (Python rounding: halves go to the even integer, as in LIIF)",
    )
    g.add_argument("--size", help="arbitrary-scale models: exact output size HxW, e.g. 947x947")


def add_device_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--device",
        default="auto",
        help="auto (CUDA when available, else CPU), cpu, cuda or cuda:N (default: auto)",
    )


def add_render_args(p: argparse.ArgumentParser) -> None:
    """--max-memory / --tile: how arbitrary-scale models render large outputs."""
    p.add_argument(
        "--max-memory",
        default="1G",
        metavar="SIZE",
        help="working memory for rendering, beyond the model and its coefficient map (e.g. "
        "512M, 4G; default 1G). Outputs are rendered in bands of rows within it; PNG outputs "
        "are compressed band by band, so their size is not limited by memory",
    )
    p.add_argument(
        "--tile",
        type=int,
        metavar="PIXELS",
        help="at most this many output pixels per band (default: as many as --max-memory allows)",
    )


def add_model_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    """--checkpoint / --config / --arm-index. Without --checkpoint a command that needs a model
    (``required``) uses the built-in default model (see :func:`checkpoint_or_default`)."""
    default = " (default: the built-in default model)" if required else ""
    p.add_argument(
        "--checkpoint",
        help="model file: gblsr safetensors (self-describing), an official or reference "
        f"checkpoint{default}",
    )
    p.add_argument(
        "--config",
        help="RunConfig YAML of a reference native checkpoint, or a model YAML "
        "(model: NAME, args: {...}); not needed for gblsr files",
    )
    p.add_argument(
        "--arm-index",
        type=int,
        default=0,
        help="with a RunConfig YAML: which (arm, seed) run, in arms x seeds order (default 0)",
    )


def checkpoint_or_default(args: argparse.Namespace, prog: str) -> str:
    """``--checkpoint``, or the built-in default model, said in one line on stderr."""
    if args.checkpoint:
        return args.checkpoint
    print(
        f"{prog}: no --checkpoint given: using the built-in default model (docs/default-model.md)",
        file=sys.stderr,
    )
    return "default"


def load_model_from_args(args: argparse.Namespace, device: torch.device, prog: str = "gblsr"):
    from ..checkpoint import load_model

    path = checkpoint_or_default(args, prog)
    return load_model(path, device=device, config=args.config, arm_index=args.arm_index)


@contextlib.contextmanager
def progress_bar(prog: str) -> Iterator[Callable[[], object] | None]:
    """A tqdm counter on a terminal's stderr (yields its ``update``), nothing elsewhere."""
    if not sys.stderr.isatty():
        yield None
        return
    from tqdm import tqdm

    bar = tqdm(desc=prog, unit="img", file=sys.stderr, leave=False)
    try:
        yield bar.update
    finally:
        bar.close()
