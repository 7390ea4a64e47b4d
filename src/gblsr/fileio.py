"""Atomic file output: every file gblsr writes goes through :func:`atomic_write`.

A file is written under a temporary name beside its target, flushed to disk (fsync) and renamed
into place, so a reader (or a resumed run) sees either the old file or the complete new one,
never a torn one. The new file gets the permissions an ordinary ``open()`` would give it (0666
less the umask), not the 0600 of a private temporary file.

Failures the user can fix (a full disk, a read-only or missing folder, a target that is a
directory, no permission) become one :class:`~gblsr.errors.OutputError` (a UserInputError)
naming the user's path, never the hidden temporary one. On any exception, and on SIGINT /
SIGTERM, the temporary file is removed and an existing target is left untouched.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import OutputError

__all__ = [
    "atomic_write",
    "write_json_atomic",
    "write_text_atomic",
    "Interrupted",
    "raise_on_signal",
    "output_error",
    "check_output_path",
    "check_output_dir",
]

# errno -> the words of the one-line message.
_USER_ERRNOS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.ENOENT: "the folder does not exist",
    errno.ENOTDIR: "a part of the path is not a folder",
    errno.EISDIR: "it is a directory",
    errno.EFBIG: "the file is too large for the file system",
    errno.ENAMETOOLONG: "the file name is too long",
}


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM turned into an exception, so that cleanup code runs; ``exit_code`` is
    the shell's 128 + signal number (130 for Ctrl-C, 143 for SIGTERM)."""

    def __init__(self, signum: int = signal.SIGINT):
        self.signum = int(signum)
        self.exit_code = 128 + self.signum
        name = "terminated" if self.signum == signal.SIGTERM else "interrupted"
        super().__init__(name)


def raise_on_signal(signum: int, frame: Any = None) -> None:
    """A signal handler that raises :class:`Interrupted` (install for SIGINT and SIGTERM)."""
    raise Interrupted(signum)


def output_error(target: str | os.PathLike, exc: BaseException) -> OutputError | None:
    """A one-line OutputError for a write to ``target`` that failed with ``exc`` because of
    the user's environment (full disk, read-only folder, ...), or None for anything else."""
    code = getattr(exc, "errno", None)
    if code not in _USER_ERRNOS:
        # Writers in other languages (safetensors) report the OS error in their message.
        text = str(exc)
        if "No space left" in text or "os error 28" in text or "StorageFull" in text:
            code = errno.ENOSPC
        elif "Read-only file system" in text or "os error 30" in text:
            code = errno.EROFS
        elif "Permission denied" in text or "os error 13" in text:
            code = errno.EACCES
        else:
            return None
    return OutputError(f"cannot write {target}: {_USER_ERRNOS[code]}")


def check_output_path(path: str | os.PathLike) -> Path:
    """Refuse, before any work, an output path that cannot be written: a missing folder, a
    target that is a directory, a read-only or not-writable folder. Returns the path."""
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise OutputError(f"cannot write {target}: it is a directory")
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise OutputError(f"cannot write {target}: the folder {folder} {what}")
    why = _unwritable(folder)
    if why:
        raise OutputError(f"cannot write {target}: {why}")
    return target


def check_output_dir(path: str | os.PathLike) -> Path:
    """Refuse, before any work, an output folder that cannot be made or written: the nearest
    existing part of the path must be a writable folder. Returns the path."""
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise OutputError(f"cannot write into {target}: it is a file, not a folder")
    probe = target
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise OutputError(f"cannot make the folder {target}: {probe} is not a folder")
    why = _unwritable(probe)
    if why:
        raise OutputError(f"cannot write into {target}: {why}")
    return target


def _unwritable(folder: Path) -> str | None:
    """Why files cannot be created in an existing ``folder``, or None when they can."""
    if os.access(folder, os.W_OK | os.X_OK):
        return None
    try:
        ro = bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        ro = False
    return "the file system is read-only" if ro else f"no permission to write in {folder}"


def _umask() -> int:
    # os.umask both sets and reads; do the pair under a lock so no thread sees the 0 mask.
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


_UMASK_LOCK = threading.Lock()


class _SigtermRaises:
    """While active (main thread only, when SIGTERM still has its default action), SIGTERM
    raises :class:`Interrupted` so that a library caller's write is cleaned up too."""

    def __enter__(self):
        self.old = None
        if threading.current_thread() is threading.main_thread():
            try:
                if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
                    self.old = signal.signal(signal.SIGTERM, raise_on_signal)
            except (ValueError, OSError):
                self.old = None
        return self

    def __exit__(self, *exc):
        if self.old is not None:
            signal.signal(signal.SIGTERM, self.old)
        return False


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, write_fn: Callable[[str], Any]) -> Path:
    """Call ``write_fn(tmp_path)`` on a temporary file beside ``path``, then fsync it and rename
    it into place with the umask's permissions.

    The rename is atomic on POSIX and Windows, so readers see either the old file or the
    complete new one. On any failure (a full disk, an exception, SIGINT / SIGTERM) the temporary
    file is removed and the target is left untouched; environment failures raise one-line
    :class:`~gblsr.errors.OutputError` (a UserInputError) naming ``path``.
    """
    target = check_output_path(path)
    folder = target.parent if str(target.parent) else Path(".")
    tmp = None
    with _SigtermRaises():
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
            os.close(fd)
            write_fn(tmp)
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.chmod(tmp, 0o666 & ~_umask())
            os.replace(tmp, target)
            tmp = None
        except Exception as e:
            # Only errors about this write (not, say, an input the writer failed to read).
            other = getattr(e, "filename", None) not in (None, tmp, str(target), str(folder))
            err = None if other else output_error(target, e)
            if err is not None:
                raise err from None
            raise
        finally:
            if tmp is not None:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
    _fsync_dir(folder)
    return target


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def write_json_atomic(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON (non-JSON values via ``str``) atomically."""
    text = json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n"
    return write_text_atomic(path, text)
