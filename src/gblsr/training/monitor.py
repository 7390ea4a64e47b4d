"""What a training run reports: messages, progress bars, CSV logs, optional TensorBoard.

* Messages go to stderr (stdout is kept for the final checkpoint path, see ``gblsr-train``).
* A progress bar (tqdm) is shown when stderr is a terminal (``progress: auto``), otherwise one
  line every ``log_every`` steps.
* CSV logs are always written (``train_log.csv``, ``val_log.csv``); on resume, rows after the
  checkpoint's step are dropped so the log has no repeated steps.
* TensorBoard event files are written under ``<run_dir>/tensorboard`` when the ``tensorboard``
  package is installed (``tensorboard: auto``); nothing breaks when it is not.
"""

from __future__ import annotations

import csv
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..fileio import atomic_write, output_error

__all__ = ["Console", "CSVLog", "TensorBoardLog", "Progress", "has_tensorboard"]


class Console:
    """Prefixed messages on stderr, from the main process only."""

    def __init__(self, prefix: str = "", enabled: bool = True):
        self.prefix = prefix
        self.enabled = enabled

    def __call__(self, text: str) -> None:
        if self.enabled:
            p = f"[{self.prefix}] " if self.prefix else ""
            print(f"{p}{text}", file=sys.stderr, flush=True)


class CSVLog:
    """Append rows to a CSV file; keeps rows with ``step <= resume_step`` of an existing log."""

    def __init__(self, path: str | os.PathLike, fields: Sequence[str], resume_step: int | None):
        self.path = Path(path)
        self.fields = list(fields)
        kept: list[dict[str, str]] = []
        if resume_step is not None and self.path.is_file():
            with open(self.path, newline="") as f:
                for row in csv.DictReader(f):
                    try:
                        if int(float(row.get("step", "0"))) <= resume_step:
                            kept.append(row)
                    except ValueError:
                        continue

        # The kept rows are rewritten atomically (an interrupt here loses nothing), then the
        # log grows by appending.
        def rewrite(tmp: str) -> None:
            with open(tmp, "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=self.fields, extrasaction="ignore")
                w.writeheader()
                for row in kept:
                    w.writerow({k: row.get(k, "") for k in self.fields})

        atomic_write(self.path, rewrite)
        self._f = open(self.path, "a", newline="")
        self._w = csv.DictWriter(self._f, fieldnames=self.fields, extrasaction="ignore")

    def write(self, row: dict[str, Any]) -> None:
        try:
            self._w.writerow({k: _fmt(row.get(k)) for k in self.fields})
            self._f.flush()
        except OSError as e:  # a full disk mid-run: one line naming the log
            err = output_error(self.path, e)
            if err is None:
                raise
            raise err from None

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()


def _fmt(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else str(v)
    return v


def has_tensorboard() -> bool:
    try:
        import tensorboard  # noqa: F401
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except Exception:
        return False
    return True


class TensorBoardLog:
    """Scalars to TensorBoard when available (``enabled`` "auto", True or False)."""

    def __init__(
        self,
        log_dir: str | os.PathLike,
        enabled: Any,
        resume_step: int | None,
        console: Console | None = None,
    ):
        self.writer = None
        want = enabled if isinstance(enabled, bool) else str(enabled).lower() != "false"
        if not want:
            return
        if not has_tensorboard():
            if enabled is True and console is not None:
                console(
                    "tensorboard is not installed; skipping event files (pip install tensorboard)"
                )
            return
        from torch.utils.tensorboard import SummaryWriter

        kw = {"purge_step": resume_step + 1} if resume_step is not None else {}
        self.writer = SummaryWriter(log_dir=str(log_dir), **kw)

    def scalars(self, step: int, values: dict[str, Any], prefix: str = "") -> None:
        if self.writer is None:
            return
        for k, v in values.items():
            if isinstance(v, (int, float)) and v is not None and math.isfinite(float(v)):
                self.writer.add_scalar(f"{prefix}{k}", float(v), step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()
            self.writer = None


class Progress:
    """A tqdm bar on an interactive stderr (or when forced); a no-op otherwise."""

    def __init__(
        self,
        total: int,
        initial: int,
        mode: Any = "auto",
        desc: str = "train",
        enabled: bool = True,
    ):
        self.bar = None
        if not enabled:
            return
        mode = str(mode).lower()
        show = mode in ("true", "1", "yes", "on") or (
            mode == "auto" and hasattr(sys.stderr, "isatty") and sys.stderr.isatty()
        )
        if not show:
            return
        try:
            from tqdm.auto import tqdm
        except ImportError:  # tqdm is a dependency, but a bar is never worth a crash
            return
        self.bar = tqdm(
            total=total,
            initial=initial,
            desc=desc,
            unit="step",
            dynamic_ncols=True,
            file=sys.stderr,
        )

    @property
    def active(self) -> bool:
        return self.bar is not None

    def update(self, n: int = 1, **postfix: Any) -> None:
        if self.bar is not None:
            self.bar.update(n)
            if postfix:
                self.bar.set_postfix(postfix, refresh=False)

    def write(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
