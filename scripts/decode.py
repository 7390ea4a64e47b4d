#!/usr/bin/env python
"""Shim for `gblsr-decode` (same as `python -m gblsr.cli.decode`)."""

import sys

from gblsr.cli.decode import main

if __name__ == "__main__":
    sys.exit(main())
