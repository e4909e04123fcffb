"""The files bigfile keeps beside a local target, in one place: where they live, how they
are made, and which of them may be believed.

A target path is resolved once (symbolic links followed to the real file), and that file
is pinned by its device and inode: every later open of the target goes through
:meth:`Sidecars.open_target` (no link followed, the same device and inode), so another user
who swaps the name for a link or another file between two steps of an edit (while it waits
for the lock, recovers, or commits) stops the edit instead of redirecting it. Every sidecar
lives in the real file's folder and is named after it, so two paths to one file are one
target::

    .NAME.bigfile.lock          the lock (flock), taken by every edit that writes
    .NAME.bigfile-journal       the rollback journal of an unfinished in-place commit
    .NAME.bigfile-JOB.new       the new file a rewrite builds
    .NAME.bigfile-staging/JOB/  the default staging: one 0700 folder per job, with a marker

Sidecars are created relative to a descriptor of that folder with ``O_CREAT | O_EXCL |
O_NOFOLLOW`` and mode 0600 (the lock may be group-writable when the target is), so a
symbolic link another user plants where a sidecar will be created is never followed. An
existing sidecar is believed only when it is a regular file owned by the current user or by
the target's owner.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from airflow_bigfile.exceptions import SourceChangedError, StagingError, TargetError

JOB_ID = re.compile(r"\d{8}T\d{6}-[0-9a-f]{8}")
MARKER = "job.json"
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_BINARY = getattr(os, "O_BINARY", 0)


def check_job_id(job_id: object) -> str:
    """``job_id`` if it is a plain token of the form :func:`new_job_id` makes, else an
    error: a job id names files and folders, so it must never carry a path."""
    if not isinstance(job_id, str) or not JOB_ID.fullmatch(job_id):
        raise StagingError(f"{job_id!r} is not a bigfile job id")
    return job_id


def real_path(path: str) -> str:
    """The file a (possibly symbolic-link) path names, resolved once."""
    return os.path.realpath(os.path.abspath(path))


def check_same_file(pin: tuple[int, int] | None, st: os.stat_result, path: str) -> None:
    """Refuse a file that is not the one pinned (``(device, inode)``; None: not pinned)."""
    if pin is not None and (st.st_dev, st.st_ino) != pin:
        raise SourceChangedError(
            f"{path} is no longer the file this edit began with (another file or a link "
            f"was put in its place); nothing was changed")


def trusted_owner(st: os.stat_result, target: os.stat_result | None) -> bool:
    """True when a file is owned by this process's user or by the target's owner."""
    uid = os.geteuid() if hasattr(os, "geteuid") else st.st_uid
    return st.st_uid == uid or (target is not None and st.st_uid == target.st_uid)


@dataclass(frozen=True)
class Sidecars:
    """The sidecar names of the real file ``path`` and safe ways to open them; ``pin`` is
    the real file's ``(device, inode)`` and ``owner`` its uid when it was resolved (None:
    it did not exist)."""

    path: str
    pin: tuple[int, int] | None = field(default=None, compare=False)
    owner: int | None = field(default=None, compare=False)

    @classmethod
    def of(cls, path: str) -> Sidecars:
        real = real_path(path)
        try:
            st = os.stat(real)
        except OSError:
            return cls(real)
        return cls(real, (st.st_dev, st.st_ino), st.st_uid)

    def repinned(self) -> Sidecars:
        """The target once its lock is taken. Waiting for it, the file may have been
        replaced by a file of the same owner (another edit's rewrite, ``sed -i``): that
        file is pinned. Never by a link, nor by a file of another owner: a user who can
        write the folder cannot turn the edit to a file of someone else's."""
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return self  # reported as missing by the next step
        if stat.S_ISLNK(st.st_mode):
            raise self._now_a_link()
        if self.pin == (st.st_dev, st.st_ino):
            return self
        if self.owner is not None and st.st_uid != self.owner:
            raise SourceChangedError(
                f"{self.path} was replaced by a file of another owner (uid {st.st_uid}, "
                f"was {self.owner}) while this edit waited; nothing was changed")
        return Sidecars(self.path, (st.st_dev, st.st_ino), st.st_uid)

    def _now_a_link(self) -> SourceChangedError:
        return SourceChangedError(f"{self.path} is now a symbolic link, not the file this "
                                  f"edit began with; nothing was changed")

    def stat_target(self) -> os.stat_result:
        """The real file's ``stat``, refused if its name now leads to another file."""
        st = os.stat(self.path)
        check_same_file(self.pin, st, self.path)
        return st

    def open_target(self, flags: int) -> int:
        """Open the real file without following a link, refused unless it is the pinned
        file: what an edit reads, writes or rolls back is the file it began with."""
        try:
            fd = os.open(self.path, flags | _NOFOLLOW | _CLOEXEC | _BINARY)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise self._now_a_link() from None
            raise
        try:
            check_same_file(self.pin, os.fstat(fd), self.path)
        except BaseException:
            os.close(fd)
            raise
        return fd

    @property
    def folder(self) -> str:
        return os.path.dirname(self.path)

    @property
    def name(self) -> str:
        return os.path.basename(self.path)

    @property
    def lock_name(self) -> str:
        return f".{self.name}.bigfile.lock"

    @property
    def journal_name(self) -> str:
        return f".{self.name}.bigfile-journal"

    @property
    def staging_name(self) -> str:
        return f".{self.name}.bigfile-staging"

    def new_name(self, job_id: str) -> str:
        return f".{self.name}.bigfile-{check_job_id(job_id)}.new"

    def at(self, name: str) -> str:
        """The full path of sidecar ``name`` (for messages and for readers)."""
        return os.path.join(self.folder, name)

    @property
    def lock(self) -> str:
        return self.at(self.lock_name)

    @property
    def journal(self) -> str:
        return self.at(self.journal_name)

    @property
    def staging_root(self) -> str:
        return self.at(self.staging_name)

    def new_file(self, job_id: str) -> str:
        return self.at(self.new_name(job_id))

    @contextlib.contextmanager
    def folder_fd(self) -> Iterator[int]:
        """A descriptor of the target's folder, for ``*at`` calls."""
        fd = os.open(self.folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _CLOEXEC)
        try:
            yield fd
        finally:
            os.close(fd)

    def create(self, name: str, mode: int = 0o600, *, read: bool = False) -> int:
        """Create sidecar ``name``; fails if anything (a file, a link) is already there."""
        flags = (os.O_RDWR if read else os.O_WRONLY) | os.O_CREAT | os.O_EXCL | _NOFOLLOW
        with self.folder_fd() as dfd:
            fd = os.open(name, flags | _CLOEXEC | _BINARY, mode, dir_fd=dfd)
        os.fchmod(fd, mode)  # not narrowed by the umask
        return fd

    def open(self, name: str, flags: int = os.O_RDONLY) -> int:
        """Open an existing sidecar without following a link: raises ``OSError`` (ELOOP)
        on a link, and :class:`UntrustedSidecarError` on anything but a regular file owned
        by this user or the target's owner."""
        with self.folder_fd() as dfd:
            fd = os.open(name, flags | _NOFOLLOW | _CLOEXEC | _BINARY, dir_fd=dfd)
        try:
            self.check_trusted(os.fstat(fd), name)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def check_trusted(self, st: os.stat_result, name: str) -> None:
        if not stat.S_ISREG(st.st_mode) and not stat.S_ISDIR(st.st_mode):
            raise UntrustedSidecarError(f"{self.at(name)} is not a regular file")
        if not trusted_owner(st, self._target_stat()):
            raise UntrustedSidecarError(
                f"{self.at(name)} belongs to uid {st.st_uid}, neither this user nor the "
                f"owner of {self.path}")

    def lstat(self, name: str) -> os.stat_result | None:
        with self.folder_fd() as dfd:
            try:
                return os.stat(name, dir_fd=dfd, follow_symlinks=False)
            except FileNotFoundError:
                return None

    def remove(self, name: str) -> None:
        """Unlink sidecar ``name`` (a link is removed, never followed)."""
        with self.folder_fd() as dfd, contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=dfd)

    def _target_stat(self) -> os.stat_result | None:
        try:
            return os.stat(self.path)
        except OSError:
            return None

    def leftover_new_files(self) -> list[str]:
        """Names of new files earlier rewrites of this target left (job-id named only)."""
        prefix, suffix = f".{self.name}.bigfile-", ".new"
        try:
            names = os.listdir(self.folder)
        except OSError:
            return []
        return sorted(n for n in names if n.startswith(prefix) and n.endswith(suffix)
                      and JOB_ID.fullmatch(n[len(prefix):-len(suffix)]))


