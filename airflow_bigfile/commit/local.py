"""Verify staged shards and commit them to the target.

``rewrite`` (local): assemble a new file beside the target (unchanged ranges copied by the
kernel, changed shards from staging, every staged byte checked against its CRC32C on the
way), fsync it, rename it over the target, fsync the folder. Readers holding the old file
keep a consistent old file; a crash before the rename leaves the old file untouched.
"""

from __future__ import annotations

import errno
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import BinaryIO

from airflow_bigfile.commit.assembly import Piece
from airflow_bigfile.commit.crash import crashpoint
from airflow_bigfile.commit.journal import write_journal
from airflow_bigfile.commit.metadata import check_hardlinks, keep_metadata
from airflow_bigfile.commit.recover import rollback_journal
from airflow_bigfile.commit.trust import parse_staged
from airflow_bigfile.exceptions import (
    RecoveryError,
    ShardChecksumError,
    SourceChangedError,
    StagingError,
)
from airflow_bigfile.io.checksum import crc32c
from airflow_bigfile.io.oscompat import (
    data_runs,
    drop_written,
    fsync_dir,
    fsync_file,
    has_holes,
    pread,
    preallocate,
    pwrite,
    start_writeback,
    write_all,
    write_sparse,
)
from airflow_bigfile.io.storage import Identity, Staging, local_identity
from airflow_bigfile.patch.patcher import job_tag
from airflow_bigfile.patch.shardfile import HEADER_SIZE, ShardHeader, iter_records
from airflow_bigfile.payload import Data, chunks
from airflow_bigfile.plan.manifest import Manifest
from airflow_bigfile.run.cancel import commit_point, hold_signals
from airflow_bigfile.targets.sidecars import Sidecars

log = logging.getLogger(__name__)

COPY_CHUNK = 64 << 20  # kernel copies this much at a time, starting writeback after each
WRITEBACK_EVERY = 32 << 20
# From this size on, the new file's pages leave the page cache once on disk, a window behind
# the writer: writing 4 GiB then took 1.4 s instead of 1.9-4.0 s here (the cache did not fill,
# so the kernel never throttled the writer), a 1 GiB sparse replace 0.98-1.4 s instead of
# 0.97-2.4 s, and other programs keep their cached data. Smaller files stay cached for
# whoever reads the result next.
DROP_BEHIND_FROM = 256 << 20
_NO_KERNEL_COPY = {errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL, errno.ENOTSUP,
                   errno.EBADF, errno.EPERM}


def check_identity(was: Identity, now: Identity, url: str) -> None:
    """Refuse to commit if the source ``url`` is no longer the one that was planned."""
    for name in ("size", "mtime_ns", "inode", "etag"):
        before, after = getattr(was, name), getattr(now, name)
        if before is not None and after is not None and before != after:
            raise SourceChangedError(
                f"{url} changed since it was planned ({name} {before} -> {after}); "
                f"nothing was committed, run the edit again")


def open_staged(staging: Staging, piece: Piece, manifest: Manifest
                ) -> tuple[BinaryIO, ShardHeader]:
    """Open a staged shard and check its header against the manifest and the result."""
    assert piece.staged is not None and piece.result is not None
    name, base = parse_staged(piece.staged)  # a batch file of this job's staging, nothing else
    f = staging.reader(name)  # the handle is shared by the batch's shards: staging closes it
    f.seek(base)
    header = ShardHeader.unpack(f.read(HEADER_SIZE), piece.staged)
    shard, result = piece.shard, piece.result
    if header.job != job_tag(manifest.job_id):
        raise StagingError(f"staged shard {piece.staged} belongs to another job")
    expected = (shard.index, shard.offset, shard.length, result.output_start,
                result.output_length, result.payload_crc)
    found = (header.index, header.source_offset, header.source_length,
             header.output_start, header.output_length, header.payload_crc)
    if found != expected:
        raise StagingError(f"staged shard {piece.staged} does not match the manifest and "
                           f"its worker's result (index, offset, length, start, output, "
                           f"payload CRC: {found} != {expected})")
    _check_payload(f, header, piece.staged, base)
    read = shard.crc if shard.crc is not None else result.source_crc
    if read is not None and header.source_crc != read:
        raise StagingError(f"staged shard {piece.staged} was made from other source bytes "
                           f"(source CRC32C {header.source_crc:#x} != {read:#x})")
    return f, header


