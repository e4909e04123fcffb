"""Helpers every part of the suite uses: sizes read with the package's own parser, sizes
written for people, and the progress log on stderr."""

from __future__ import annotations

import sys
import time

from airflow_bigfile.exceptions import EditError
from airflow_bigfile.sizes import parse_size

MB = 1_000_000


def size_arg(text: str) -> int:
    """``text`` in bytes, with the units ``--shard-size`` takes ("M" is 10**6, "MiB" 2**20);
    a ``ValueError`` naming the text when it is not a size."""
    try:
        return parse_size(text)
    except EditError as exc:
        raise ValueError(str(exc)) from exc


def human(n: float) -> str:
    """``n`` bytes in the largest binary unit that keeps it at least 1."""
    for unit, div in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= div:
            v = n / div
            return f"{v:.0f}{unit}" if v == int(v) else f"{v:.1f}{unit}"
    return f"{int(n)}B"


def log(msg: str) -> None:
    """A time-stamped progress line on stderr."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)
