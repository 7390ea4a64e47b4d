#!/usr/bin/env python
"""Shim for `gblsr-encode` (same as `python -m gblsr.cli.encode`)."""

import sys

from gblsr.cli.encode import main

if __name__ == "__main__":
    sys.exit(main())
