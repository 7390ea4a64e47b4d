"""What every command shares: loading a model, choosing a device, turning user mistakes into one
line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Iterator

from ..encoder_tiles import DEFAULT_ENCODER_OVERLAP
from ..inference import parse_bytes
from ..runtime import resolve_device
from ._model import add_model_args, checkpoint_or_default, load_model_from_args
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


def add_encoder_tiling_args(p: argparse.ArgumentParser, max_memory: bool = False) -> None:
    """--encoder-tile / --encoder-overlap (and, for commands that only encode, --max-memory)."""
    if max_memory:
        p.add_argument(
            "--max-memory",
            default="1G",
            metavar="SIZE",
            help="working memory for the encoder, beyond the model and the encoded map (e.g. "
            "512M, 4G; default 1G); a larger input is encoded in tiles",
        )
    p.add_argument(
        "--encoder-tile",
        type=int,
        metavar="PIXELS",
        help="run the encoder on tiles of this many input pixels a side (default: the whole "
        "image, or tiles chosen automatically when it would not fit --max-memory)",
    )
    p.add_argument(
        "--encoder-overlap",
        type=int,
        default=DEFAULT_ENCODER_OVERLAP,
        metavar="PIXELS",
        help="input pixels of context around each encoder tile (default "
        f"{DEFAULT_ENCODER_OVERLAP}; a convolutional encoder is exact once it covers its "
        "receptive field)",
    )


def stderr_line(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


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
