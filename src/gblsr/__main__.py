"""``python -m gblsr COMMAND ...`` is the ``gblsr`` command."""

import sys

from .cli.main import main

if __name__ == "__main__":
    sys.exit(main())
