"""The rollback journal of an in-place commit.

Before a single byte of the target changes, the journal beside it holds the original bytes
of every range about to be overwritten, the original size, and the target's inode, sealed
by a CRC32C and fsynced. Recovery of a sealed journal writes those bytes back (the old file
returns); a torn journal (bad CRC) means the data writes never began, and is removed.

Layout (little-endian): ``BIGFJRNL`` u16 version, u64 inode, u64 original size,
u64 entry count, then per entry u64 offset, u64 length, bytes; then u32 CRC32C of it all.
"""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Iterable, Iterator

from .checksum import crc32c
from .crash import crashpoint
from .exceptions import RecoveryError
from .oscompat import pread

log = logging.getLogger(__name__)

MAGIC = b"BIGFJRNL"
VERSION = 1
_HEAD = struct.Struct("<8sHQQQ")
_ENTRY = struct.Struct("<QQ")
READ_CHUNK = 8 << 20


def journal_path(path: str) -> str:
    folder, name = os.path.split(os.path.abspath(path))
    return os.path.join(folder, f".{name}.bigfile-journal")


def write_journal(path: str, target_fd: int, ranges: Iterable[tuple[int, int]],
                  original_size: int, inode: int, fsync) -> str:
    """Save the target's current bytes of each ``(offset, length)`` range; returns the path."""
    ranges = [(o, n) for o, n in ranges if n > 0]
    jpath = journal_path(path)
    fd = os.open(jpath, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0),
                 0o600)
    try:
        crc = 0

        def put(data: bytes | memoryview) -> None:
            nonlocal crc
            crc = crc32c(data, crc)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            crashpoint("journal-write")

        put(_HEAD.pack(MAGIC, VERSION, inode, original_size, len(ranges)))
        for offset, length in ranges:
            put(_ENTRY.pack(offset, length))
            done = 0
            while done < length:
                chunk = pread(target_fd, min(READ_CHUNK, length - done), offset + done)
                if not chunk:
                    raise RecoveryError(f"{path} ended at {offset + done} while journaling")
                put(chunk)
                done += len(chunk)
        put(crc.to_bytes(4, "little"))
        fsync(fd)
    finally:
        os.close(fd)
    return jpath


def read_journal(jpath: str) -> tuple[int, int, list[tuple[int, int, int]]] | None:
    """Check a journal: ``(inode, original_size, [(offset, length, file_position)])``, or
    None when it is torn (its CRC does not match: the data writes never began)."""
    size = os.path.getsize(jpath)
    if size < _HEAD.size + 4:
        return None
    with open(jpath, "rb") as f:
        crc = 0
        left = size - 4
        while left:
            chunk = f.read(min(READ_CHUNK, left))
            crc = crc32c(chunk, crc)
            left -= len(chunk)
        if int.from_bytes(f.read(4), "little") != crc:
            return None
        f.seek(0)
        magic, version, inode, original_size, count = _HEAD.unpack(f.read(_HEAD.size))
        if magic != MAGIC or version != VERSION:
            raise RecoveryError(f"{jpath} is not a bigfile journal this version can read")
        entries = []
        for _ in range(count):
            offset, length = _ENTRY.unpack(f.read(_ENTRY.size))
            entries.append((offset, length, f.tell()))
            f.seek(length, os.SEEK_CUR)
    return inode, original_size, entries


def iter_saved(jpath: str, entries: list[tuple[int, int, int]]
               ) -> Iterator[tuple[int, bytes]]:
    """The saved original bytes, as ``(offset, chunk)`` pieces."""
    with open(jpath, "rb") as f:
        for offset, length, position in entries:
            f.seek(position)
            done = 0
            while done < length:
                chunk = f.read(min(READ_CHUNK, length - done))
                yield offset + done, chunk
                done += len(chunk)
