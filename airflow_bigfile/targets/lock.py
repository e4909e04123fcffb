"""One job per target: an exclusive ``fcntl`` lock on a lock file beside the real file.

The lock file is a sidecar (see :mod:`.sidecars`): created exclusively, never through a
link, mode 0600 (0660 when the target is group-writable: whoever may write the target may
take its lock). A lock file other users can open, or one they own, is not ours: it is
replaced, so another user cannot block a target by holding its lock file open.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import platform
import stat
import time
from types import TracebackType

from airflow_bigfile.exceptions import TargetLockedError, TargetPermissionError
from airflow_bigfile.io.oscompat import write_all
from airflow_bigfile.targets.sidecars import Sidecars, UntrustedSidecarError

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
    """The lock file of the target ``path`` (beside the file a link points to)."""
    return Sidecars.of(path).lock


def lock_mode(target: os.stat_result) -> int:
    """0600, plus group read/write when the target's group may write it."""
    return 0o660 if target.st_mode & stat.S_IWGRP else 0o600


class TargetLock:
    """Hold the target's lock for the length of a ``with`` block.

    ``wait`` seconds are spent retrying when another job holds it, then
    :class:`TargetLockedError` names the holder (pid, host, job, since when).
    """

    def __init__(self, path: str, *, wait: float = 0.0, job: str = "") -> None:
        self.cars = Sidecars.of(path)
        self.path = self.cars.path
        self.lock = self.cars.lock
        self.wait = wait
        self.job = job
        self._fd: int | None = None

    def __enter__(self) -> TargetLock:
        deadline = time.monotonic() + max(0.0, self.wait)
        while True:
            if self._try():
                return self
            if time.monotonic() >= deadline:
                raise self._locked()
            time.sleep(0.05)

    def _open(self) -> int | None:
        """A descriptor of our lock file, creating it if needed; None if another job's
        (fcntl-less) lock file is there."""
        mode = lock_mode(os.stat(self.path))
        for _ in range(3):
            try:
                return self.cars.create(self.cars.lock_name, mode, read=True)
            except FileExistsError:
                pass
            except PermissionError as exc:
                raise TargetPermissionError(
                    f"cannot create the lock file {self.lock}: {exc.strerror}; the folder of "
                    f"{self.path} must be writable") from exc
            if fcntl is None:
                if not self._holder_is_dead():
                    return None
                self.cars.remove(self.cars.lock_name)
                continue
            try:
                fd = self.cars.open(self.cars.lock_name, os.O_RDWR)
                st = os.fstat(fd)
                if stat.S_IMODE(st.st_mode) & ~mode:
                    os.close(fd)
                    raise UntrustedSidecarError(f"{self.lock} may be opened by other users")
                return fd
            except FileNotFoundError:
                continue  # its holder removed it meanwhile
            except (UntrustedSidecarError, OSError) as exc:
                if isinstance(exc, OSError) and exc.errno not in (errno.ELOOP, errno.EACCES):
                    raise
                self._replace_foreign(exc)
        return None

    def _replace_foreign(self, why: BaseException) -> None:
        """Remove a lock file that is not ours (a link, another user's, open to others)."""
        try:
            self.cars.remove(self.cars.lock_name)
        except OSError as exc:
            raise TargetPermissionError(
                f"{self.lock} is not a lock file bigfile can trust ({why}) and cannot be "
                f"removed ({exc.strerror}); remove it, then run the edit again") from exc

    def _try(self) -> bool:
        fd = self._open()
        if fd is None:
            return False
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            now = self.cars.lstat(self.cars.lock_name)
            if now is None or now.st_ino != os.fstat(fd).st_ino:
                os.close(fd)  # the holder removed it as we opened it: take the new one
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

    def check_free(self) -> None:
        """Raise :class:`TargetLockedError` if another job holds the lock, without
        creating or writing anything (for dry runs)."""
        if fcntl is None:
            if self.cars.lstat(self.cars.lock_name) is not None and not self._holder_is_dead():
                raise self._locked()
            return
        try:
            fd = self.cars.open(self.cars.lock_name)
        except OSError:
            return  # no lock file, or not one of ours: no job of ours holds it
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raise self._locked() from None
        finally:
            os.close(fd)

    def _locked(self) -> TargetLockedError:
        return TargetLockedError(f"{self.path} is being edited by another job "
                                 f"({self.holder()}); retry later or pass --wait SECONDS")

    def _info(self) -> dict[str, object] | None:
        try:
            fd = self.cars.open(self.cars.lock_name)
        except OSError:
            return None
        try:
            with os.fdopen(fd, "rb") as f:
                info = json.loads(f.read(4096))
        except ValueError:
            return None
        return info if isinstance(info, dict) else None

    def _holder_is_dead(self) -> bool:
        """Without fcntl a lock file outlives a killed holder: it is stale when the pid it
        names is gone on this host. (With fcntl the kernel drops the lock itself.)"""
        info = self._info()
        if info is None or info.get("host") != _host() or not isinstance(info.get("pid"), int):
            return False
        return not _pid_alive(info["pid"])  # type: ignore[arg-type]

    def holder(self) -> str:
        """Who holds the lock, as far as its file says."""
        info = self._info()
        if info is None:
            return "holder unknown"
        return (f"pid {info.get('pid')} on {info.get('host') or '?'}, job "
                f"{info.get('job') or '?'}, since {info.get('since')}")

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._fd is None:
            return
        now = self.cars.lstat(self.cars.lock_name)
        if now is not None and now.st_ino == os.fstat(self._fd).st_ino:
            with contextlib.suppress(OSError):
                self.cars.remove(self.cars.lock_name)
        os.close(self._fd)
        self._fd = None
