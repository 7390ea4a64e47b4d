"""Atomic file output: every file gblsr writes goes through :func:`atomic_write`.

A file is written under a temporary name beside its target and renamed into place, so a reader
(or a resumed run) sees either the old file or the complete new one, never a torn one.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import ImageError

__all__ = ["atomic_write", "write_json_atomic", "write_text_atomic"]


def atomic_write(path: str | os.PathLike, write_fn: Callable[[str], Any]) -> Path:
    """Call ``write_fn(tmp_path)`` on a temporary file beside ``path``, then rename it into place.

    The rename is atomic on POSIX and Windows, so readers see either the old file or the complete
    new one. On any failure (a full disk, an interrupt) the temporary file is removed and the
    target is left untouched.
    """
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.exists():
        raise ImageError(f"output folder does not exist: {folder}")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        write_fn(tmp)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return target


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def write_json_atomic(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON (non-JSON values via ``str``) atomically."""
    text = json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n"
    return write_text_atomic(path, text)
