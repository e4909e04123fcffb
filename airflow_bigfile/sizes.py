"""Parse human byte sizes such as ``"64MiB"`` or ``"5 MB"``."""

from __future__ import annotations

import re
from decimal import Decimal

from airflow_bigfile.exceptions import EditError

_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1000, "kib": 1024,
    "m": 1000**2, "mb": 1000**2, "mib": 1024**2,
    "g": 1000**3, "gb": 1000**3, "gib": 1024**3,
    "t": 1000**4, "tb": 1000**4, "tib": 1024**4,
}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*")


def parse_size(value: int | str, *, name: str = "size") -> int:
    """Return ``value`` as a number of bytes: an int, or a string like ``"64MiB"``."""
    if isinstance(value, bool):
        raise EditError(f"{name} must be a number of bytes or a string like '64MiB', not {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        m = _SIZE.fullmatch(value)
        if m and m.group(2).lower() in _UNITS:
            # Decimal, not float: offsets past 2**53 stay exact, and "1.5" bytes is refused.
            size = Decimal(m.group(1)) * _UNITS[m.group(2).lower()]
            if size == size.to_integral_value():
                return int(size)
    raise EditError(f"{name} must be a number of bytes or a string like '64MiB', not {value!r}")
