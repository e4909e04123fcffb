"""Positional I/O that also works where ``os.pread``/``os.pwrite``/``os.preadv`` are missing
(Windows): there it falls back to seek + read/write under a lock, since the file position
is shared by every thread using the descriptor."""

from __future__ import annotations

import contextlib
import errno
import os
import sys
import threading
from collections.abc import Iterator
from typing import Any

_seek = threading.Lock()


def pread(fd: int, length: int, offset: int) -> bytes:
    """Up to ``length`` bytes at ``offset``."""
    fn = getattr(os, "pread", None)
    if fn is not None:
        return fn(fd, length, offset)
    with _seek:
        os.lseek(fd, offset, os.SEEK_SET)
        return os.read(fd, length)


def readinto(fd: int, view: memoryview, offset: int) -> int:
    """Fill ``view`` from ``offset`` without an extra copy where the OS allows."""
    fn = getattr(os, "preadv", None)
    if fn is not None:
        return fn(fd, [view], offset)
    data = pread(fd, len(view), offset)
    view[:len(data)] = data
    return len(data)


def pwrite(fd: int, data: bytes | memoryview, offset: int) -> int:
    """Write some of ``data`` at ``offset``; returns how much."""
    fn = getattr(os, "pwrite", None)
    if fn is not None:
        return fn(fd, data, offset)
    with _seek:
        os.lseek(fd, offset, os.SEEK_SET)
        return os.write(fd, data)


def write_all(fd: int, data: bytes | memoryview, offset: int) -> None:
    """Write all of ``data`` at ``offset``."""
    view = memoryview(data)
    while view:
        n = pwrite(fd, view, offset)
        offset += n
        view = view[n:]


_HOLE_PAGE = 64 << 10
_ZERO_PAGE = bytes(_HOLE_PAGE)


def write_sparse(fd: int, data: bytes | memoryview, offset: int) -> None:
    """Write all of ``data`` at ``offset`` except the zero-filled 64 KiB-aligned pages, which
    stay holes: only for a new file sized (not yet written) over these bytes, since they must
    already read as zeros."""
    view = memoryview(data)
    start = 0  # of the bytes not yet written
    cut = -offset % _HOLE_PAGE
    while cut + _HOLE_PAGE <= len(view):
        if _ZERO_PAGE.startswith(view[cut:cut + _HOLE_PAGE]):
            write_all(fd, view[start:cut], offset + start)
            start = cut + _HOLE_PAGE
        cut += _HOLE_PAGE
    write_all(fd, view[start:], offset + start)


_NO_PREALLOCATE = {errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL, errno.ENOTSUP}
_NO_SEEK_HOLE = _NO_PREALLOCATE


def preallocate(fd: int, length: int, holes: bool = False) -> None:
    """Reserve ``length`` bytes for a file about to be written whole: writes into reserved
    blocks are faster (on ext4) and a full disk fails here, before
    any byte is written. Where the filesystem cannot, or the new file is to keep the holes of
    a sparse source (``holes``), the file is just sized."""
    fn = getattr(os, "posix_fallocate", None)
    if fn is not None and length > 0 and not holes:
        try:
            fn(fd, 0, length)
            return
        except OSError as exc:
            if exc.errno not in _NO_PREALLOCATE:
                raise
    os.ftruncate(fd, length)


def has_holes(st: os.stat_result) -> bool:
    """Whether a file is sparse: fewer bytes allocated than its size (never on Windows)."""
    blocks = getattr(st, "st_blocks", None)
    return blocks is not None and blocks * 512 < st.st_size


def data_runs(fd: int, offset: int, length: int) -> Iterator[tuple[int, int]]:
    """``(start, length)`` of the runs in ``[offset, offset + length)`` that hold data,
    skipping holes (``SEEK_DATA``/``SEEK_HOLE``); the whole range where the OS or the
    filesystem cannot tell. Nothing past the end of the file."""
    end = offset + length
    seek_data, seek_hole = getattr(os, "SEEK_DATA", None), getattr(os, "SEEK_HOLE", None)
    if seek_data is None or seek_hole is None:
        yield offset, length
        return
    pos = offset
    while pos < end:
        run = _next_data(fd, pos, end, seek_data, seek_hole)
        if run is None:
            return
        yield run
        pos = run[0] + run[1]


def _next_data(fd: int, pos: int, end: int, seek_data: int, seek_hole: int
               ) -> tuple[int, int] | None:
    with _seek:  # lseek moves the position other threads' seek+read fallbacks rely on
        try:
            start = os.lseek(fd, pos, seek_data)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # a hole up to the end of the file
                return None
            if exc.errno not in _NO_SEEK_HOLE:
                raise
            return pos, end - pos
        if start >= end:
            return None
        return start, min(os.lseek(fd, start, seek_hole), end) - start


