"""The ``rewrite`` commit: assemble a new file beside the target (unchanged ranges copied
through a small buffer, changed shards from staging, every staged byte checked against its
CRC32C on the way), fsync it, rename it over the target, fsync the folder. Readers holding the old
file keep a consistent old file; a crash before the rename leaves the old file untouched.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence

from airflow_bigfile.cancel import commit_point
from airflow_bigfile.commit.assembly import Piece
from airflow_bigfile.commit.crash import crashpoint
from airflow_bigfile.commit.metadata import check_hardlinks, keep_metadata
from airflow_bigfile.commit.verify import check_all_written, check_identity, staged_records
from airflow_bigfile.exceptions import (
    StagingError,
)
from airflow_bigfile.io.oscompat import (
    DROP_BEHIND_FROM,
    data_runs,
    drop_read,
    drop_written,
    fsync_dir,
    fsync_file,
    has_holes,
    preallocate,
    readinto,
    start_writeback,
    write_all,
    write_sparse,
)
from airflow_bigfile.io.sidecars import Sidecars
from airflow_bigfile.io.storage import Staging, local_identity
from airflow_bigfile.payload import Data, chunks
from airflow_bigfile.plan.manifest import Manifest

log = logging.getLogger(__name__)

# Unchanged runs are copied through a buffer of this size, each chunk ending on a multiple
# of it in the new file. Measured on ext4 with the file four times a memory cgroup's limit
# (bench/notes.md): a copy whose writes start mid-page (every run after an insert) or one
# through ``copy_file_range`` is far slower than whole-page writes from a small buffer,
# which is what ``cp --reflink=never`` does.
COPY_BUFFER = 256 << 10
COPY_CHUNK = 64 << 20  # source pages are dropped and writeback started after each such run
WRITEBACK_EVERY = 32 << 20


class Assembler:
    """Writes the new file sequentially: copies from the source, merging adjacent copies,
    and plain writes for new bytes. The holes of a sparse source stay holes (only its data
    runs are copied): the new file must be sized, not preallocated, for them to."""

    def __init__(self, src_fd: int, dst_fd: int) -> None:
        self.src, self.dst = src_fd, dst_fd
        st = os.fstat(src_fd)
        self.holes = has_holes(st)
        self.drop_behind = st.st_size >= DROP_BEHIND_FROM
        self.pos = 0
        self._synced = 0  # writeback has been started for the bytes before this
        self._dropped = 0  # the bytes before this are on disk and out of the page cache
        self._copy: list[int] | None = None
        self._buffer: memoryview | None = None

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
            n = self._copy_through(offset, min(length, COPY_CHUNK))
            if self.drop_behind:
                drop_read(self.src, offset, n)
            offset += n
            length -= n
            self._writeback()

    def _copy_through(self, offset: int, length: int) -> int:
        """Copy ``length`` source bytes from ``offset`` to the end of the new file."""
        if self._buffer is None:
            self._buffer = memoryview(bytearray(COPY_BUFFER))
        done = 0
        while done < length:
            want = min(length - done, COPY_BUFFER - self.pos % COPY_BUFFER)
            n = readinto(self.src, self._buffer[:want], offset + done)
            if n == 0:
                raise StagingError(f"the source ended early while copying at offset "
                                   f"{offset + done}")
            write_all(self.dst, self._buffer[:n], self.pos)
            self.pos += n
            done += n
        return done

    def done_with(self, offset: int, length: int) -> None:
        """The source's bytes of a staged piece are in (its workers read them): out of the
        page cache for a large file, except those of a copy not made yet (dropped once it
        is, by :meth:`_copy_run`)."""
        end = offset + length if self._copy is None else min(offset + length, self._copy[0])
        if self.drop_behind and end > offset:
            drop_read(self.src, offset, end - offset)

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
             after_pieces: Callable[[], None] | None = None, verify: str = "fast") -> int:
    """Write every piece then the tail (data, or an int for that many zero bytes);
    ``after_pieces`` runs between the two (a trailing unchanged run is not copied yet).
    ``verify="full"`` reads back every byte the workers wrote into the new file and checks
    it against the CRC32C they took as they wrote it, and reads each staged payload through
    once before using it."""
    if manifest.direct and verify == "full":
        # Check every byte the workers wrote before overwriting any (a match straddling
        # into the next shard's range is written over that shard's bytes).
        pieces = list(pieces)
        check_all_written(staging, pieces, manifest, assembler.dst)
    for piece in pieces:
        if piece.staged is None:
            assembler.copy(piece.start, piece.end - piece.start)
            continue
        # The new file is abandoned if a payload's CRC32C fails at its end: in fast mode
        # each staged byte is read once.
        for kind, length, value in staged_records(staging, piece, manifest,
                                                  precheck=verify == "full"):
            if kind == "C":
                assembler.copy(value, length)  # type: ignore[arg-type]
            elif kind == "W":
                if value != assembler.at:
                    raise StagingError(f"staged shard {piece.staged} wrote its bytes at "
                                       f"{value}, not where they belong")
                assembler.skip(length)
            else:
                assembler.write(value)  # type: ignore[arg-type]
        assembler.done_with(piece.start, piece.end - piece.start)
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
                   break_hardlinks: bool = False, verify: str = "fast") -> int:
    """Build the new file beside ``path`` and rename it over the target. Returns bytes written.

    ``expected_size`` None means the pieces are still being made (they stream in as workers
    finish): the size is then what they add up to. ``after_pieces`` (see :func:`assemble`)
    may raise to abandon the new file before it is finished. The new file gets the target's
    metadata (:mod:`.metadata`) before the rename; a target with other hard links is refused
    before the new file exists, unless ``break_hardlinks``. ``verify`` as for
    :func:`assemble`."""
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
                               after_pieces, verify)
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