class UntrustedSidecarError(TargetError):
    """A sidecar beside the target is not one bigfile made (wrong owner, not a file)."""


# -- staging job folders ---------------------------------------------------------------


def check_staging_parent(parent: str, target: str) -> str:
    """Refuse, before any I/O of the edit, a local staging parent that is an existing
    file (or the target itself), or a folder another user could swap a job folder in for a
    link (owned by another user than this one or root, or writable by others without the
    sticky bit, as OpenSSH refuses such folders), or one inside a folder such a user could
    rearrange (every folder above it must be owned by root, this user or the target's
    owner, and writable by others only with the sticky bit). Returns the parent with its
    links resolved, so that the job's files are reached without following them again."""
    parent = os.path.abspath(parent)
    if target and real_path(parent) == real_path(target):
        raise StagingError(f"--staging {parent} is the target itself; name a folder")
    real = real_path(parent)
    try:
        st = os.stat(real)
    except FileNotFoundError:
        _check_folders_above(real, target, parent)
        return real
    if not stat.S_ISDIR(st.st_mode):
        raise StagingError(f"--staging {parent} is an existing file, not a folder; name a "
                           f"folder (bigfile makes its own job folder inside it)")
    check_private_folder(parent, st, "--staging ")
    _check_folders_above(real, target, parent)
    return real


