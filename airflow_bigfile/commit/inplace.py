"""The ``inplace`` commit: journal the bytes about to be overwritten (fsynced), write the
new ones at their offsets, fsync, remove the journal. A crash before the journal is
removed is rolled back by the next recovery from the journal.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Sequence

from airflow_bigfile.cancel import commit_point, hold_signals
from airflow_bigfile.commit.assembly import Piece
from airflow_bigfile.commit.crash import crashpoint
from airflow_bigfile.commit.journal import write_journal
from airflow_bigfile.commit.recover import rollback_journal
from airflow_bigfile.commit.verify import check_identity, staged_records
from airflow_bigfile.exceptions import (
    RecoveryError,
    StagingError,
)
from airflow_bigfile.io.oscompat import (
    fsync_dir,
    fsync_file,
    pread,
    pwrite,
)
from airflow_bigfile.io.sidecars import Sidecars
from airflow_bigfile.io.storage import Identity, Staging
from airflow_bigfile.payload import Data, chunks
from airflow_bigfile.plan.manifest import Manifest

log = logging.getLogger(__name__)


class PositionalWriter:
    """Writes at offsets with ``os.pwrite``, or seek+write where pwrite is missing."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def write(self, offset: int, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view:
            n = pwrite(self.fd, view, offset)
            offset += n
            view = view[n:]
            crashpoint("data-write")

    def close(self) -> None:
        pass


class MmapWriter:
    """Writes through a shared memory map of the file (one mapping, no syscall per write);
    falls back to :class:`PositionalWriter` when mapping is refused or fails."""

    def __init__(self, fd: int, size: int) -> None:
        import mmap

        self.fallback = PositionalWriter(fd)
        self.size = size
        self.map: mmap.mmap | None = None
        if size:
            try:
                self.map = mmap.mmap(fd, size, access=mmap.ACCESS_WRITE)
            except (OSError, ValueError) as exc:
                log.debug("mmap refused (%s); writing with pwrite", exc)

    def write(self, offset: int, data: bytes | memoryview) -> None:
        if self.map is not None and offset + len(data) <= self.size:
            try:
                self.map[offset:offset + len(data)] = data
                crashpoint("data-write")
                return
            except (OSError, ValueError, IndexError) as exc:
                log.debug("mmap write failed (%s); writing with pwrite", exc)
                self.close()
        self.fallback.write(offset, data)

    def close(self) -> None:
        if self.map is not None:
            self.map.flush()
            self.map.close()
            self.map = None


def placed_records(staging: Staging, pieces: Sequence[Piece], manifest: Manifest,
                   written_fd: int | None = None):
    """Each staged record with its offset in the new file: ``(kind, length, value, at)``."""
    at = 0
    for piece in pieces:
        if piece.staged is None:
            at += piece.length
            continue
        for kind, length, value in staged_records(staging, piece, manifest, written_fd):
            yield kind, length, value, at
            at += length


def inplace_ranges(staging: Staging, pieces: Sequence[Piece], manifest: Manifest,
                   written_fd: int | None = None) -> list[tuple[int, int]] | None:
    """Verify every staged shard and return the ``(offset, length)`` ranges an in-place
    commit would overwrite, or None when the output does not line up with the source."""
    ranges: list[tuple[int, int]] = []
    for kind, length, value, at in placed_records(staging, pieces, manifest, written_fd):
        if kind in "CW" and value != at:
            return None
        if kind == "C":
            continue
        elif ranges and ranges[-1][0] + ranges[-1][1] == at:
            ranges[-1] = (ranges[-1][0], ranges[-1][1] + length)
        else:
            ranges.append((at, length))
    return ranges


def staged_writes(staging: Staging, pieces: Sequence[Piece], manifest: Manifest,
                  written_fd: int | None = None) -> Iterator[tuple[int, bytes | memoryview]]:
    """The new bytes of verified staged pieces, each with its offset in the target."""
    for kind, length, value, at in placed_records(staging, pieces, manifest):
        if kind == "D":
            yield at, value  # type: ignore[misc]
        elif kind == "W":
            assert written_fd is not None
            for start in range(at, at + length, 8 << 20):
                yield start, pread(written_fd, min(8 << 20, at + length - start), start)


