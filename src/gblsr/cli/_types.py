"""argparse types shared by the commands: one-line errors for bad numbers."""

from __future__ import annotations

import argparse
import math

from ..errors import UserInputError

__all__ = ["positive_float", "positive_int", "nonneg_int", "scale_factor", "ArgumentParser"]


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text}")
    return v


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None


def nonneg_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    v = _int(text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {v}")
    return v


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    v = _int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return v


def scale_factor(text: str) -> float:
    """argparse type: a finite scale factor >= 1."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(v) or v < 1:
        raise argparse.ArgumentTypeError(f"a scale must be a finite number >= 1, got {text}")
    return v


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose mistakes raise UserInputError: parsed inside ``run_main`` they become one
    line, ``prog: error: message``, and exit code 2 (plain argparse prints its usage block)."""

    def error(self, message: str):  # type: ignore[override]
        raise UserInputError(message)
