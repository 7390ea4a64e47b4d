"""Console-script entry points of the gblsr commands.

``gblsr-reconstruct`` and its siblings start here, not in :mod:`gblsr.cli`: importing anything
inside the ``gblsr`` package loads torch and every method first (seconds), and a Ctrl-C or a
SIGTERM in those seconds would print a long traceback. This module imports only the standard
library, installs handlers that turn SIGINT / SIGTERM into an exception (so that cleanup code
and temporary files are handled on the way out), then imports the command and runs it. However
early the signal arrives, the command prints one line and exits with 130 (SIGINT) or 143
(SIGTERM).
"""

from __future__ import annotations

import importlib
import os
import signal
import sys

__all__ = ["MODULES", "run"]

# console-script function -> (program name, module whose main(argv=None) -> int runs it).
MODULES: dict[str, tuple[str, str]] = {
    "gblsr": ("gblsr", "gblsr.cli.main"),
    "train": ("gblsr-train", "gblsr.cli.train"),
    "eval": ("gblsr-eval", "gblsr.cli.eval"),
    "measure_latency": ("gblsr-measure-latency", "gblsr.cli.latency"),
    "reconstruct": ("gblsr-reconstruct", "gblsr.cli.reconstruct"),
    "encode": ("gblsr-encode", "gblsr.cli.encode"),
    "decode": ("gblsr-decode", "gblsr.cli.decode"),
    "convert": ("gblsr-convert", "gblsr.cli.convert"),
    "cmsr": ("gblsr-cmsr", "gblsr.cli.cmsr"),
    "view": ("gblsr-view", "gblsr.cli.view"),
    "study": ("gblsr-study", "gblsr.cli.study"),
}


class _Signalled(KeyboardInterrupt):
    """What the handler raises; duck-types :class:`gblsr.fileio.Interrupted` (``exit_code``),
    which cannot be imported here without loading torch."""

    def __init__(self, signum: int):
        self.signum = int(signum)
        self.exit_code = 128 + self.signum
        super().__init__("terminated" if self.signum == signal.SIGTERM else "interrupted")


_received: list[int] = []


def _handler(signum, frame):
    # The first signal raises; later ones (while cleanup runs) are noted and ignored, so the
    # cleanup that the first one started can finish.
    _received.append(signum)
    if len(_received) == 1:
        raise _Signalled(signum)


def _exit_now(signum, frame):
    # After the command returned: nothing left to clean up, so leave at once and quietly.
    os._exit(128 + signum)


def run(name: str) -> int:
    """Install the signal handlers, import the command ``name`` (a key of :data:`MODULES`)
    and run it; returns its exit code."""
    prog, module = MODULES[name]
    try:
        # Inside the try: a signal right after its handler is installed is caught below too.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, _handler)
        if name in _PASSIVE or (name == "gblsr" and sys.argv[1:2] and sys.argv[1] in _PASSIVE):
            _passive_openmp()
        code = importlib.import_module(module).main()
    except KeyboardInterrupt as e:
        code = getattr(e, "exit_code", 130)
        word = "terminated" if code == 128 + signal.SIGTERM else "interrupted"
        _say(f"{prog}: {word}")
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _exit_now)
    if _received and not code:
        code = 128 + _received[0]
    return code


def _say(line: str) -> None:
    try:
        print(line, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


# Commands that do long CPU work (not measure-latency, whose protocol keeps torch's defaults).
_PASSIVE = frozenset({"train", "eval", "reconstruct", "encode", "decode", "study"})


def _passive_openmp() -> None:
    """OpenMP threads busy-wait by default, which slows work several times on a CPU shared with
    other work (training; rendering a 64-row band of a 16384-wide ContinuousSR output on 2
    busy cores: 6-7 s with busy-waiting, 0.6-0.8 s without); the policy is read when torch
    loads OpenMP, which has not happened yet here. Set OMP_WAIT_POLICY yourself (e.g. ACTIVE)
    to keep another policy; torchrun workers are left alone."""
    if not os.environ.get("OMP_WAIT_POLICY") and "WORLD_SIZE" not in os.environ:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"


def gblsr() -> int:
    return run("gblsr")


def train() -> int:
    return run("train")


def eval() -> int:  # noqa: A001 - the command is called eval
    return run("eval")


def measure_latency() -> int:
    return run("measure_latency")


def reconstruct() -> int:
    return run("reconstruct")


def encode() -> int:
    return run("encode")


def decode() -> int:
    return run("decode")


def convert() -> int:
    return run("convert")


def cmsr() -> int:
    return run("cmsr")


def view() -> int:
    return run("view")


def study() -> int:
    return run("study")
