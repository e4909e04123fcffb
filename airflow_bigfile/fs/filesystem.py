"""The ``bigfile`` fsspec protocol: any fsspec filesystem with atomic writes and ``r+b``.

``bigfile::s3://b/k``, ``bigfile::file:///x`` or ``bigfile::memory://x`` wrap the inner
filesystem. Reads pass straight through; writes never leave a half-written target:

- ``rb``: the inner filesystem's own file object.
- ``wb``/``xb``: spooled to a temporary file and committed on close (locally a rename over
  the target, elsewhere one upload); an exception inside ``with`` keeps the old file. Locally
  the new file keeps the target's owner, group, mode bits, extended attributes and ACLs, or
  the write is refused (:mod:`~airflow_bigfile.commit.metadata`); a target with other hard links is
  refused unless ``break_hardlinks=True``.
- ``ab``: spooled to a temporary file, then committed by the engine as one
  :class:`~airflow_bigfile.edits.Append` (on S3 a server-side multipart copy, no download).
- ``r+b``: a seekable file over the inner one whose writes and truncates are collected as
  an edit list and committed by :func:`~airflow_bigfile.edit_file` on close.

Inside ``fs.transaction`` nothing is committed before the transaction ends, and nothing at
all if it ends with an exception.

Examples
--------
>>> import fsspec
>>> with fsspec.open("bigfile::s3://bucket/huge.csv", "r+b") as f:  # doctest: +SKIP
...     f.seek(1_000_000)
...     f.write(b"fixed")
"""

from __future__ import annotations

import bisect
import contextlib
import io
import logging
import os
import sys
import tempfile
from typing import TYPE_CHECKING, Any

import fsspec
from fsspec.implementations.chained import ChainedFileSystem
from fsspec.implementations.local import LocalFileSystem, get_umask
from fsspec.utils import stringify_path

from airflow_bigfile.commit.metadata import check_hardlinks, keep_metadata
from airflow_bigfile.edits import Append, Patch, Truncate
from airflow_bigfile.exceptions import SourceChangedError, TargetNotFoundError
from airflow_bigfile.io.oscompat import fsync_dir, fsync_file
from airflow_bigfile.io.sidecars import Sidecars
from airflow_bigfile.payload import DataFile

if TYPE_CHECKING:
    from airflow_bigfile.edits import Edit

log = logging.getLogger(__name__)

#: Keyword arguments the fsspec base class understands itself; every other keyword given to
#: :class:`BigFileFileSystem` is an option of the inner filesystem.
_OWN_OPTIONS = frozenset({"use_listings_cache", "listings_expiry_time", "max_paths",
                          "skip_instance_cache"})
#: ``info()`` fields that change when an object is replaced (local, S3, memory, GCS, Azure).
_IDENTITY_FIELDS = ("size", "mtime", "ino", "ETag", "etag", "LastModified", "VersionId",
                    "generation", "created", "last_modified")


