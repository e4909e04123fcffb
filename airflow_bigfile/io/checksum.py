"""CRC32C (Castagnoli), hardware-accelerated by the ``crc32c`` package."""

from __future__ import annotations

import crc32c as _crc32c


def crc32c(data: bytes | bytearray | memoryview, value: int = 0) -> int:
    """Return the CRC32C of ``data``, continuing from ``value`` (chain blocks with it)."""
    return _crc32c.crc32c(data, value=value)
