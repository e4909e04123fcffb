"""The rollback journal of an in-place commit.

Before a single byte of the target changes, the journal beside it holds the original bytes
of every range about to be overwritten, the original size, the size the commit will leave,
and the target's device and inode, sealed by a CRC32C and fsynced. Recovery of a sealed
journal writes those bytes back (the old file returns); a torn journal (bad CRC) means the
data writes never began, and is removed.

A journal is a sidecar (see :mod:`.sidecars`): created exclusively, never through a link,
and believed only when it is a regular file owned by this user or the target's owner.

Layout (little-endian): ``BIGFJRNL`` u16 version, u64 device, u64 inode, u64 original size,
u64 final size, u64 entry count, then per entry u64 offset, u64 length, bytes; then u32
CRC32C of it all.
"""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from airflow_bigfile.commit.crash import crashpoint
from airflow_bigfile.exceptions import RecoveryError
from airflow_bigfile.io.checksum import crc32c
from airflow_bigfile.io.oscompat import pread
from airflow_bigfile.targets.sidecars import Sidecars

log = logging.getLogger(__name__)

MAGIC = b"BIGFJRNL"
VERSION = 2
_HEAD = struct.Struct("<8sHQQQQQ")
_ENTRY = struct.Struct("<QQ")
READ_CHUNK = 8 << 20


@dataclass(frozen=True)
class Journal:
    """A sealed journal: whose it is, the sizes before and after, and the saved ranges
    as ``(offset, length, position in the journal)``."""

    device: int
    inode: int
    original_size: int
    final_size: int
    entries: list[tuple[int, int, int]]


def write_journal(cars: Sidecars, target_fd: int, ranges: Iterable[tuple[int, int]],
                  st: os.stat_result, final_size: int, fsync: Callable[[int], None]) -> None:
    """Save the target's current bytes of each ``(offset, length)`` range."""
    ranges = [(o, n) for o, n in ranges if n > 0]
    fd = cars.create(cars.journal_name)
    try:
        crc = 0

        def put(data: bytes | memoryview) -> None:
            nonlocal crc
            crc = crc32c(data, crc)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            crashpoint("journal-write")

        put(_HEAD.pack(MAGIC, VERSION, st.st_dev, st.st_ino, st.st_size, final_size,
                       len(ranges)))
        for offset, length in ranges:
            put(_ENTRY.pack(offset, length))
            done = 0
            while done < length:
                chunk = pread(target_fd, min(READ_CHUNK, length - done), offset + done)
                if not chunk:
                    raise RecoveryError(f"{cars.path} ended at {offset + done} while "
                                        f"journaling")
                put(chunk)
                done += len(chunk)
        put(crc.to_bytes(4, "little"))
        fsync(fd)
    finally:
        os.close(fd)


def read_journal(fd: int, where: str) -> Journal | None:
    """Check the journal open on ``fd``; None when it is torn (its CRC does not match:
    the data writes never began)."""
    size = os.fstat(fd).st_size
    if size < _HEAD.size + 4:
        return None
    with os.fdopen(os.dup(fd), "rb") as f:
        crc = 0
        left = size - 4
        while left:
            chunk = f.read(min(READ_CHUNK, left))
            crc = crc32c(chunk, crc)
            left -= len(chunk)
        if int.from_bytes(f.read(4), "little") != crc:
            return None
        f.seek(0)
        magic, version, device, inode, original, final, count = _HEAD.unpack(
            f.read(_HEAD.size))
        if magic != MAGIC or version != VERSION:
            raise RecoveryError(f"{where} is not a bigfile journal this version can read")
        entries = []
        for _ in range(count):
            offset, length = _ENTRY.unpack(f.read(_ENTRY.size))
            entries.append((offset, length, f.tell()))
            f.seek(length, os.SEEK_CUR)
    return Journal(device, inode, original, final, entries)


def iter_saved(fd: int, journal: Journal) -> Iterator[tuple[int, bytes]]:
    """The saved original bytes, as ``(offset, chunk)`` pieces."""
    for offset, length, position in journal.entries:
        done = 0
        while done < length:
            chunk = pread(fd, min(READ_CHUNK, length - done), position + done)
            if not chunk:
                raise RecoveryError("the journal ended early")
            yield offset + done, chunk
            done += len(chunk)