_SYNC_FILE_RANGE_WAIT_BEFORE, _SYNC_FILE_RANGE_WRITE, _SYNC_FILE_RANGE_WAIT_AFTER = 1, 2, 4
_PAGE = 4096
# From this size on, bigfile drops a file's pages from the page cache once it is done with
# them (read and not needed again, or written and on disk), a window behind the reader or
# writer: the cache never fills (the kernel would throttle the writer) and other programs
# keep their cached data. Smaller files stay cached for whoever reads them next.
DROP_BEHIND_FROM = 256 << 20
_sync_file_range: Any = None  # resolved on first use: the libc function, or False


def _libc(name: str, restype: str, *argtypes: str) -> Any:
    """libc's ``name`` through ctypes (a foreign call releases the GIL), typed by the names
    of ctypes types, or False where libc has no such function. ctypes is imported here, on
    first use, not at start-up."""
    try:
        import ctypes

        fn = getattr(ctypes.CDLL(None, use_errno=True), name)
    except (OSError, AttributeError, TypeError):
        return False
    fn.restype = getattr(ctypes, restype)
    fn.argtypes = [getattr(ctypes, t) for t in argtypes]
    return fn


def _sync_range(fd: int, offset: int, length: int, flags: int) -> bool:
    """``sync_file_range`` over the whole pages among these bytes; False where it is missing."""
    global _sync_file_range
    if _sync_file_range is None:
        _sync_file_range = sys.platform.startswith("linux") and _libc(
            "sync_file_range", "c_int", "c_int", "c_int64", "c_int64", "c_uint")
    start = -(-offset // _PAGE) * _PAGE
    end = (offset + length) // _PAGE * _PAGE
    if not _sync_file_range:
        return False
    if end > start and _sync_file_range(fd, start, end - start, flags) != 0:
        # Never ignored: waiting for writeback consumes a write error that the final
        # fsync would otherwise have reported.
        import ctypes

        code = ctypes.get_errno()
        raise OSError(code, f"sync_file_range: {os.strerror(code)}")
    return True


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Start writing the whole pages among these dirty bytes to disk now (Linux
    ``sync_file_range``), so writeback overlaps the rest of the writing and the final fsync
    finds little left to do. Partial pages at either end are left alone: a later write into
    a page under writeback would wait for the disk.
    It promises nothing: durability still comes from fsync. A no-op where the call is
    missing."""
    _sync_range(fd, offset, length, _SYNC_FILE_RANGE_WRITE)


def advise_sequential(fd: int) -> None:
    """Tell the kernel a file will be read once, front to back: a larger read-ahead. Only
    advice: a no-op where the call is missing."""
    with contextlib.suppress(OSError, AttributeError):
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)


def drop_read(fd: int, offset: int, length: int) -> None:
    """Drop the (clean) pages of bytes read and not needed again from the page cache, so a
    scan of a file larger than memory does not evict everyone else's cached data. Only
    advice: a no-op where the call is missing."""
    with contextlib.suppress(OSError, AttributeError):
        os.posix_fadvise(fd, offset, length, os.POSIX_FADV_DONTNEED)


def drop_written(fd: int, offset: int, length: int) -> None:
    """Wait until the whole pages among these bytes (whose writeback was started) are on
    disk, then drop them from the page cache, so writing a file larger than memory does not
    evict everyone else's cached data. Where the wait is not available nothing is dropped:
    dropping dirty pages would only start their writeback."""
    if _sync_range(fd, offset, length, _SYNC_FILE_RANGE_WAIT_BEFORE | _SYNC_FILE_RANGE_WRITE
                   | _SYNC_FILE_RANGE_WAIT_AFTER):
        with contextlib.suppress(OSError):  # only advice: the bytes are on disk either way
            os.posix_fadvise(fd, offset, length, os.POSIX_FADV_DONTNEED)


def fsync_dir(path: str) -> None:
    """fsync a folder so a rename in it is durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_file(fd: int) -> None:
    """Flush a file to stable storage (``F_FULLFSYNC`` on macOS, where fsync is not enough)."""
    try:
        import fcntl
    except ImportError:  # Windows
        fcntl = None  # type: ignore[assignment]
    full = getattr(fcntl, "F_FULLFSYNC", None)
    if full is not None:
        try:
            fcntl.fcntl(fd, full)
            return
        except OSError:
            pass
    os.fsync(fd)