class BigFileFileSystem(ChainedFileSystem):
    """An fsspec filesystem over another one, adding atomic ``wb``, engine-backed ``ab``
    and ``r+b``, and ``fs.transaction``.

    Parameters
    ----------
    target_protocol : the inner filesystem's protocol (``"s3"``, ``"file"``, ...); fsspec
        passes it for chained URLs like ``bigfile::s3://b/k``.
    target_options : the inner filesystem's options (also passed to the engine as
        ``storage_options``).
    fs : an inner filesystem instance, instead of ``target_protocol``/``target_options``.
    fo : the inner path of a chained URL (fsspec passes it; unused).
    edit_options : extra keyword arguments for :func:`~airflow_bigfile.edit_file`
        (``shard_size``, ``workers``, ``executor``, ...).
    break_hardlinks : let ``wb`` and ``r+b`` replace a local file that has other hard links
        (they keep the old bytes); without it that is refused with ``HardLinkError``
        (``r+b`` edits that keep every byte's place are committed in place, links kept).
    **kwargs : options of the inner filesystem, merged into ``target_options`` (so
        ``pd.read_csv("bigfile::s3://...", storage_options={"anon": True})`` works).

    Examples
    --------
    >>> fs = fsspec.filesystem("bigfile", target_protocol="file")
    >>> with fs.open("/tmp/data.bin", "r+b") as f:  # doctest: +SKIP
    ...     f.truncate(10)
    """

    protocol = "bigfile"

    def __init__(self, target_protocol: str | None = None,
                 target_options: dict[str, Any] | None = None,
                 fs: fsspec.AbstractFileSystem | None = None, fo: str | None = None,
                 edit_options: dict[str, Any] | None = None, break_hardlinks: bool = False,
                 **kwargs: Any) -> None:
        own = {k: v for k, v in kwargs.items() if k in _OWN_OPTIONS}
        super().__init__(**own)
        if fs is None:
            options = {**(target_options or {}),
                       **{k: v for k, v in kwargs.items() if k not in _OWN_OPTIONS}}
            fs = fsspec.filesystem(target_protocol or "file", **options)
        self.fs = fs
        self.edit_options = dict(edit_options or {})
        self.break_hardlinks = break_hardlinks

    # -- paths --------------------------------------------------------------------------

    def _inner(self, path: Any) -> str:
        """The inner filesystem's path for ``path`` (``bigfile::s3://b/k``, ``s3://b/k`` or
        ``b/k``)."""
        path = stringify_path(path)
        for prefix in ("bigfile::", "bigfile://"):
            if path.startswith(prefix):
                path = path[len(prefix):]
        return self.fs._strip_protocol(path)

    def inner_url(self, path: str) -> str:
        """The URL the engine edits for ``path``: the plain path locally, else
        ``protocol://path``."""
        inner = self._inner(path)
        return inner if self.local else self.fs.unstrip_protocol(inner)

    def unstrip_protocol(self, name: str) -> str:
        return "bigfile::" + self.fs.unstrip_protocol(self._inner(name))

    @property
    def local(self) -> bool:
        """True when the inner filesystem is the local one."""
        return isinstance(self.fs, LocalFileSystem)

    @property
    def inner_options(self) -> dict[str, Any]:
        """The inner filesystem's options, as the engine's ``storage_options``."""
        return dict(self.fs.storage_options)

    def _edit(self, path: str, edits: list[Edit]) -> Any:
        from airflow_bigfile.api import edit_file

        options = {"break_hardlinks": self.break_hardlinks, **self.edit_options}
        return edit_file(self.inner_url(path), edits, storage_options=self.inner_options,
                         **options)

    # -- files ---------------------------------------------------------------------------

    def _open(self, path: str, mode: str = "rb", block_size: int | None = None,
              autocommit: bool = True, cache_options: dict[str, Any] | None = None,
              **kwargs: Any) -> Any:
        inner = self._inner(path)
        kind = "".join(sorted(mode.replace("b", "").replace("t", "")))
        if kind == "r":
            return self.fs.open(inner, "rb", block_size=block_size,
                                cache_options=cache_options, **kwargs)
        if kind == "+r":
            f = EditFile(self, inner, autocommit=autocommit, block_size=block_size,
                         cache_options=cache_options, **kwargs)
            if not autocommit:  # fsspec enlists only files whose mode lacks "r"
                self.transaction.files.append(f)
            return f
        if kind in ("w", "x", "a"):
            return SpoolFile(self, inner, kind, autocommit=autocommit)
        raise ValueError(f"bigfile: unsupported mode {mode!r} (rb, wb, xb, ab or r+b)")

    # -- everything else is the inner filesystem's ----------------------------------------

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> Any:
        return self.fs.ls(self._inner(path), detail=detail, **kwargs)

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        return self.fs.info(self._inner(path), **kwargs)

    def find(self, path: str, maxdepth: int | None = None, withdirs: bool = False,
             detail: bool = False, **kwargs: Any) -> Any:
        return self.fs.find(self._inner(path), maxdepth=maxdepth, withdirs=withdirs,
                            detail=detail, **kwargs)

    def cat_file(self, path: str, start: int | None = None, end: int | None = None,
                 **kwargs: Any) -> bytes:
        return self.fs.cat_file(self._inner(path), start=start, end=end, **kwargs)

    def cp_file(self, path1: str, path2: str, **kwargs: Any) -> None:
        self.fs.cp_file(self._inner(path1), self._inner(path2), **kwargs)

    def mv(self, path1: str, path2: str, **kwargs: Any) -> None:
        self.fs.mv(self._inner(path1), self._inner(path2), **kwargs)

    def rm_file(self, path: str) -> None:
        self.fs.rm_file(self._inner(path))

    def rm(self, path: Any, recursive: bool = False, maxdepth: int | None = None) -> None:
        paths = [self._inner(p) for p in path] if isinstance(path, list) else self._inner(path)
        self.fs.rm(paths, recursive=recursive, maxdepth=maxdepth)

    def mkdir(self, path: str, create_parents: bool = True, **kwargs: Any) -> None:
        self.fs.mkdir(self._inner(path), create_parents=create_parents, **kwargs)

    def makedirs(self, path: str, exist_ok: bool = False) -> None:
        self.fs.makedirs(self._inner(path), exist_ok=exist_ok)

    def rmdir(self, path: str) -> None:
        self.fs.rmdir(self._inner(path))

    def created(self, path: str) -> Any:
        return self.fs.created(self._inner(path))

    def modified(self, path: str) -> Any:
        return self.fs.modified(self._inner(path))

    def sign(self, path: str, expiration: int = 100, **kwargs: Any) -> str:
        return self.fs.sign(self._inner(path), expiration=expiration, **kwargs)

    def invalidate_cache(self, path: str | None = None) -> None:
        self.fs.invalidate_cache(None if path is None else self._inner(path))


