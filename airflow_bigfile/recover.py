"""Recovery: put a target back to a consistent state after a crashed or killed job.

Runs under the target's lock, first thing in every entry point that edits a target: leftover
temporary files of an unfinished rewrite and stale staging are removed.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass, field

from .exceptions import RecoveryError

log = logging.getLogger(__name__)


@dataclass
class RecoveryResult:
    """What recovery found and did."""

    target: str
    rolled_back: bool = False
    removed: list[str] = field(default_factory=list)
    # left alone: not provably bigfile's (e.g. a marker naming another object's upload)
    kept: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.rolled_back and not self.removed and not self.kept

    @property
    def message(self) -> str:
        if self.clean:
            return f"{self.target}: clean, nothing to recover"
        done = []
        if self.rolled_back:
            done.append("rolled back an unfinished in-place commit (the old file is back)")
        if self.removed:
            done.append(f"removed {len(self.removed)} stale file(s) or folder(s)")
        if self.kept:
            done.append(f"left alone {len(self.kept)} entry(ies) bigfile did not make: "
                        + ", ".join(self.kept))
        return f"{self.target}: " + "; ".join(done)

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "clean": self.clean, "message": self.message}


def staging_root(path: str) -> str:
    """The default local staging folder of a target."""
    folder, name = os.path.split(os.path.abspath(path))
    return os.path.join(folder, f".{name}.bigfile-staging")


def rollback_journal(path: str) -> bool:
    """Roll a leftover in-place journal back; True if the old bytes were restored.

    A torn journal (its CRC fails) was never complete, so no data was written after it: it
    is just removed. A sealed one is replayed, the file cut back to its old size, fsynced.
    """
    from .commit import fsync_dir, fsync_file
    from .journal import iter_saved, journal_path, read_journal
    from .oscompat import write_all

    jpath = journal_path(path)
    if not os.path.exists(jpath):
        return False
    folder = os.path.dirname(os.path.abspath(path))
    parsed = read_journal(jpath)
    if parsed is None:
        log.warning("removing a torn journal %s (no data had been written)", jpath)
        os.unlink(jpath)
        fsync_dir(folder)
        return False
    inode, original_size, entries = parsed
    fd = os.open(path, os.O_RDWR | getattr(os, "O_BINARY", 0))
    try:
        if os.fstat(fd).st_ino != inode:
            raise RecoveryError(
                f"{jpath} belongs to another file than the current {path} (inode {inode}); "
                f"it was replaced after the crash. Check the file, then delete the journal")
        for offset, chunk in iter_saved(jpath, entries):
            write_all(fd, chunk, offset)
        os.ftruncate(fd, original_size)
        fsync_file(fd)
    finally:
        os.close(fd)
    os.unlink(jpath)
    fsync_dir(folder)
    log.warning("rolled back an unfinished in-place commit of %s", path)
    return True


def recover_local(path: str, *, keep: str | None = None) -> RecoveryResult:
    """Recover a local target; the caller holds its lock. ``keep`` names a staging job
    folder that belongs to the caller and must stay."""
    result = RecoveryResult(target=path, rolled_back=rollback_journal(path))
    folder, name = os.path.split(os.path.abspath(path))
    for leftover in sorted(glob.glob(os.path.join(glob.escape(folder),
                                                  f".{glob.escape(name)}.bigfile-*.new"))):
        os.unlink(leftover)
        result.removed.append(leftover)
    root = staging_root(path)
    if os.path.isdir(root):
        for job in sorted(os.listdir(root)):
            stale = os.path.join(root, job)
            if keep is not None and os.path.abspath(stale) == os.path.abspath(keep):
                continue
            if _is_live(stale):
                continue
            shutil.rmtree(stale, ignore_errors=True)
            result.removed.append(stale)
        with contextlib.suppress(OSError):
            os.rmdir(root)
    if not result.clean:
        log.info("%s", result.message)
    return result


DISTRIBUTED_TTL = 7 * 24 * 3600


def _is_live(folder: str) -> bool:
    """Staging of a plan made for workers elsewhere (Airflow, Dask) lives until its commit;
    it is kept while young and its source unchanged. Any other leftover is stale: the job
    that made it held the lock we now hold."""
    marker = os.path.join(folder, "distributed")
    try:
        age = time.time() - os.path.getmtime(marker)
    except OSError:
        return False
    return age < DISTRIBUTED_TTL
