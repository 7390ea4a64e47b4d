"""The model every command runs: --checkpoint / --config / --arm-index, and the built-in default
model when no checkpoint is given."""

from __future__ import annotations

import argparse
import sys

import torch

__all__ = ["add_model_args", "checkpoint_or_default", "load_model_from_args"]


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
