"""Reading the source and keeping the staging area, locally or through fsspec.

A local path is served by :class:`LocalFiles` (``os`` calls), not by fsspec: a job on a local
file never imports fsspec, whose import (asyncio, its plugin registry) is a visible share
of a short command's time. Every other URL goes through fsspec.
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar

from airflow_bigfile.exceptions import StagingError
from airflow_bigfile.io.oscompat import DROP_BEHIND_FROM, advise_sequential, drop_read, readinto
from airflow_bigfile.io.retry import retried
from airflow_bigfile.io.sidecars import check_same_file, remove_job_folder

if TYPE_CHECKING:
    import fsspec

T = TypeVar("T")


class LocalFiles:
    """The local filesystem for a path given as a plain path: the few filesystem calls the
    staging makes of a local folder, as ``os`` calls (reads and writes of local files
    never go through a filesystem object: see :class:`Source` and :class:`Staging`)."""

    protocol = ("file", "local")

    def makedirs(self, path: str, exist_ok: bool = False) -> None:
        os.makedirs(path, exist_ok=exist_ok)

    def cat_file(self, path: str) -> bytes:
        with open(path, "rb") as f:
            return f.read()

    def ls(self, path: str, detail: bool = False) -> list[str]:
        """The paths in the folder ``path`` (names only: ``detail`` must be False)."""
        if detail:
            raise ValueError("LocalFiles.ls lists names only")
        return [posixpath.join(path, name) for name in sorted(os.listdir(path))]


LOCAL = LocalFiles()


def is_local(fs: Any) -> bool:
    """True for the local filesystem, where the kernel fast paths apply: :data:`LOCAL` or
    fsspec's (which is only there when fsspec was imported)."""
    if isinstance(fs, LocalFiles):
        return True
    module = sys.modules.get("fsspec.implementations.local")
    return module is not None and isinstance(fs, module.LocalFileSystem)


def url_to_fs(url: str, storage_options: dict[str, Any] | None = None
              ) -> tuple[Any, str]:
    """The filesystem and path for ``url``: :data:`LOCAL` and the absolute path (as fsspec
    makes it: the working folder joined, ``~`` expanded, nothing else resolved) for a
    plain local path with no options, else fsspec's for the URL."""
    if not storage_options and _plain_path(url):
        return LOCAL, _absolute(url)
    import fsspec.core

    return fsspec.core.url_to_fs(url, **(storage_options or {}))


def _plain_path(url: str) -> bool:
    """A POSIX path with nothing fsspec reads as a protocol or a chain in it."""
    return (isinstance(url, str) and bool(url) and os.sep == "/" and "://" not in url
            and "::" not in url and not url.startswith(("data:", "file:", "local:")))


def _absolute(path: str) -> str:
    """fsspec's ``LocalFileSystem._strip_protocol`` of a plain POSIX path."""
    if path.startswith("~"):
        path = os.path.expanduser(path)
    elif not path.startswith("/"):
        rest = path[2:] if path.startswith("./") else "" if path == "." else path
        path = f"{os.getcwd()}/{rest}"
    return path.rstrip("/") or "/"


@dataclass(frozen=True)
class Identity:
    """What must not change between plan and commit: size, plus mtime, ctime, inode and
    device locally, or the ETag/version on object stores. Any write moves a local file's
    ctime, and no writer can set it back, so a writer that keeps size, mtime and inode is
    still told apart."""

    size: int
    mtime_ns: int | None = None
    inode: int | None = None
    etag: str | None = None
    ctime_ns: int | None = None
    device: int | None = None

    @property
    def pin(self) -> tuple[int, int] | None:
        """``(device, inode)`` of a local file (see :meth:`.Sidecars.open_target`)."""
        return None if self.device is None or self.inode is None else (self.device,
                                                                        self.inode)

    @classmethod
    def of_stat(cls, st: os.stat_result) -> Identity:
        """A local file's identity from its ``stat``."""
        return cls(size=st.st_size, mtime_ns=st.st_mtime_ns, inode=st.st_ino,
                   ctime_ns=st.st_ctime_ns, device=st.st_dev)

    def to_dict(self) -> dict[str, Any]:
        return {"size": self.size, "mtime_ns": self.mtime_ns, "inode": self.inode,
                "etag": self.etag, "ctime_ns": self.ctime_ns, "device": self.device}


def local_identity(path: str) -> Identity:
    return Identity.of_stat(os.stat(path))