def _check_folders_above(real: str, target: str, named: str) -> None:
    try:
        owner = os.stat(target).st_uid if target else None
    except OSError:
        owner = None
    folder = os.path.dirname(real)
    while True:
        with contextlib.suppress(FileNotFoundError):
            st = os.lstat(folder)
            if st.st_uid not in (0, os.geteuid(), owner):
                raise StagingError(
                    f"--staging {named} is inside {folder}, which belongs to uid "
                    f"{st.st_uid}, who could swap bigfile's job folder for one of theirs; "
                    f"use a folder of your own")
            if _others_can_rearrange(st):
                raise StagingError(
                    f"--staging {named} is inside {folder}, which other users can write "
                    f"and which has no sticky bit; use a folder of your own")
        up = os.path.dirname(folder)
        if up == folder:
            return
        folder = up


def _others_can_rearrange(st: os.stat_result) -> bool:
    """Others may write the folder and it has no sticky bit: they can rename its entries."""
    return bool(st.st_mode & (stat.S_IWOTH | stat.S_IWGRP)) and not st.st_mode & stat.S_ISVTX


def check_private_folder(folder: str, st: os.stat_result, what: str = "") -> None:
    """Refuse a folder that another user could rearrange under bigfile's feet."""
    if st.st_uid not in (0, os.geteuid()):
        raise StagingError(f"{what}{folder} belongs to uid {st.st_uid}, who could swap "
                           f"bigfile's job folder for a link; use a folder of your own")
    if _others_can_rearrange(st):
        raise StagingError(f"{what}{folder} is writable by other users and has no sticky "
                           f"bit; use a private folder or one like /tmp (mode 1777)")


def make_job_folder(parent: str, job_id: str, *, target: str, distributed: bool,
                    follow: bool = True) -> str:
    """Create ``parent/job_id`` (mode 0700, failing if it exists) with its marker, which
    says whose it is; ``parent`` is made if missing and never removed by bigfile. With
    ``follow`` False (bigfile's own default staging folder) a link there is refused."""
    check_job_id(job_id)
    os.makedirs(parent, mode=0o700, exist_ok=True)
    if follow:
        parent = real_path(parent)
    st = os.lstat(parent)
    if not stat.S_ISDIR(st.st_mode):
        raise StagingError(f"the staging folder {parent} is a link or not a folder; bigfile "
                           f"will not stage through it: remove it")
    check_private_folder(parent, st)
    folder = os.path.join(parent, job_id)
    os.mkdir(folder, 0o700)
    marker = {"job_id": job_id, "pid": os.getpid(), "host": os.uname().nodename
              if hasattr(os, "uname") else "", "target": real_path(target),
              "distributed": distributed, "created": time.time()}
    dfd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _NOFOLLOW | _CLOEXEC)
    try:
        fd = os.open(MARKER, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC,
                     0o600, dir_fd=dfd)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(marker, f)
    finally:
        os.close(dfd)
    return folder


def read_marker(folder: str) -> dict[str, object] | None:
    """The marker of a job folder, or None when it has none bigfile could have made."""
    try:
        dfd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _NOFOLLOW
                      | _CLOEXEC)
    except OSError:
        return None
    try:
        fd = os.open(MARKER, os.O_RDONLY | _NOFOLLOW | _CLOEXEC, dir_fd=dfd)
        with os.fdopen(fd, "rb") as f:
            data = json.loads(f.read(1 << 16))
    except (OSError, ValueError):
        return None
    finally:
        os.close(dfd)
    return data if isinstance(data, dict) else None


def remove_job_folder(path: str) -> None:
    """Remove a job folder bigfile made, its marker last. A removal killed half way leaves
    the marker (or an empty folder), so the next recovery still knows the folder for
    bigfile's and finishes it; links inside are removed, never followed."""
    if not shutil.rmtree.avoids_symlink_attacks:  # pragma: no cover - Linux has it
        raise StagingError(f"cannot safely remove {path} on this platform; remove it by hand")
    try:
        dfd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _NOFOLLOW
                      | _CLOEXEC)
    except FileNotFoundError:
        return
    except OSError as exc:  # a link (ELOOP) or a file (ENOTDIR)
        raise StagingError(f"{path} is not a folder bigfile made; left as it is") from exc
    try:
        for entry in os.scandir(dfd):
            if entry.name == MARKER:
                continue
            with contextlib.suppress(FileNotFoundError):
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.name, dir_fd=dfd)
                else:
                    os.unlink(entry.name, dir_fd=dfd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(MARKER, dir_fd=dfd)
    finally:
        os.close(dfd)
    with contextlib.suppress(FileNotFoundError):
        os.rmdir(path)
