"""The staged shard file: a fixed binary header, then a payload of output records.

The payload describes the shard's new bytes as a sequence of records, so unchanged runs of
a sparsely edited shard cost no staging space and are later copied by the kernel:

``D`` + u64 length + bytes        new (or short unchanged) bytes, verbatim
``C`` + u64 length + u64 offset   that many original bytes from the source, at ``offset``

The header (little-endian, 64 bytes) says which shard it is and carries the CRC32C of the
source range the worker read, of the payload, and of the header itself.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from .checksum import crc32c
from .exceptions import ShardChecksumError, StagingError

MAGIC = b"BIGFSHRD"
VERSION = 1
_HEADER = struct.Struct("<8sHHIQQQQQII")  # ... up to payload_crc; header_crc follows
HEADER_SIZE = _HEADER.size + 4
_DATA = struct.Struct("<cQ")
_COPY = struct.Struct("<cQQ")
FLUSH_AT = 4 << 20  # pending new bytes written out once they reach this size
COPY_MIN = 64 << 10  # shorter unchanged runs are staged verbatim


@dataclass(frozen=True)
class ShardHeader:
    """What a staged shard says about itself."""

    index: int
    source_offset: int
    source_length: int
    output_start: int
    output_length: int
    payload_length: int
    source_crc: int
    payload_crc: int

    def pack(self) -> bytes:
        head = _HEADER.pack(MAGIC, VERSION, 0, self.index, self.source_offset,
                            self.source_length, self.output_start, self.output_length,
                            self.payload_length, self.source_crc, self.payload_crc)
        return head + crc32c(head).to_bytes(4, "little")

    @classmethod
    def unpack(cls, raw: bytes, name: str) -> ShardHeader:
        if len(raw) != HEADER_SIZE:
            raise StagingError(f"staged shard {name} is truncated ({len(raw)} header bytes)")
        head, stored = raw[:-4], int.from_bytes(raw[-4:], "little")
        if crc32c(head) != stored:
            raise ShardChecksumError(f"staged shard {name}: header CRC32C mismatch")
        magic, version, _flags, *fields = _HEADER.unpack(head)
        if magic != MAGIC:
            raise StagingError(f"staged shard {name} is not a bigfile shard (bad magic)")
        if version != VERSION:
            raise StagingError(f"staged shard {name} has format version {version}, "
                               f"this bigfile reads version {VERSION}")
        return cls(*fields)


class RecordWriter:
    """Collects a shard's output as records. Until the first change the output is one run of
    original bytes held as a number, and the sink is opened only then, so an unchanged
    shard stages nothing."""

    def __init__(self, open_sink: Callable[[], BinaryIO]) -> None:
        self._open_sink = open_sink
        self.sink: BinaryIO | None = None
        self.changed = False
        self.output_length = 0
        self.new_bytes = 0
        self.payload_length = 0
        self.payload_crc = 0
        self._copy: list[int] | None = None  # [offset, length] of a run not yet written
        self._pending = bytearray()

    def original(self, offset: int, length: int, view: memoryview | None = None) -> None:
        """Output ``length`` original bytes from ``offset``; ``view`` holds them, so a short
        run between changes is staged verbatim rather than as a copy record."""
        if length <= 0:
            return
        self.output_length += length
        if self.changed and view is not None and length < COPY_MIN:
            self._flush_copy()
            self._add(view)
        elif self._copy and self._copy[0] + self._copy[1] == offset:
            self._copy[1] += length
        else:
            self._flush_copy()
            self._copy = [offset, length]

    def new(self, data: bytes | memoryview) -> None:
        """Output new bytes (a replacement, patch or insert); marks the shard changed."""
        self.changed = True
        self.output_length += len(data)
        self.new_bytes += len(data)
        self._flush_copy()
        self._add(data)

    def _add(self, data: bytes | memoryview) -> None:
        if not self._pending and len(data) >= FLUSH_AT:
            self._emit(_DATA.pack(b"D", len(data)))
            self._emit(data)
            return
        self._pending += data
        if len(self._pending) >= FLUSH_AT:
            self._flush_data()

    def _emit(self, raw: bytes | memoryview) -> None:
        if self.sink is None:
            self.sink = self._open_sink()
            self.sink.write(b"\0" * HEADER_SIZE)
        self.sink.write(raw)
        self.payload_crc = crc32c(raw, self.payload_crc)
        self.payload_length += len(raw)

    def _flush_copy(self) -> None:
        if self._copy and self.changed:
            offset, length = self._copy
            self._copy = None
            if self._pending:
                self._flush_data()
            self._emit(_COPY.pack(b"C", length, offset))

    def _flush_data(self) -> None:
        self._emit(_DATA.pack(b"D", len(self._pending)))
        self._emit(self._pending)
        self._pending = bytearray()

    def finish(self, header: Callable[[RecordWriter], ShardHeader]) -> ShardHeader | None:
        """Write the last records and the header; None (and no file) if nothing changed."""
        if not self.changed:
            return None
        self._flush_copy()
        if self._pending:
            self._flush_data()
        if self.sink is None:  # changed, but the output is empty (e.g. all deleted)
            self.sink = self._open_sink()
            self.sink.write(b"\0" * HEADER_SIZE)
        head = header(self)
        self.sink.seek(0)
        self.sink.write(head.pack())
        self.sink.close()
        return head

    def abandon(self) -> None:
        """Close the sink after a failure (the caller removes the file)."""
        if self.sink is not None:
            self.sink.close()


def iter_records(f: BinaryIO, header: ShardHeader, name: str,
                 chunk: int = 8 << 20) -> Iterator[tuple[str, int, memoryview | None]]:
    """Yield ``("C", length, offset)`` and ``("D", length, bytes)`` pieces of a staged
    payload (a long ``D`` record comes in several pieces), checking the payload CRC32C and
    that the records add up to the header's output length; raises on any mismatch."""
    crc = 0
    left = header.payload_length
    produced = 0

    def take(n: int) -> bytes:
        nonlocal crc, left
        raw = f.read(n)
        if len(raw) != n or n > left:
            raise StagingError(f"staged shard {name} is truncated")
        crc = crc32c(raw, crc)
        left -= n
        return raw

    while left > 0:
        tag, length = _DATA.unpack(take(_DATA.size))
        if tag == b"C":
            (offset,) = struct.unpack("<Q", take(8))
            produced += length
            yield ("C", length, offset)  # type: ignore[misc]
        elif tag == b"D":
            while length:
                piece = take(min(length, chunk))
                length -= len(piece)
                produced += len(piece)
                yield ("D", len(piece), memoryview(piece))
        else:
            raise StagingError(f"staged shard {name} has an unknown record {tag!r}")
    if crc != header.payload_crc:
        raise ShardChecksumError(f"staged shard {name}: payload CRC32C mismatch")
    if produced != header.output_length:
        raise StagingError(f"staged shard {name}: records give {produced} bytes, "
                           f"header says {header.output_length}")
