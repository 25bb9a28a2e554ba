"""``python -m harness``: the command line (``harness.cli``); ``chaos-harness`` is the same."""

import sys

from harness.cli import main

if __name__ == "__main__":
    sys.exit(main())
