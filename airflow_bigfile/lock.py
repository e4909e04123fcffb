"""One job per target: an exclusive ``fcntl`` lock on a lock file beside it."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import platform
import time
from types import TracebackType

from .exceptions import TargetLockedError, TargetPermissionError
from .oscompat import write_all

try:
    import fcntl
except ImportError:  # Windows: no fcntl; fall back to exclusive creation of the lock file
    fcntl = None  # type: ignore[assignment]


def _host() -> str:
    return platform.node()


def _pid_alive(pid: int) -> bool:
    if os.name == "nt":  # os.kill(pid, 0) would terminate the process on Windows
        import ctypes

        handle = ctypes.windll.kernel32.OpenProcess(0x1000, False, pid)  # type: ignore[attr-defined]
        if not handle:
            return False
        code = ctypes.c_ulong()
        ctypes.windll.kernel32.GetExitCodeProcess(handle, ctypes.byref(code))  # type: ignore[attr-defined]
        ctypes.windll.kernel32.CloseHandle(handle)  # type: ignore[attr-defined]
        return code.value == 259  # STILL_ACTIVE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def lock_path(path: str) -> str:
    folder, name = os.path.split(os.path.abspath(path))
    return os.path.join(folder, f".{name}.bigfile.lock")


class TargetLock:
    """Hold the target's lock for the length of a ``with`` block.

    ``wait`` seconds are spent retrying when another job holds it, then
    :class:`TargetLockedError` names the holder (pid, host, job, since when).
    """

    def __init__(self, path: str, *, wait: float = 0.0, job: str = "") -> None:
        self.path = path
        self.lock = lock_path(path)
        self.wait = wait
        self.job = job
        self._fd: int | None = None

    def __enter__(self) -> TargetLock:
        deadline = time.monotonic() + max(0.0, self.wait)
        while True:
            if self._try():
                return self
            if time.monotonic() >= deadline:
                raise TargetLockedError(f"{self.path} is being edited by another job "
                                        f"({self.holder()}); retry later or pass --wait SECONDS")
            time.sleep(0.05)

    def _try(self) -> bool:
        try:
            if fcntl is None:
                fd = os.open(self.lock, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            else:
                fd = os.open(self.lock, os.O_RDWR | os.O_CREAT, 0o644)
        except FileExistsError:
            if self._holder_is_dead():
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.lock)
                return self._try()
            return False
        except PermissionError as exc:
            raise TargetPermissionError(
                f"cannot create the lock file {self.lock}: {exc.strerror}; the folder of "
                f"{self.path} must be writable") from exc
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            try:
                same = os.fstat(fd).st_ino == os.stat(self.lock).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # the holder removed it as we opened it: take the new one
                os.close(fd)
                return False
        info = {"pid": os.getpid(), "host": _host(),
                "job": self.job, "since": time.strftime("%Y-%m-%dT%H:%M:%S")}
        os.ftruncate(fd, 0)
        try:
            write_all(fd, json.dumps(info).encode(), 0)
        except OSError as exc:
            # A full disk must not stop a lone truncate, which frees space: the lock holds
            # without its note (the holder then shows as unknown).
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                os.close(fd)
                raise
        self._fd = fd
        return True

    def _holder_is_dead(self) -> bool:
        """Without fcntl a lock file outlives a killed holder: it is stale when the pid it
        names is gone on this host. (With fcntl the kernel drops the lock itself.)"""
        try:
            with open(self.lock, encoding="utf-8") as f:
                info = json.load(f)
        except (OSError, ValueError):
            return False
        if info.get("host") != _host() or not isinstance(info.get("pid"), int):
            return False
        return not _pid_alive(info["pid"])

    def holder(self) -> str:
        """Who holds the lock, as far as its file says."""
        try:
            with open(self.lock, encoding="utf-8") as f:
                info = json.load(f)
            return (f"pid {info.get('pid')} on {info.get('host') or '?'}, job "
                    f"{info.get('job') or '?'}, since {info.get('since')}")
        except (OSError, ValueError):
            return "holder unknown"

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.lock)
        os.close(self._fd)
        self._fd = None
