#!/usr/bin/env python
"""Shim for `gblsr-measure-latency` (same as `python -m gblsr.cli.latency`)."""

import sys

from gblsr.cli.latency import main

if __name__ == "__main__":
    sys.exit(main())