def _check_payload(f: BinaryIO, header: ShardHeader, name: str, base: int) -> None:
    """Read a staged payload through and check its CRC32C before any record is used."""
    crc, left = 0, header.payload_length
    while left:
        chunk = f.read(min(8 << 20, left))
        if not chunk:
            raise StagingError(f"staged shard {name} is truncated")
        crc = crc32c(chunk, crc)
        left -= len(chunk)
    if crc != header.payload_crc:
        raise ShardChecksumError(f"staged shard {name}: payload CRC32C mismatch")
    f.seek(base + HEADER_SIZE)


def check_written(fd: int, offset: int, length: int, crc: int, name: str) -> None:
    """Check bytes a worker wrote straight into the new file against their CRC32C."""
    found, done = 0, 0
    while done < length:
        chunk = pread(fd, min(8 << 20, length - done), offset + done)
        if not chunk:
            break
        found = crc32c(chunk, found)
        done += len(chunk)
    if done != length or found != crc:
        raise ShardChecksumError(f"bytes {offset}..{offset + length} that {name} wrote into "
                                 f"the new file do not match their CRC32C")


def check_all_written(staging: Staging, pieces: Sequence[Piece], manifest: Manifest,
                      fd: int) -> None:
    """Check every byte the workers wrote straight into the new file against its CRC32C,
    a few ranges at a time (pread and CRC32C release the GIL)."""
    checks = []
    for piece in pieces:
        if piece.staged is not None:
            f, header = open_staged(staging, piece, manifest)
            checks += [(value[0], length, value[1], piece.staged) for kind, length, value
                       in iter_records(f, header, piece.staged) if kind == "W"]
    with ThreadPoolExecutor(min(4, os.cpu_count() or 1)) as pool:
        for _ in pool.map(lambda c: check_written(fd, *c), checks):
            pass


def staged_records(staging: Staging, piece: Piece, manifest: Manifest,
                   written_fd: int | None = None):
    """Yield a staged piece's output records, skipping its first ``piece.skip`` bytes.

    ``W`` records (bytes already in the new file) are checked whole through
    ``written_fd`` (when given) before any of them is skipped."""
    f, header = open_staged(staging, piece, manifest)
    skip = piece.skip
    for kind, length, value in iter_records(f, header, piece.staged or ""):
        if kind == "W":
            if not manifest.direct:
                raise StagingError(f"staged shard {piece.staged} refers to a new file "
                                   f"this commit does not have")
            if written_fd is not None:
                check_written(written_fd, value[0], length, value[1],
                              piece.staged or "")
            value = value[0]
        if skip >= length:
            skip -= length
            continue
        if kind == "D":
            yield "D", length - skip, value[skip:]  # type: ignore[index]
        else:
            yield kind, length - skip, value + skip  # type: ignore[operator]
        skip = 0


