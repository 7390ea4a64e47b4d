#!/usr/bin/env python
"""Shim for `gblsr-train` (same as `python -m gblsr.cli.train`)."""

import sys

from gblsr.cli.train import main

if __name__ == "__main__":
    sys.exit(main())
