"""CRC32C (Castagnoli): the CRC instruction where the CPU has one (``_crc32c.c``), with
the GIL released over long buffers."""

from __future__ import annotations

from airflow_bigfile.io._crc32c import crc32c as _crc32c


def crc32c(data: bytes | bytearray | memoryview, value: int = 0) -> int:
    """Return the CRC32C of ``data``, continuing from ``value`` (chain blocks with it)."""
    return _crc32c(data, value)