class Source:
    """Positional reads of the original file into caller-owned buffers; a local one is
    refused unless it is the file ``pin`` names (``(device, inode)``, when given)."""

    def __init__(self, fs: fsspec.AbstractFileSystem | LocalFiles, path: str,
                 pin: tuple[int, int] | None = None) -> None:
        self.fs, self.path = fs, path
        self._fd: int | None = None
        self._file: BinaryIO | None = None
        self._drop_behind = False
        if is_local(fs):
            self._fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
            try:
                st = os.fstat(self._fd)
                check_same_file(pin, st, path)
            except BaseException:
                os.close(self._fd)
                raise
            advise_sequential(self._fd)
            self._drop_behind = st.st_size >= DROP_BEHIND_FROM
        else:
            self._file = retried(fs.open, path, "rb", block_size=0, cache_type="none")

    def readinto(self, offset: int, view: memoryview) -> int:
        """Fill ``view`` from ``offset``; returns the bytes read (short only at EOF).
        Transient failures of remote reads are retried."""
        if self._fd is not None:  # local: the kernel retries EINTR, nothing else is transient
            return self._readinto(offset, view)
        return retried(self._readinto, offset, view)

    def _readinto(self, offset: int, view: memoryview) -> int:
        done = 0
        while done < len(view):
            if self._fd is not None:
                n = readinto(self._fd, view[done:], offset + done)
            else:
                assert self._file is not None
                self._file.seek(offset + done)
                n = self._file.readinto(view[done:])
            if not n:
                break
            done += n
        return done

    def done_with(self, offset: int, length: int) -> None:
        """Bytes no one will read again: out of the page cache, for a local file of at least
        :data:`~airflow_bigfile.io.oscompat.DROP_BEHIND_FROM` bytes."""
        if self._drop_behind and self._fd is not None:
            drop_read(self._fd, offset, length)

    @property
    def fileno(self) -> int | None:
        return self._fd

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._file is not None:
            # A read handle holds nothing to lose: a failing close is not the edit's failure.
            with contextlib.suppress(Exception):
                self._file.close()
            self._file = None

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Upload:
    """A local temporary file that is uploaded to ``fs``/``path`` when closed."""

    def __init__(self, fs: fsspec.AbstractFileSystem, path: str) -> None:
        self.fs, self.path = fs, path
        self.file = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()

    def write(self, data: bytes | memoryview) -> int:
        return self.file.write(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.file.seek(offset, whence)

    def close(self) -> None:
        if self.file.closed:
            return
        self.file.seek(0)
        def upload() -> None:
            self.file.seek(0)
            with self.fs.open(self.path, "wb") as out:
                shutil.copyfileobj(self.file, out, 8 << 20)

        try:
            retried(upload)
        finally:
            self.file.close()


class Staging:
    """A folder (local or any fsspec URL) holding one job's manifest, shards and results."""

    def __init__(self, fs: fsspec.AbstractFileSystem | LocalFiles, root: str) -> None:
        self.fs, self.root = fs, root.rstrip("/")
        self._readers: dict[str, BinaryIO] = {}

    @property
    def local(self) -> bool:
        return is_local(self.fs)

    def path(self, name: str) -> str:
        return posixpath.join(self.root, name)

    def url(self) -> str:
        protocol = self.fs.protocol if isinstance(self.fs.protocol, str) else self.fs.protocol[0]
        return self.root if protocol in ("file", "local") else f"{protocol}://{self.root}"

    def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)``; on a remote store, transient failures are retried."""
        return fn(*args, **kwargs) if self.local else retried(fn, *args, **kwargs)

    def create(self) -> None:
        self._call(self.fs.makedirs, self.root, exist_ok=True)

    def open_write(self, name: str) -> BinaryIO:
        """A seekable file for a staged shard; on object stores it is spooled to a local
        temporary file and uploaded when closed."""
        if self.local:
            return open(self.path(name), "w+b")  # noqa: SIM115 - closed by its caller
        return _Upload(self.fs, self.path(name))

    def open_read(self, name: str) -> BinaryIO:
        try:
            if self.local:
                return open(self.path(name), "rb")  # noqa: SIM115 - closed by its caller
            return self._call(self.fs.open, self.path(name), "rb")
        except FileNotFoundError as exc:
            raise StagingError(f"staged file {self.path(name)} is missing") from exc

    def reader(self, name: str) -> BinaryIO:
        """A shared read handle on a staged file, kept open until :meth:`close_readers`
        (many shards live in one batch file)."""
        if name not in self._readers:
            self._readers[name] = self.open_read(name)
        return self._readers[name]

    def close_readers(self) -> None:
        for f in self._readers.values():
            f.close()
        self._readers.clear()

    def write_json(self, name: str, obj: Any) -> None:
        self.write_bytes(name, json.dumps(obj, separators=(",", ":")).encode())

    def write_bytes(self, name: str, data: bytes) -> None:
        """Write a small file whole (locally through a renamed temporary file)."""
        if self.local:
            tmp = self.path(name + ".tmp")
            os.makedirs(os.path.dirname(tmp), exist_ok=True)
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, self.path(name))
        else:
            self._call(self.fs.pipe_file, self.path(name), data)

    def read_json(self, name: str) -> Any:
        return self.parse_json(name, self.read_bytes(name))

    def read_bytes(self, name: str) -> bytes:
        try:
            return self._call(self.fs.cat_file, self.path(name))
        except FileNotFoundError as exc:
            raise StagingError(f"staged file {self.path(name)} is missing") from exc

    def parse_json(self, name: str, data: bytes) -> Any:
        """``data`` (the bytes of the staged file ``name``) as JSON."""
        try:
            return json.loads(data)
        except ValueError as exc:
            raise StagingError(f"staged file {self.path(name)} is not valid JSON") from exc

    def destroy(self) -> None:
        """Remove the whole staging folder (a local one marker last, so that a kill half
        way leaves a folder recovery still knows for bigfile's)."""
        self.close_readers()
        if self.local:
            remove_job_folder(self.root)
            return
        with contextlib.suppress(FileNotFoundError):
            self._call(self.fs.rm, self.root, recursive=True)
