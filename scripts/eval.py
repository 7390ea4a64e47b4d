#!/usr/bin/env python
"""Shim for running ``gblsr-eval`` from a source checkout: ``python scripts/eval.py --help``."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from gblsr.cli.eval import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
