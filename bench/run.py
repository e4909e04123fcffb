#!/usr/bin/env python
"""``make bench``: run the benchmark suite (the ``bench`` package; ``--help`` for options)."""

import sys
from pathlib import Path

# Run as a script, this folder is on sys.path; the package and the tests' helpers need the
# repository instead.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