def commit_truncate(cars: Sidecars, url: str, identity: Identity, size: int) -> None:
    """Cut (or extend) the target (``cars.path``) to ``size`` with one ftruncate and an
    fsync, as coreutils ``truncate`` does: one syscall leaves the old file or the new one,
    so no journal is needed, and a full disk cannot stop it."""
    fd = cars.open_target(os.O_RDWR)
    try:
        st = os.fstat(fd)
        check_identity(identity, Identity.of_stat(st), url)
        os.ftruncate(fd, size)
        fsync_file(fd)
    finally:
        os.close(fd)


def commit_inplace(cars: Sidecars, url: str, identity: Identity | None,
                   ranges: Sequence[tuple[int, int]], cut_at: int | None,
                   tail: Sequence[Data | int], expected_size: int,
                   writes: Iterable[tuple[int, bytes | memoryview]],
                   writer: str = "pwrite") -> int:
    """Journal the bytes about to change, write the new ones in place (in ``cars.path``,
    the pinned file: see :meth:`.Sidecars.open_target`), drop the journal.

    ``ranges`` are the ``(offset, length)`` ranges ``writes`` will overwrite (from
    :func:`inplace_ranges`, or the patches themselves); ``cut_at`` is where a shrinking
    truncate cuts (its tail is journaled too); ``tail`` is appended after. ``identity`` is
    what the target was when planned; None for an edit list of appends only, which writes
    at the end as it is now (``O_APPEND``), so bytes another process appended meanwhile are
    kept, never overwritten. A failure after the journal is sealed rolls the target back
    before it is reported. Returns bytes written.
    """
    appending = os.O_APPEND if identity is None else 0
    fd = cars.open_target(os.O_RDWR | appending)
    try:
        st = os.fstat(fd)
        if identity is None:
            expected_size = st.st_size + sum(len(t) for t in tail if not isinstance(t, int))
        else:
            check_identity(identity, Identity.of_stat(st), url)
        saved = list(ranges)
        if cut_at is not None:
            saved.append((cut_at, st.st_size - cut_at))
        journaled = False
        try:
            with hold_signals():  # a signal never leaves a torn journal behind
                write_journal(cars, fd, saved, st, expected_size, fsync_file)
                journaled = True
            fsync_dir(cars.folder)
            crashpoint("journal-synced")
            written = _write_inplace(fd, writes, writer, st.st_size, cut_at, tail,
                                     expected_size)
            with commit_point():  # the edit stands once its journal is gone
                cars.remove(cars.journal_name)
                crashpoint("journal-removed")
                fsync_dir(cars.folder)
        except BaseException as exc:
            os.close(fd)
            fd = -1
            if not journaled:  # nothing of ours to roll back
                raise
            try:
                with hold_signals():
                    rollback_journal(cars)
            except Exception as again:
                raise RecoveryError(
                    f"{cars.path}: the in-place commit failed ({exc}) and so did its rollback "
                    f"({again}); the journal is kept: run `bigfile recover {cars.path}`"
                ) from exc
            raise
    finally:
        if fd >= 0:
            os.close(fd)
    return written


def _write_inplace(fd: int, writes: Iterable[tuple[int, bytes | memoryview]], writer: str,
                   size: int, cut_at: int | None, tail: Sequence[Data | int],
                   expected_size: int) -> int:
    """The data writes of an in-place commit, up to and including the fsync."""
    out = MmapWriter(fd, size) if writer == "mmap" else PositionalWriter(fd)
    written = 0
    try:
        for at, data in writes:
            out.write(at, data)
            written += len(data)
    finally:
        out.close()
    end = size
    if cut_at is not None:
        os.ftruncate(fd, cut_at)
        end = cut_at
    tail_writer = PositionalWriter(fd)
    for item in tail:
        if isinstance(item, int):
            end += item
            os.ftruncate(fd, end)
        else:
            for piece in chunks(item):
                tail_writer.write(end, piece)
                end += len(piece)
                written += len(piece)
    if end != expected_size:
        raise StagingError(f"in-place commit produced {end} bytes, expected {expected_size}")
    fsync_file(fd)
    crashpoint("data-synced")
    return written
