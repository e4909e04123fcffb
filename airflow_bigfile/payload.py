"""Edit data that need not fit in memory.

The data of a :class:`~airflow_bigfile.Patch`, :class:`~airflow_bigfile.Insert` or
:class:`~airflow_bigfile.Append` is ``bytes`` held as given (never copied), a local file
(:class:`DataFile`), or, for workers, a copy in the job's staging (:class:`StagedPayload`)
whose every chunk is checked against a CRC32C the manifest records. Consumers take any of
them a few MiB at a time through :func:`chunks`, or slice a bounded range with ``data[a:b]``.
"""

from __future__ import annotations

import os
import re
import stat
import threading
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from airflow_bigfile.exceptions import PayloadError, ShardChecksumError, StagingError

if TYPE_CHECKING:
    from airflow_bigfile.io.storage import Staging

CHUNK = 4 << 20  # bytes read, written or checked at a time
INLINE_MAX = 64 << 10  # larger payloads leave the manifest's JSON for a staged file
_STAGED_NAME = re.compile(r"payload-\d{1,7}\.bin")


class _Ranged:
    """A payload read by ranges: ``len()``, ``data[a:b]`` (bounded by the caller) and
    equality by what it is, not by its bytes."""

    def __len__(self) -> int:
        raise NotImplementedError

    def read(self, offset: int, length: int) -> bytes:
        raise NotImplementedError

    def __getitem__(self, key: slice) -> bytes:
        if not isinstance(key, slice) or key.step not in (None, 1):
            raise TypeError(f"{type(self).__name__} takes slices only")
        start, stop, _ = key.indices(len(self))
        return self.read(start, max(0, stop - start))

    def __bytes__(self) -> bytes:
        return self.read(0, len(self))


class DataFile(_Ranged):
    """Edit data read from a local file in chunks, never whole.

    The file's size, mtime and inode are taken when the object is made; a file that is
    gone, shorter or changed when its bytes are read fails the edit with
    :class:`~airflow_bigfile.exceptions.PayloadError` (before the target is touched, or
    rolled back).

    Examples
    --------
    >>> edit_file("big.bin", [Insert(0, DataFile("header.bin"))])  # doctest: +SKIP
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.path.abspath(os.fspath(path))
        try:
            st = os.stat(self.path)
        except OSError as exc:
            raise PayloadError(f"cannot read data file {self.path}: {exc.strerror}; "
                               f"check the path") from None
        if not stat.S_ISREG(st.st_mode):
            raise PayloadError(f"data file {self.path} is not a regular file; give a file "
                               f"(a pipe or device cannot be read twice)")
        self.size, self._stamp = st.st_size, (st.st_size, st.st_mtime_ns, st.st_ino)
        self._dev = st.st_dev
        self._fd: int | None = None
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return self.size

    def same_file(self, st: os.stat_result) -> bool:
        """True if ``st`` is this data file's (the same device and inode)."""
        return (self._dev, self._stamp[2]) == (st.st_dev, st.st_ino)

    def __repr__(self) -> str:
        return f"DataFile({self.path!r}, {self.size} bytes)"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DataFile) and (self.path, self._stamp) == (other.path,
                                                                           other._stamp)

    def __hash__(self) -> int:
        return hash((self.path, self._stamp))

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "_stamp": self._stamp, "_dev": self._dev}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _fd=None, _lock=threading.Lock())

    def _changed(self, what: str) -> PayloadError:
        return PayloadError(f"data file {self.path} {what} since the edit was made "
                            f"({self.size} bytes); nothing was changed by this read, "
                            f"run the edit again")

    def _open(self) -> int:
        with self._lock:
            if self._fd is None:
                try:
                    self._fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
                except OSError as exc:
                    raise self._changed(f"cannot be opened ({exc.strerror})") from None
            return self._fd

    def read(self, offset: int, length: int) -> bytes:
        """``length`` bytes from ``offset``, after checking the file is still the one the
        edit was made with."""
        fd = self._open()
        st = os.fstat(fd)
        if (st.st_size, st.st_mtime_ns, st.st_ino) != self._stamp:
            raise self._changed(f"changed (now {st.st_size} bytes)")
        parts, done = [], 0
        while done < length:
            part = os.pread(fd, length - done, offset + done)
            if not part:
                raise self._changed("got shorter")
            parts.append(part)
            done += len(part)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def __del__(self) -> None:
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)  # type: ignore[arg-type]


