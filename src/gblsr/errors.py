"""Exception types.

``UserInputError`` marks a mistake the user can fix (a missing file, a bad scale, a file that is
not a checkpoint). The CLI turns it into one line on stderr and exit code 2; everything else is a
bug and keeps its traceback.
"""

from __future__ import annotations

__all__ = ["GBLSRError", "UserInputError", "CheckpointError", "ImageError", "OutputError"]


class GBLSRError(Exception):
    """Base class of every error gblsr raises on purpose."""


class UserInputError(GBLSRError, ValueError):
    """A problem with what the user handed us; the message is one line and says what to fix."""


class CheckpointError(UserInputError):
    """A checkpoint or feature blob is missing, damaged, of the wrong kind, or mismatched."""


class ImageError(UserInputError):
    """An image file cannot be read or written."""


class OutputError(UserInputError, OSError):
    """A file cannot be written because of the user's environment (a full disk, a read-only or
    missing folder, a target that is a directory); the message names the user's path."""
