"""What every command shares: loading a model, choosing a device, turning user mistakes into one
line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator

import torch

from ..encoder_tiles import DEFAULT_ENCODER_OVERLAP
from ..errors import UserInputError
from ..inference import parse_bytes
from ..runtime import resolve_device
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
    "positive_float",
    "positive_int",
    "nonneg_int",
    "scale_factor",
    "ArgumentParser",
    "run_main",
    "progress_bar",
]

EXIT_USER_ERROR = 2


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


def add_model_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument(
        "--checkpoint",
        required=required,
        help="model file: gblsr safetensors (self-describing), or a reference .pt/.safetensors "
        "state dict",
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


def load_model_from_args(args: argparse.Namespace, device: torch.device):
    from ..checkpoint import load_model

    return load_model(args.checkpoint, device=device, config=args.config, arm_index=args.arm_index)


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


def run_main(prog: str, body: Callable[[], int], interrupted_hint: str = "") -> int:
    """Run a command body; user mistakes become ``prog: error: ...`` and exit code 2, an
    interrupt ``prog: interrupted`` and 130 (``terminated`` and 143 for SIGTERM), each one line.

    SIGINT and SIGTERM raise (see :func:`gblsr.fileio.raise_on_signal`) while the body runs, so
    every temporary file is removed on the way out.
    """
    with _signals_raise():
        try:
            return body()
        except UserInputError as e:
            _say(f"{prog}: error: {_one_line(e)}")
            return EXIT_USER_ERROR
        except KeyboardInterrupt as e:
            code = getattr(e, "exit_code", 130)
            word = "terminated" if code == 128 + signal.SIGTERM else "interrupted"
            _say(f"{prog}: {word}{interrupted_hint}")
            return code
        except torch.cuda.OutOfMemoryError:
            _say(f"{prog}: error: out of GPU memory; try --device cpu or a smaller --tile")
            return 1
        except MemoryError:
            _say(f"{prog}: error: out of memory; try a smaller --tile or --max-memory")
            return 1
        except OSError as e:
            # A full disk, a read-only folder: the user's environment, not a bug.
            where = e.filename or ""
            _say(f"{prog}: error: {e.strerror or _one_line(e)}: {where}".rstrip(": "))
            return EXIT_USER_ERROR


def _one_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return " ".join(line.strip() for line in lines) if lines else type(e).__name__


def _say(line: str) -> None:
    try:
        print(line, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


@contextlib.contextmanager
def _signals_raise() -> Iterator[None]:
    """SIGINT / SIGTERM raise :class:`gblsr.fileio.Interrupted` in the main thread, unless a
    handler other than the defaults is installed already (the console-script launcher's)."""
    from ..fileio import raise_on_signal

    old = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            current = signal.getsignal(sig)
            if current in (signal.SIG_DFL, signal.default_int_handler):
                old[sig] = signal.signal(sig, raise_on_signal)
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