class StagedPayload(_Ranged):
    """Edit data staged once in a job's staging as ``name``; each :data:`CHUNK` is checked
    against its CRC32C (from the manifest, which the batch's SHA-256 vouches for) before
    any of its bytes is used. Pickles as a reference: a process or Dask worker reads the
    staged file, it is not sent the bytes."""

    def __init__(self, staging: Staging, name: str, size: int, crcs: list[int]) -> None:
        if not isinstance(name, str) or not _STAGED_NAME.fullmatch(name):
            raise StagingError(f"staged payload name {name!r} is not one bigfile makes")
        if size < 0 or len(crcs) != -(-size // CHUNK):
            raise StagingError(f"staged payload {name}: {len(crcs)} checksums do not fit "
                               f"{size} bytes")
        self.staging, self.name, self.size, self.crcs = staging, name, size, list(crcs)
        self.__setstate__(self.__getstate__())

    def __len__(self) -> int:
        return self.size

    def __repr__(self) -> str:
        return f"StagedPayload({self.name!r}, {self.size} bytes)"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StagedPayload) and (self.name, self.crcs) == (other.name,
                                                                              other.crcs)

    def __hash__(self) -> int:
        return hash((self.name, self.size))

    def __getstate__(self) -> dict[str, Any]:
        return {"staging": self.staging, "name": self.name, "size": self.size,
                "crcs": self.crcs}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _lock=threading.Lock(), _cached=(-1, b""))

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "size": self.size, "crc32c": self.crcs}

    def _chunk(self, index: int) -> bytes:
        from airflow_bigfile.io.checksum import crc32c

        with self._lock:
            if self._cached[0] == index:
                return self._cached[1]
            want = min(CHUNK, self.size - index * CHUNK)
            with self.staging.open_read(self.name) as f:
                f.seek(index * CHUNK)
                data = f.read(want)
            if len(data) != want or crc32c(data) != self.crcs[index]:
                raise ShardChecksumError(
                    f"staged payload {self.staging.path(self.name)} is damaged (bytes "
                    f"{index * CHUNK}..{index * CHUNK + want} fail their CRC32C); nothing "
                    f"was committed, run the edit again")
            self._cached = (index, data)
            return data

    def read(self, offset: int, length: int) -> bytes:
        end = offset + length
        parts = []
        for index in range(offset // CHUNK, -(-end // CHUNK)):
            base = index * CHUNK
            parts.append(self._chunk(index)[max(offset, base) - base:min(end, base + CHUNK)
                                           - base])
        return parts[0] if len(parts) == 1 else b"".join(parts)


Data = bytes | DataFile | StagedPayload


def is_ranged(data: object) -> bool:
    """True for a payload read by ranges (not held in memory)."""
    return isinstance(data, _Ranged)


def chunks(data: Data, size: int | None = None) -> Iterator[bytes | memoryview]:
    """``data`` :data:`CHUNK` bytes (or ``size``) at a time; in-memory bytes as views."""
    size = size or CHUNK
    if isinstance(data, _Ranged):
        for offset in range(0, len(data), size):
            yield data.read(offset, min(size, len(data) - offset))
        return
    view = memoryview(data)
    for offset in range(0, len(view), size):
        yield view[offset:offset + size]


def placed_chunks(writes: Iterable[tuple[int, Data]]
                  ) -> Iterator[tuple[int, bytes | memoryview]]:
    """``(offset, data)`` writes as ``(offset, chunk)`` writes of bounded size."""
    for offset, data in writes:
        for piece in chunks(data):
            yield offset, piece
            offset += len(piece)


def stage_payload(data: Data, staging: Staging, name: str) -> StagedPayload:
    """Copy ``data`` into ``staging`` as ``name`` a chunk at a time, with a CRC32C per
    chunk, and return the reference workers read it through."""
    from airflow_bigfile.io.checksum import (
        crc32c,  # not at import: the edit classes stay light for the CLI
    )

    crcs = []
    f = staging.open_write(name)
    try:
        for piece in chunks(data):
            f.write(piece)
            crcs.append(crc32c(piece))
    finally:
        f.close()
    return StagedPayload(staging, name, len(data), crcs)


def refuse_the_target_as_data(edits: Iterable[Any], target: str) -> None:
    """Refuse, before any I/O, a data file that is the local file ``target`` itself: an
    edit would read its bytes while it writes them (an append in place reads its own
    growth and can never finish; a patch reads bytes it has already overwritten)."""
    try:
        st = os.stat(target)
    except OSError:
        return
    for edit in edits:
        data = getattr(edit, "data", None)
        if isinstance(data, DataFile) and data.same_file(st):
            raise PayloadError(f"data file {data.path} is the file being edited; copy it "
                               f"first and give the copy")