def _identity(info: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(info.get(k) for k in _IDENTITY_FIELDS)


class _Deferred(io.RawIOBase):
    """A file whose changes reach the target only through :meth:`commit`.

    ``close()`` commits when ``autocommit`` (else the transaction commits later);
    ``with`` commits only without an exception (``complete(commit=exc_type is None)``),
    and so does ``close()`` called while an exception raised after the open propagates
    (which is how ``fsspec.open(...)``'s context closes its file).
    """

    def __init__(self, autocommit: bool) -> None:
        super().__init__()
        self.autocommit = autocommit
        self._pending = False            # closed, waiting for the transaction's commit
        self._done = False               # committed or discarded
        self._opened_during = sys.exc_info()[1]

    def __enter__(self) -> _Deferred:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.discard()

    def close(self) -> None:
        if self.closed:
            return
        failing = sys.exc_info()[1]
        if failing is not None and failing is not self._opened_during:
            log.debug("%s: closed while %r propagates: discarding", self, failing)
            self.discard()
            return
        self._opened_during = None
        try:
            self._finish_writing()
        except BaseException:
            self.discard()
            raise
        super().close()
        if self.autocommit:
            self.commit()
        else:
            self._pending = True

    def commit(self) -> None:
        """Commit the changes to the target (once; later calls do nothing)."""
        if self._done:
            return
        if not self.closed:
            self._finish_writing()
            super().close()
        self._done = True
        try:
            self._commit()
        finally:
            self._cleanup()

    def discard(self) -> None:
        """Drop the changes; the target stays as it was."""
        self._opened_during = None
        if not self._done:
            self._done = True
            self._cleanup()
        if not self.closed:
            super().close()

    def __del__(self) -> None:
        # Never commit from the garbage collector: an unclosed file is discarded.
        if not getattr(self, "_done", True) and not getattr(self, "_pending", False):
            log.warning("bigfile: %r was never closed; its changes are discarded", self)
            self.discard()

    def _finish_writing(self) -> None:
        """Flush what is buffered before the file closes."""

    def _commit(self) -> None:
        raise NotImplementedError

    def _cleanup(self) -> None:
        """Release temporary files and the source."""


class SpoolFile(_Deferred):
    """``wb``/``xb``/``ab``: bytes go to a local temporary file; the commit renames it over
    the target (local), uploads it (elsewhere) or appends it through the engine (``ab``)."""

    def __init__(self, fs: BigFileFileSystem, path: str, kind: str, autocommit: bool = True
                 ) -> None:
        if kind == "x" and fs.fs.exists(path):
            raise FileExistsError(path)
        beside = fs.local            # same filesystem, so the commit is a rename
        # A link is followed (the file it names is replaced, the link stays a link), except
        # by exclusive creation, which never creates through a link.
        # The file it named is pinned (see Sidecars.repinned): the commit copies metadata
        # from that file only, never from a link or another user's file put in its place.
        self._cars = Sidecars.of(path) if beside and kind == "w" else None
        self._real = self._cars.path if self._cars is not None else path
        folder = os.path.dirname(self._real) if beside else None
        prefix = f".{os.path.basename(self._real)}." if beside else "bigfile-"
        fd, self._temp = tempfile.mkstemp(dir=folder, prefix=prefix, suffix=".bigfile-tmp")
        super().__init__(autocommit)
        self._file = os.fdopen(fd, "w+b")
        self.fs, self.path, self.kind = fs, path, kind

    def __repr__(self) -> str:
        return f"<bigfile {self.kind}b file {self.path!r}>"

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self._checkClosed()
        return self._file.write(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        self._checkClosed()
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        self._checkClosed()
        return self._file.tell()

    def truncate(self, size: int | None = None) -> int:
        self._checkClosed()
        return self._file.truncate(size)

    def flush(self) -> None:
        if not self._file.closed:
            self._file.flush()

    def _finish_writing(self) -> None:
        self._file.flush()
        if self.fs.local:
            fsync_file(self._file.fileno())
        self._file.close()

    def _commit(self) -> None:
        if self.kind == "a" and self._append():
            return
        if self.fs.local:
            self._replace_local()
        else:
            self.fs.fs.put_file(self._temp, self.path)
        self.fs.fs.invalidate_cache(self.path)

    def _append(self) -> bool:
        """Append through the engine; False when the target does not exist yet."""
        if not self.fs.fs.exists(self.path):
            return False
        if os.path.getsize(self._temp):
            data = DataFile(self._temp)  # read in chunks, not whole
            try:
                self.fs._edit(self.path, [Append(data)])
            except TargetNotFoundError:
                return False
            finally:
                data.close()
        return True

    def _replace_local(self) -> None:
        source = None
        if self._cars is not None:
            with contextlib.suppress(FileNotFoundError):
                source = self._cars.repinned().open_target(os.O_RDONLY)
        if source is None:
            os.chmod(self._temp, 0o666 & ~get_umask())
            self._rename()
            return
        try:
            st = os.fstat(source)
            check_hardlinks(st, self.path, self.fs.break_hardlinks)
            fd = os.open(self._temp, os.O_RDONLY)
            try:
                keep_metadata(source, fd, st, self.path)
                fsync_file(fd)
            finally:
                os.close(fd)
        finally:
            os.close(source)
        self._rename()

    def _rename(self) -> None:
        if self.kind == "x":
            try:
                os.link(self._temp, self.path)      # fails if the target appeared meanwhile
            except FileExistsError:
                raise
            except OSError:                         # no hard links here
                if os.path.exists(self.path):
                    raise FileExistsError(self.path) from None
                os.replace(self._temp, self._real)
        else:
            os.replace(self._temp, self._real)
        fsync_dir(os.path.dirname(self._real) or ".")

    def _cleanup(self) -> None:
        if not self._file.closed:
            self._file.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._temp)


class EditFile(_Deferred):
    """``r+b``: a seekable, readable, writable view of the inner file; writes and truncates
    are kept in memory and become one edit list (:meth:`edits`) committed by the engine.

    Reads see the file's own writes. Overlapping writes merge (the last one wins); bytes
    past the original end become an :class:`~airflow_bigfile.edits.Append`, a shrinking
    ``truncate()`` a :class:`~airflow_bigfile.edits.Truncate`. The commit refuses with
    :class:`~airflow_bigfile.exceptions.SourceChangedError` if the target changed since
    it was opened.
    """

    def __init__(self, fs: BigFileFileSystem, path: str, autocommit: bool = True,
                 **open_kwargs: Any) -> None:
        info = fs.fs.info(path)
        if info.get("type") == "directory":
            raise IsADirectoryError(path)
        self._source = fs.fs.open(path, "rb", **open_kwargs)
        super().__init__(autocommit)
        self.fs, self.path = fs, path
        self._identity = _identity(info)
        self._original = int(info["size"])
        self._size = self._original     # the file's size as its writer sees it
        self._low = self._original      # original bytes at and past this are gone (zeros)
        self._pos = 0
        self._starts: list[int] = []    # written extents: sorted, disjoint, not adjacent
        self._bufs: list[bytearray] = []

    def __repr__(self) -> str:
        return f"<bigfile r+b file {self.path!r}>"

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    @property
    def size(self) -> int:
        """The current size, with the pending writes and truncates."""
        return self._size

    def tell(self) -> int:
        self._checkClosed()
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        self._checkClosed()
        base = {0: 0, 1: self._pos, 2: self._size}.get(whence)
        if base is None:
            raise ValueError(f"invalid whence ({whence}, should be 0, 1 or 2)")
        if base + offset < 0:
            raise ValueError(f"negative seek position {base + offset}")
        self._pos = base + offset
        return self._pos

    def read(self, size: int | None = -1) -> bytes:
        self._checkClosed()
        end = self._size if size is None or size < 0 else min(self._size, self._pos + size)
        if end <= self._pos:
            return b""
        data = self._bytes(self._pos, end)
        self._pos = end
        return bytes(data)

    def readall(self) -> bytes:
        return self.read(-1)

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(memoryview(buffer).cast("B")))
        memoryview(buffer).cast("B")[:len(data)] = data
        return len(data)

    def write(self, data: Any) -> int:
        self._checkClosed()
        data = memoryview(data).cast("B")
        if not len(data):
            return 0
        self._put(self._pos, data)
        self._pos += len(data)
        self._size = max(self._size, self._pos)
        return len(data)

    def truncate(self, size: int | None = None) -> int:
        self._checkClosed()
        size = self._pos if size is None else size
        if size < 0:
            raise ValueError(f"negative size value {size}")
        if size < self._size:
            i = bisect.bisect_left(self._starts, size)
            del self._starts[i:], self._bufs[i:]
            if i and self._starts[i - 1] + len(self._bufs[i - 1]) > size:
                del self._bufs[i - 1][size - self._starts[i - 1]:]
            self._low = min(self._low, size)
        self._size = size
        return size

    def flush(self) -> None:
        self._checkClosed()

    def edits(self) -> list[Edit]:
        """The pending changes as an edit list in the original file's coordinates."""
        keep = min(self._low, self._size)           # original bytes still there
        out: list[Edit] = []
        for start, buf in zip(self._starts, self._bufs, strict=True):
            if start >= keep:
                break
            out.append(Patch(start, bytes(buf[:keep - start])))
        if self._size <= self._low:
            if self._size < self._original:
                out.append(Truncate(self._size))
            return out
        tail = self._low
        if self._low < self._original:
            out.append(Truncate(self._low))
        else:                                       # grow with zeros up to the first write
            i = bisect.bisect_right(self._starts, tail) - 1
            if i < 0 or self._starts[i] + len(self._bufs[i]) <= tail:
                gap = self._starts[i + 1] if i + 1 < len(self._starts) else self._size
                if gap > tail:
                    out.append(Truncate(gap))
                    tail = gap
        if self._size > tail:
            out.append(Append(bytes(self._bytes(tail, self._size))))
        return out

    # -- internals -----------------------------------------------------------------------

    def _put(self, pos: int, data: memoryview) -> None:
        """Record ``data`` at ``pos``, merging with extents it overlaps or touches."""
        end = pos + len(data)
        starts, bufs = self._starts, self._bufs
        i = bisect.bisect_right(starts, pos) - 1
        if i < 0 or starts[i] + len(bufs[i]) < pos:
            i += 1
        j = i
        while j < len(starts) and starts[j] <= end:
            j += 1
        if i == j:
            starts.insert(i, pos)
            bufs.insert(i, bytearray(data))
            return
        last_start, last = starts[j - 1], bufs[j - 1]
        if starts[i] <= pos:
            buf, start = bufs[i], starts[i]
            if i == j - 1:
                buf[pos - start:min(len(buf), end - start)] = data
            else:
                tail = last[end - last_start:]
                del buf[pos - start:]
                buf += data
                buf += tail
        else:
            buf, start = bytearray(data), pos
            buf += last[end - last_start:]
        starts[i:j] = [start]
        bufs[i:j] = [buf]

    def _bytes(self, start: int, end: int) -> bytearray:
        """The current bytes ``[start, end)``: original bytes below the low-water mark,
        zeros above it, the writes over both."""
        out = bytearray(end - start)
        keep = min(self._low, end)
        if start < keep:
            self._source.seek(start)
            got = self._source.read(keep - start)
            if len(got) != keep - start:
                raise SourceChangedError(
                    f"{self.path} shrank to {start + len(got)} bytes while open in r+b; "
                    "nothing was committed")
            out[:len(got)] = got
        i = max(0, bisect.bisect_right(self._starts, start) - 1)
        while i < len(self._starts) and self._starts[i] < end:
            s, buf = self._starts[i], self._bufs[i]
            lo, hi = max(s, start), min(s + len(buf), end)
            if lo < hi:
                out[lo - start:hi - start] = buf[lo - s:hi - s]
            i += 1
        return out

    def _finish_writing(self) -> None:
        self._source.close()

    def _commit(self) -> None:
        edits = self.edits()
        if not edits:
            return
        self.fs.fs.invalidate_cache(self.path)
        if _identity(self.fs.fs.info(self.path)) != self._identity:
            raise SourceChangedError(
                f"{self.path} changed since it was opened in r+b mode; nothing was committed")
        self.fs._edit(self.path, edits)
        self.fs.fs.invalidate_cache(self.path)

    def _cleanup(self) -> None:
        self._source.close()
        self._starts, self._bufs = [], []


__all__ = ["BigFileFileSystem", "EditFile", "SpoolFile"]
