"""Types of the C extension ``_crc32c.c``: CRC32C, as the ``crc32c`` package computes it."""

from typing_extensions import Buffer

hardware: int

def crc32c(data: Buffer, value: int = 0, /) -> int: ...
def crc32c_tables(data: Buffer, value: int = 0, /) -> int: ...