class Assembler:
    """Writes the new file sequentially: kernel copies from the source where it can,
    merging adjacent copies, and plain writes for new bytes. The holes of a sparse source
    stay holes (``copy_file_range`` would write them out as zeros): the new file must be
    sized, not preallocated, for them to."""

    def __init__(self, src_fd: int, dst_fd: int) -> None:
        self.src, self.dst = src_fd, dst_fd
        st = os.fstat(src_fd)
        self.holes = has_holes(st)
        self.drop_behind = st.st_size >= DROP_BEHIND_FROM
        self.pos = 0
        self._synced = 0  # writeback has been started for the bytes before this
        self._dropped = 0  # the bytes before this are on disk and out of the page cache
        self._copy: list[int] | None = None
        self.kernel = hasattr(os, "copy_file_range")

    def copy(self, offset: int, length: int) -> None:
        if length <= 0:
            return
        if self._copy and self._copy[0] + self._copy[1] == offset:
            self._copy[1] += length
        else:
            self._flush()
            self._copy = [offset, length]

    def write(self, data: bytes | memoryview) -> None:
        self._flush()
        (write_sparse if self.holes else write_all)(self.dst, data, self.pos)
        self.pos += len(data)
        self._writeback()

    def _writeback(self) -> None:
        if self.pos - self._synced >= WRITEBACK_EVERY:
            if self.drop_behind and self._synced > self._dropped:
                drop_written(self.dst, self._dropped, self._synced - self._dropped)
                self._dropped = self._synced
            start_writeback(self.dst, self._synced, self.pos - self._synced)
            self._synced = self.pos

    @property
    def at(self) -> int:
        """Where the next byte of the new file goes."""
        return self.pos + (self._copy[1] if self._copy else 0)

    def skip(self, length: int) -> None:
        """Move past ``length`` bytes that are already in place."""
        self._flush()
        self.pos += length

    def zeros(self, length: int) -> None:
        """Extend with ``length`` zero bytes, as a hole where the filesystem allows."""
        self._flush()
        if length:
            self.pos += length
            os.ftruncate(self.dst, self.pos)

    def _flush(self) -> None:
        if not self._copy:
            return
        offset, length = self._copy
        self._copy = None
        if not self.holes:
            self._copy_run(offset, length)
            return
        base = self.pos - offset
        for start, size in data_runs(self.src, offset, length):
            self.pos = base + start
            self._copy_run(start, size)
        self.pos = base + offset + length
        if os.fstat(self.src).st_size < offset + length:
            raise StagingError(f"the source ended early while copying at offset {offset}")

    def _copy_run(self, offset: int, length: int) -> None:
        while length > 0:
            n = self._kernel_copy(offset, min(length, COPY_CHUNK))
            if n == 0:
                raise StagingError(f"the source ended early while copying at offset {offset}")
            offset += n
            length -= n
            self.pos += n
            self._writeback()

    def _kernel_copy(self, offset: int, length: int) -> int:
        if self.kernel:
            try:
                return os.copy_file_range(self.src, self.dst, length, offset, self.pos)
            except OSError as exc:
                if exc.errno not in _NO_KERNEL_COPY:
                    raise
                log.debug("copy_file_range refused (%s); copying through user space", exc)
                self.kernel = False
        data = pread(self.src, min(length, 8 << 20), offset)
        if data:
            write_all(self.dst, data, self.pos)
        return len(data)

    def finish(self) -> int:
        self._flush()
        return self.pos


def replace_file(src: str, dst: str, attempts: int = 10) -> None:
    """``os.replace`` retried while it is refused with EACCES/EPERM: on Windows a target
    held open by a reader cannot be replaced until it is closed."""
    for attempt in range(attempts):
        try:
            os.replace(src, dst)
            return
        except PermissionError:
            if attempt == attempts - 1:
                raise
            log.warning("%s is held open; retrying the rename (%d/%d)", dst, attempt + 1,
                        attempts)
            time.sleep(min(0.05 * 2 ** attempt, 1.0))


def assemble(assembler: Assembler, staging: Staging, pieces: Iterable[Piece],
             manifest: Manifest, tail: Sequence[Data | int],
             after_pieces: Callable[[], None] | None = None) -> int:
    """Write every piece then the tail (data, or an int for that many zero bytes);
    ``after_pieces`` runs between the two (a trailing unchanged run is not copied yet)."""
    if manifest.direct:
        # Check every byte the workers wrote before overwriting any (a match straddling
        # into the next shard's range is written over that shard's bytes).
        pieces = list(pieces)
        check_all_written(staging, pieces, manifest, assembler.dst)
    for piece in pieces:
        if piece.staged is None:
            assembler.copy(piece.start, piece.end - piece.start)
            continue
        for kind, length, value in staged_records(staging, piece, manifest):
            if kind == "C":
                assembler.copy(value, length)  # type: ignore[arg-type]
            elif kind == "W":
                if value != assembler.at:
                    raise StagingError(f"staged shard {piece.staged} wrote its bytes at "
                                       f"{value}, not where they belong")
                assembler.skip(length)
            else:
                assembler.write(value)  # type: ignore[arg-type]
        crashpoint("rewrite-write")
    if after_pieces is not None:
        after_pieces()
    for item in tail:
        if isinstance(item, int):
            assembler.zeros(item)
        else:
            for piece in chunks(item):
                assembler.write(piece)
    return assembler.finish()


