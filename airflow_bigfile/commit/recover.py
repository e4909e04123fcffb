"""Recovery: put a target back to a consistent state after a crashed or killed job.

Runs under the target's lock, first thing in every entry point that edits a target: an
unfinished in-place commit is rolled back from its journal, and what earlier jobs of this
target left (new files, job folders in the default staging) is removed. Nothing is removed
that bigfile cannot show it made: sidecars must be regular files or folders owned by this
user or the target's owner, named with a job id, and a job folder must carry its marker and
belong to a job that is over (see :mod:`.sidecars`). Recovery never removes bytes it did
not write: when the file is longer than the interrupted commit could have left it, it stops
with a clear error and keeps the journal.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import time
from dataclasses import asdict, dataclass, field

from airflow_bigfile.commit.journal import Journal, iter_saved, read_journal
from airflow_bigfile.exceptions import RecoveryError
from airflow_bigfile.io.oscompat import fsync_dir, fsync_file, write_all
from airflow_bigfile.io.sidecars import (
    JOB_ID,
    MARKER,
    Sidecars,
    UntrustedSidecarError,
    read_marker,
    remove_job_folder,
    trusted_owner,
)

log = logging.getLogger(__name__)

DISTRIBUTED_TTL = 7 * 24 * 3600


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


def _open_journal(cars: Sidecars) -> int | None:
    """The journal's descriptor, None when there is none; an error when one is there
    that bigfile cannot trust."""
    try:
        return cars.open(cars.journal_name)
    except FileNotFoundError:
        return None
    except (UntrustedSidecarError, OSError) as exc:
        raise RecoveryError(
            f"{cars.journal} is not a journal bigfile can trust ({exc}); nothing was "
            f"changed. If no bigfile commit of {cars.path} was interrupted, remove it") from exc


def check_no_journal(cars: Sidecars) -> None:
    """Refuse to read a target whose in-place commit is unfinished (for dry runs, which
    write nothing, not even a rollback)."""
    fd = _open_journal(cars)
    if fd is not None:
        os.close(fd)
        raise RecoveryError(
            f"{cars.path} has an unfinished in-place commit (journal {cars.journal}); run "
            f"`bigfile recover {cars.path}` first; nothing was changed")


def rollback_journal(cars: Sidecars) -> bool:
    """Roll a leftover in-place journal back; True if the old bytes were restored.

    A torn journal (its CRC fails) was never complete, so no data was written after it: it
    is just removed. A sealed one is replayed only if it names this file (device and
    inode) and the file is no longer than the commit could have left it; the file is then
    cut back to its old size and fsynced.
    """
    jfd = _open_journal(cars)
    if jfd is None:
        return False
    try:
        journal = read_journal(jfd, cars.journal)
        if journal is None:
            log.warning("removing a torn journal %s (no data had been written)", cars.journal)
        else:
            _replay(cars, jfd, journal)
    finally:
        os.close(jfd)
    cars.remove(cars.journal_name)
    fsync_dir(cars.folder)
    if journal is not None:
        log.warning("rolled back an unfinished in-place commit of %s", cars.path)
    return journal is not None


def _replay(cars: Sidecars, jfd: int, journal: Journal) -> None:
    fd = cars.open_target(os.O_RDWR)  # the file the edit began with, never a swapped-in one
    try:
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != (journal.device, journal.inode):
            raise RecoveryError(
                f"{cars.journal} belongs to another file than the current {cars.path}; it "
                f"was replaced after the crash. Nothing was changed: check the file, then "
                f"delete the journal")
        limit = max(journal.original_size, journal.final_size)
        if st.st_size > limit:
            raise RecoveryError(
                f"{cars.path} is {st.st_size} bytes, longer than the interrupted commit "
                f"could have left it ({limit}): another program wrote to it since. Nothing "
                f"was rolled back and the journal {cars.journal} is kept; check the file, "
                f"then delete the journal")
        for offset, chunk in iter_saved(jfd, journal):
            write_all(fd, chunk, offset)
        os.ftruncate(fd, journal.original_size)
        fsync_file(fd)
    finally:
        os.close(fd)


def recover_local(cars: Sidecars, *, keep: str | None = None) -> RecoveryResult:
    """Recover a local target; the caller holds its lock. ``keep`` names a staging job
    folder that belongs to the caller and must stay."""
    journal = cars.lstat(cars.journal_name) is not None
    result = RecoveryResult(target=cars.path, rolled_back=rollback_journal(cars))
    if journal and not result.rolled_back:  # a torn one: removed, nothing to roll back
        result.removed.append(cars.journal)
    target = cars.stat_target()
    for name in cars.leftover_new_files():
        st = cars.lstat(name)
        if st is not None and stat.S_ISREG(st.st_mode) and trusted_owner(st, target):
            cars.remove(name)
            result.removed.append(cars.at(name))
    root = cars.lstat(cars.staging_name)
    if root is not None:
        if stat.S_ISDIR(root.st_mode) and trusted_owner(root, target):
            _stale_jobs(cars, target, keep, result)
            with contextlib.suppress(OSError):
                os.rmdir(cars.staging_root)
        else:
            log.warning("%s is not a staging folder bigfile made; left as it is",
                        cars.staging_root)
            result.kept.append(cars.staging_root)
    if not result.clean:
        log.info("%s", result.message)
    return result


def _stale_jobs(cars: Sidecars, target: os.stat_result, keep: str | None,
                result: RecoveryResult) -> None:
    """Remove the job folders in the default staging that belong to jobs that are over:
    any local job (it held the lock we now hold) and distributed plans older than the TTL;
    what is there and not bigfile's goes to ``result.kept``."""
    removed, kept = result.removed, result.kept
    keep_path = os.path.abspath(keep) if keep else None
    for job in sorted(os.listdir(cars.staging_root)):
        folder = os.path.join(cars.staging_root, job)
        st = os.lstat(folder)
        marker = read_marker(folder)
        ours = JOB_ID.fullmatch(job) and stat.S_ISDIR(st.st_mode) and trusted_owner(st, target)
        if ours and marker is None and set(os.listdir(folder)) <= {MARKER}:
            remove_job_folder(folder)  # a job killed while writing its marker: nothing else inside
            removed.append(folder)
            continue
        if (not ours or marker is None
                or marker.get("job_id") != job or marker.get("target") != cars.path):
            log.warning("%s is not a job folder bigfile made; left as it is", folder)
            kept.append(folder)
            continue
        if folder == keep_path:
            continue
        created = marker.get("created")
        if marker.get("distributed") and (not isinstance(created, (int, float))
                                          or time.time() - created < DISTRIBUTED_TTL):
            continue
        remove_job_folder(folder)
        removed.append(folder)
