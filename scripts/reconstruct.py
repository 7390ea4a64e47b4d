#!/usr/bin/env python
"""Shim for `gblsr-reconstruct` (same as `python -m gblsr.cli.reconstruct`)."""

import sys

from gblsr.cli.reconstruct import main

if __name__ == "__main__":
    sys.exit(main())
