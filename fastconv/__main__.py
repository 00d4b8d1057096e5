"""`python -m fastconv`: the same command as the `fastconv` console script."""

import sys

from .cli import main

if __name__ == "__main__":  # importing it (pytest --doctest-modules does) must not run the CLI
    sys.exit(main())
