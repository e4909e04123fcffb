"""The staged shard file: a fixed binary header, then a payload of output records.

The payload describes the shard's new bytes as a sequence of records, so unchanged runs of
a sparsely edited shard cost no staging space and are later copied by the kernel:

``D`` + u64 length + bytes        new (or short unchanged) bytes, verbatim
``C`` + u64 length + u64 offset   that many original bytes from the source, at ``offset``
``W`` + u64 length + u64 offset + u32 crc
                                  bytes already written into the new file at ``offset``
                                  (when output offsets are known, workers write there
                                  directly and bytes move once); ``crc`` is their CRC32C,
                                  or 0 when the header's flags say none was taken

The header (little-endian, 72 bytes) says which job and shard it belongs to and carries the
CRC32C of the source range the worker read (0 when it took none), of the payload, and of
the header itself.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from airflow_bigfile.exceptions import ShardChecksumError, StagingError
from airflow_bigfile.io.checksum import crc32c
from airflow_bigfile.io.oscompat import start_writeback, write_all, write_sparse

MAGIC = b"BIGFSHRD"
VERSION = 1
_HEADER = struct.Struct("<8sHHIIQQQQQII")  # ... up to payload_crc; header_crc follows
HEADER_SIZE = _HEADER.size + 4
_DATA = struct.Struct("<cQ")
_COPY = struct.Struct("<cQQ")
_WRITTEN = struct.Struct("<cQQI")
FLUSH_AT = 4 << 20  # pending new bytes written out once they reach this size
COPY_MIN = 4 << 10  # shorter unchanged runs are staged verbatim
NO_WRITTEN_CRCS = 1  # header flag: the W records carry no CRC32C (a fast verify's job)


@dataclass(frozen=True)
class ShardHeader:
    """What a staged shard says about itself."""

    index: int
    job: int  # CRC32C of the job id: a shard from another job is refused
    source_offset: int
    source_length: int
    output_start: int
    output_length: int
    payload_length: int
    source_crc: int
    payload_crc: int
    written_crcs: bool = True  # the W records carry the CRC32C of their bytes

    def pack(self) -> bytes:
        flags = 0 if self.written_crcs else NO_WRITTEN_CRCS
        head = _HEADER.pack(MAGIC, VERSION, flags, self.index, self.job, self.source_offset,
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
        magic, version, flags, *fields = _HEADER.unpack(head)
        if magic != MAGIC:
            raise StagingError(f"staged shard {name} is not a bigfile shard (bad magic)")
        if version != VERSION:
            raise StagingError(f"staged shard {name} has format version {version}, "
                               f"this bigfile reads version {VERSION}")
        return cls(*fields, written_crcs=not flags & NO_WRITTEN_CRCS)


@dataclass(frozen=True)
class Placement:
    """Where a shard's new bytes go straight into the new file: output offsets from
    ``start`` (of the shard's first output byte) up to ``limit``; bytes past ``limit`` (a
    match running into the next shard's range) are staged instead. ``holes``: the new file
    was sized, not preallocated (the source is sparse), so zero pages are left unwritten.
    ``crcs``: take the CRC32C of the bytes written (only a full verify reads them back)."""

    fd: int
    start: int
    limit: int
    holes: bool = False
    crcs: bool = True


class RecordWriter:
    """Collects a shard's output as records. Until the first change the output is one run of
    original bytes held as a number, and the sink is opened only then, so an unchanged
    shard stages nothing. With a :class:`Placement`, new bytes are written into the new
    file and only their place and CRC32C are staged."""

    def __init__(self, open_sink: Callable[[], BinaryIO], place: Placement | None = None
                 ) -> None:
        self._open_sink = open_sink
        self._place = place
        self._pending_at = 0
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
            self._add(view, self.output_length - length)
        elif self._copy and self._copy[0] + self._copy[1] == offset:
            self._copy[1] += length
        else:
            self._flush_copy()
            self._copy = [offset, length]

    def new(self, data: bytes | memoryview) -> None:
        """Output new bytes (a replacement, patch or insert); marks the shard changed."""
        self.changed = True
        at = self.output_length
        self.output_length += len(data)
        self.new_bytes += len(data)
        self._flush_copy()
        self._add(data, at)

    def _add(self, data: bytes | memoryview, at: int) -> None:
        """Queue verbatim output bytes that start at output index ``at`` of the shard."""
        if not self._pending and len(data) >= FLUSH_AT:
            self._write_data(data, at)
            return
        if not self._pending:
            self._pending_at = at
        self._pending += data
        if len(self._pending) >= FLUSH_AT:
            self._flush_data()

    def _write_data(self, data: bytes | memoryview, at: int) -> None:
        place = self._place
        direct = 0
        if place is not None:
            offset = place.start + at
            direct = max(0, min(len(data), place.limit - offset))
        if direct:
            view = memoryview(data)[:direct]
            (write_sparse if place.holes else write_all)(place.fd, view, offset)
            start_writeback(place.fd, offset, direct)
            self._emit(_WRITTEN.pack(b"W", direct, offset, crc32c(view) if place.crcs else 0))
            data = memoryview(data)[direct:]
        if len(data):
            self._emit(_DATA.pack(b"D", len(data)))
            self._emit(data)

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
        self._write_data(self._pending, self._pending_at)
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
                 chunk: int = 8 << 20) -> Iterator[tuple[str, int, Any]]:
    """Yield ``("C", length, offset)``, ``("D", length, bytes)`` and
    ``("W", length, (offset, crc))`` pieces of a staged payload (a long ``D`` record comes
    in several pieces), checking the payload CRC32C and that the records add up to the
    header's output length; raises on any mismatch."""
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
        elif tag == b"W":
            offset, crc_written = struct.unpack("<QI", take(12))
            produced += length
            yield ("W", length, (offset, crc_written))
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
