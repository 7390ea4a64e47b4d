"""The one wrapper every command body runs in: user mistakes and environment failures become one
line on stderr and exit code 2, interrupts 130 / 143, and temporary files are removed on the way
out."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator

import torch

from ..errors import UserInputError

__all__ = ["EXIT_USER_ERROR", "run_main"]

EXIT_USER_ERROR = 2


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
