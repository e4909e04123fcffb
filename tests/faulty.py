"""A faulty fsspec filesystem: wraps another one and fails chosen calls.

``faulty::memory://bucket/key`` reaches the inner filesystem through this wrapper; the
class-level :attr:`FaultyFileSystem.plan` decides which call fails and how, and
:attr:`FaultyFileSystem.calls` counts every call (reads and writes of open files too).
With :meth:`FaultyFileSystem.fail_reads` the faults count reads only (``cat_file`` and the
reads of open files), and one fault may last from a read on.

The faults are what the backends raise: an ``OSError`` with its errno, a connection reset,
a timeout, and s3fs's translation of botocore's ``ClientError`` for S3 answers (a
``PermissionError`` for 403, an ``OSError(EBUSY)`` for 503 SlowDown, an
``OSError(EREMOTEIO)`` for 500), each with the ``ClientError`` as its ``__cause__``.
"""

from __future__ import annotations

import errno
from typing import Any, ClassVar

import fsspec
from fsspec.implementations.chained import ChainedFileSystem


def _s3_answer(status: int, code: str, message: str) -> Exception:
    """What s3fs raises when S3 answers ``status``/``code``."""
    from botocore.exceptions import ClientError
    from s3fs.errors import translate_boto_error

    error = ClientError({"Error": {"Code": code, "Message": message},
                         "ResponseMetadata": {"HTTPStatusCode": status}}, "GetObject")
    return translate_boto_error(error)


FAULTS = {
    "EIO": lambda: OSError(errno.EIO, "Input/output error"),
    "ENOSPC": lambda: OSError(errno.ENOSPC, "No space left on device"),
    "403": lambda: _s3_answer(403, "AccessDenied", "Access Denied"),
    "timeout": lambda: TimeoutError("the store timed out"),
    "reset": lambda: ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"),
    "503": lambda: _s3_answer(503, "SlowDown", "Please reduce your request rate."),
    "500": lambda: _s3_answer(500, "InternalError", "We encountered an internal error."),
}
TRANSIENT = ("timeout", "reset", "503", "500")
PERMANENT = ("EIO", "ENOSPC", "403")


class FaultyFileSystem(ChainedFileSystem):
    """Forwards to ``target_protocol``'s filesystem, failing per :attr:`plan`."""

    protocol = "faulty"
    cachable = False
    calls: ClassVar[int] = 0
    reads: ClassVar[int] = 0
    # call number -> fault name; a transient fault may be listed for several calls
    plan: ClassVar[dict[int, str]] = {}
    # (first read, fault name): every read from that one on fails
    read_fault: ClassVar[tuple[int, str] | None] = None

    def __init__(self, target_protocol: str = "memory", target_options: dict | None = None,
                 fo: str = "", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.inner = fsspec.filesystem(target_protocol, **(target_options or {}))

    @classmethod
    def reset(cls, plan: dict[int, str] | None = None) -> None:
        cls.calls = cls.reads = 0
        cls.plan = dict(plan or {})
        cls.read_fault = None

    @classmethod
    def fail_reads(cls, first: int, fault: str) -> None:
        """From the ``first`` read on (counting from now), every read raises ``fault``."""
        cls.reset()
        cls.read_fault = (first, fault)

    @classmethod
    def tick(cls, read: bool = False) -> None:
        cls.calls += 1
        fault = cls.plan.get(cls.calls)
        if read:
            cls.reads += 1
            if cls.read_fault and cls.reads >= cls.read_fault[0]:
                fault = cls.read_fault[1]
        if fault:
            raise FAULTS[fault]()

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        self.tick()
        return self.inner.info(path, **kwargs)

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> Any:
        self.tick()
        return self.inner.ls(path, detail=detail, **kwargs)

    def cat_file(self, path: str, start: int | None = None, end: int | None = None,
                 **kwargs: Any) -> bytes:
        self.tick(read=True)
        return self.inner.cat_file(path, start=start, end=end, **kwargs)

    def pipe_file(self, path: str, value: bytes, **kwargs: Any) -> None:
        self.tick()
        self.inner.pipe_file(path, value, **kwargs)

    def mv(self, path1: str, path2: str, **kwargs: Any) -> None:
        self.tick()
        self.inner.mv(path1, path2, **kwargs)

    def rm_file(self, path: str) -> None:
        self.tick()
        self.inner.rm_file(path)

    def rm(self, path: str, recursive: bool = False, **kwargs: Any) -> None:
        self.tick()
        self.inner.rm(path, recursive=recursive, **kwargs)

    def makedirs(self, path: str, exist_ok: bool = False) -> None:
        self.inner.makedirs(path, exist_ok=exist_ok)

    def invalidate_cache(self, path: str | None = None) -> None:
        self.inner.invalidate_cache(path)

    def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        self.tick()
        return _FaultyFile(self.inner.open(path, mode), type(self), writing="r" not in mode)


class FaultyStaging(FaultyFileSystem):
    """The same, with faults and counters of its own: ``flaky::memory://...`` for a
    staging area that fails apart from the target."""

    protocol = "flaky"


class _FaultyFile:
    def __init__(self, f: Any, owner: type[FaultyFileSystem], writing: bool) -> None:
        self.f, self.owner, self.writing = f, owner, writing

    def read(self, n: int = -1) -> bytes:
        self.owner.tick(read=True)
        return self.f.read(n)

    def readinto(self, view: memoryview) -> int:
        self.owner.tick(read=True)
        data = self.f.read(len(view))
        view[:len(data)] = data
        return len(data)

    def write(self, data: bytes) -> int:
        self.owner.tick()
        return self.f.write(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.f.seek(offset, whence)

    def tell(self) -> int:
        return self.f.tell()

    def close(self) -> None:
        if self.writing:  # closing a written file uploads it; closing a read does no I/O
            self.owner.tick()
        self.f.close()

    def __enter__(self) -> _FaultyFile:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.close()
        else:
            self.f.close()