def commit_rewrite(path: str, source_fd: int, staging: Staging, pieces: Iterable[Piece],
                   manifest: Manifest, tail: Sequence[Data | int], expected_size: int | None,
                   after_pieces: Callable[[], None] | None = None,
                   break_hardlinks: bool = False) -> int:
    """Build the new file beside ``path`` and rename it over the target. Returns bytes written.

    ``expected_size`` None means the pieces are still being made (they stream in as workers
    finish): the size is then what they add up to. ``after_pieces`` (see :func:`assemble`)
    may raise to abandon the new file before it is finished. The new file gets the target's
    metadata (:mod:`.metadata`) before the rename; a target with other hard links is refused
    before the new file exists, unless ``break_hardlinks``."""
    cars = Sidecars.of(path)
    name = cars.new_name(manifest.job_id)
    tmp = cars.at(name)
    st = os.fstat(source_fd)
    check_hardlinks(st, manifest.target, break_hardlinks)
    # With direct writes the workers made the file; otherwise it must not exist yet.
    fd = cars.open(name, os.O_RDWR) if manifest.direct else cars.create(name, read=True)
    try:
        try:
            if not manifest.direct:
                preallocate(fd, st.st_size if expected_size is None else expected_size - sum(
                    item if isinstance(item, int) else len(item) for item in tail),
                    holes=has_holes(st))
            written = assemble(Assembler(source_fd, fd), staging, pieces, manifest, tail,
                               after_pieces)
            if expected_size is None:
                os.ftruncate(fd, written)  # cut what the estimate reserved beyond the end
            elif written != expected_size:
                raise StagingError(f"assembled {written} bytes, expected {expected_size}; "
                                   f"nothing was committed")
            keep_metadata(source_fd, fd, st, manifest.target)
            fsync_file(fd)
            crashpoint("rewrite-synced")
        finally:
            os.close(fd)
        check_identity(manifest.identity, local_identity(path), manifest.target)
        with commit_point():
            replace_file(tmp, path)
            crashpoint("renamed")
            fsync_dir(cars.folder)
    except BaseException:
        cars.remove(name)
        raise
    return written


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


def commit_truncate(path: str, url: str, identity: Identity, size: int) -> None:
    """Cut (or extend) the target to ``size`` with one ftruncate and an fsync, as coreutils
    ``truncate`` does: one syscall leaves the old file or the new one, so no journal is
    needed, and a full disk cannot stop it."""
    fd = os.open(Sidecars.of(path).path, os.O_RDWR | getattr(os, "O_BINARY", 0))
    try:
        st = os.fstat(fd)
        check_identity(identity, Identity(size=st.st_size, mtime_ns=st.st_mtime_ns,
                                          inode=st.st_ino), url)
        os.ftruncate(fd, size)
        fsync_file(fd)
    finally:
        os.close(fd)


def commit_inplace(path: str, url: str, identity: Identity | None,
                   ranges: Sequence[tuple[int, int]], cut_at: int | None,
                   tail: Sequence[Data | int], expected_size: int,
                   writes: Iterable[tuple[int, bytes | memoryview]],
                   writer: str = "pwrite") -> int:
    """Journal the bytes about to change, write the new ones in place, drop the journal.

    ``ranges`` are the ``(offset, length)`` ranges ``writes`` will overwrite (from
    :func:`inplace_ranges`, or the patches themselves); ``cut_at`` is where a shrinking
    truncate cuts (its tail is journaled too); ``tail`` is appended after. ``identity`` is
    what the target was when planned; None for an edit list of appends only, which writes
    at the end as it is now (``O_APPEND``), so bytes another process appended meanwhile are
    kept, never overwritten. A failure after the journal is sealed rolls the target back
    before it is reported. Returns bytes written.
    """
    cars = Sidecars.of(path)
    appending = os.O_APPEND if identity is None else 0
    fd = os.open(cars.path, os.O_RDWR | appending | getattr(os, "O_BINARY", 0))
    try:
        st = os.fstat(fd)
        if identity is None:
            expected_size = st.st_size + sum(len(t) for t in tail if not isinstance(t, int))
        else:
            check_identity(identity, Identity(size=st.st_size, mtime_ns=st.st_mtime_ns,
                                              inode=st.st_ino), url)
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
                    f"{path}: the in-place commit failed ({exc}) and so did its rollback "
                    f"({again}); the journal is kept: run `bigfile recover {path}`") from exc
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
