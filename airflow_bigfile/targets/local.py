"""A local file (or one on a locally mounted filesystem) as a :class:`~airflow_bigfile.
targets.base.Target`: locked, journalled, committed in place or by rename.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from airflow_bigfile.commit.assembly import Piece
from airflow_bigfile.commit.inplace import (
    commit_inplace,
    commit_truncate,
    inplace_ranges,
    staged_writes,
)
from airflow_bigfile.commit.metadata import check_hardlinks, refuse_linked_rewrite
from airflow_bigfile.commit.recover import RecoveryResult, check_no_journal, recover_local
from airflow_bigfile.commit.rewrite import commit_rewrite
from airflow_bigfile.commit.verify import check_identity, check_sources
from airflow_bigfile.edits import Layout
from airflow_bigfile.exceptions import (
    EditError,
    TargetError,
    TargetIsDirectoryError,
    TargetNotFoundError,
    TargetPermissionError,
)
from airflow_bigfile.io.lock import TargetLock
from airflow_bigfile.io.oscompat import has_holes, preallocate
from airflow_bigfile.io.sidecars import Sidecars, check_staging_parent
from airflow_bigfile.io.storage import Identity, LocalFiles, Source, Staging
from airflow_bigfile.payload import placed_chunks
from airflow_bigfile.plan.manifest import Manifest
from airflow_bigfile.run.executors import Executor
from airflow_bigfile.run.tasks import JobSpec
from airflow_bigfile.targets.base import CommitOutcome, tail_items

# auto picks in place when journal + new bytes stay under this share of a rewrite
INPLACE_SHARE = 0.25


def _share(inplace_bytes: int, rewrite_bytes: int) -> str:
    """How in-place bytes (journal + new) compare with a rewrite's, as auto weighs them."""
    within = inplace_bytes <= INPLACE_SHARE * max(rewrite_bytes, 1)
    return (f"in place writes {inplace_bytes:,} B (journal + new bytes), "
            f"{'at most' if within else 'more than'} {INPLACE_SHARE:.0%} of the "
            f"{rewrite_bytes:,} B a rewrite writes")


def appends_only_layout(layout: Layout) -> bool:
    """True for an edit list of appends only (no offset refers to the original size)."""
    return bool(layout.appends) and not (
        layout.ranges or layout.inserts or layout.tail_inserts or layout.replaces
        or layout.zero_fill or layout.truncate_at is not None)


class LocalTarget:
    """A file on a local (or locally mounted) filesystem.

    A path that is a symbolic link is resolved once: ``path`` is the real file, which is
    what gets edited (in place or by rewrite, so the link stays a link), and every sidecar
    (lock, journal, new file, default staging) lives beside it; ``url`` is what the caller
    named, for messages."""

    local = True
    default_shard_size = 64 << 20

    def __init__(self, fs: LocalFiles | Any, path: str, url: str) -> None:
        self.cars = Sidecars.of(path)
        self.fs, self.path, self.url = fs, self.cars.path, url

    def check(self, *, write: bool, mode: str = "auto", break_hardlinks: bool = False
              ) -> None:
        """Stat the target, turning the usual mistakes into clear errors; a forced rewrite
        of a file with other hard links is refused before any I/O."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            raise TargetNotFoundError(f"{self.url}: no such file") from None
        except PermissionError as exc:
            raise TargetPermissionError(f"{self.url}: {exc.strerror}") from None
        if stat.S_ISDIR(st.st_mode):
            raise TargetIsDirectoryError(f"{self.url} is a folder, not a file")
        if not stat.S_ISREG(st.st_mode):
            raise TargetError(f"{self.url} is not a regular file")
        if not os.access(self.path, os.R_OK):
            raise TargetPermissionError(f"{self.url} is not readable (permission denied); "
                                        f"nothing was changed")
        if write:
            folder = self.cars.folder
            if not os.access(self.path, os.W_OK):
                raise TargetPermissionError(f"{self.url} is read-only; nothing was changed")
            if not os.access(folder, os.W_OK | os.X_OK):
                raise TargetPermissionError(
                    f"the folder {folder} is read-only; bigfile writes its lock, journal "
                    f"and new file beside the target")
        if mode == "rewrite":
            refuse_linked_rewrite(self.path, self.url, break_hardlinks)

    @contextlib.contextmanager
    def session(self, *, wait: float, job: str, dry_run: bool = False,
                keep: str | None = None) -> Iterator[None]:
        """Hold the target for an edit: its lock, after recovering it. A dry run writes
        nothing (no lock file, no rollback): it only refuses a target with an unfinished
        commit."""
        if dry_run:
            TargetLock(self.path, job=job).check_free()
            self.cars = self.cars.repinned()
            check_no_journal(self.cars)
            yield
            return
        with self.locked(wait=wait, job=job):
            self.recover(keep)
            yield

    @contextlib.contextmanager
    def locked(self, *, wait: float, job: str) -> Iterator[None]:
        """Hold the target's lock, with the file it leads to then pinned (see
        :meth:`.Sidecars.repinned`)."""
        with TargetLock(self.path, wait=wait, job=job):
            self.cars = self.cars.repinned()
            yield

    def recover(self, keep: str | None = None) -> RecoveryResult:
        return recover_local(self.cars, keep=keep)

    def identity(self) -> Identity:
        return Identity.of_stat(self.cars.stat_target())

    def source(self) -> Source:
        return Source(self.fs, self.path, self.cars.pin)

    def default_staging(self, *, local_workers: bool) -> str:
        """The hidden folder beside the real file."""
        return self.cars.staging_root

    def check_staging(self, staging: str) -> str:
        return check_staging_parent(staging, self.path)

    def discard(self, job_id: str) -> None:
        with contextlib.suppress(OSError):
            os.rmdir(self.cars.staging_root)
        self.cars.remove(self.cars.new_name(job_id))

    def prepare_direct(self, job_id: str, identity: Identity) -> bool:
        """Create the new file beside the target, as large as the target: workers write
        same-length output straight into it, so those bytes move once."""
        fd = self.cars.create(self.cars.new_name(job_id))
        try:
            preallocate(fd, identity.size, holes=has_holes(os.stat(self.path)))
        finally:
            os.close(fd)
        return True

    def check_unchanged(self, manifest: Manifest, spec: JobSpec, exe: Executor,
                        source_crcs: dict[int, int | None], *, full: bool = False) -> None:
        """Compare the file's identity (size, mtime, ctime, inode, device) with the
        planned one, under the lock: any write since moved its ctime. ``full`` also reads
        every shard a worker read again and checks its CRC32C."""
        check_identity(manifest.identity, self.identity(), self.url)
        if full:
            check_sources(self.url, manifest, spec, exe, source_crcs)

    def commit_offsets(self, layout: Layout, identity: Identity, mode: str, *,
                       dry_run: bool, writer: str) -> CommitOutcome | None:
        """Commit an edit list that only overwrites bytes, truncates and appends straight
        from the validated edits: journal the old bytes, write the new ones. There is
        nothing to scan or stage, so no shard is read. None when the edits need the full
        pipeline (a replace, an insert, a delete) or ``auto`` finds a rewrite cheaper.
        A lone truncate needs no journal: one ftruncate leaves the old file or the new."""
        if layout.replaces or layout.inserts or mode == "rewrite":
            return None
        if len(layout.edits) == 1 and layout.truncate_at is not None:
            if layout.truncate_at == identity.size:
                return CommitOutcome("none", 0, identity.size, "the file has that size already")
            if not dry_run:
                commit_truncate(self.cars, self.url, identity, layout.truncate_at)
            return CommitOutcome("inplace", 0, layout.truncate_at,
                                 "a lone truncate is one ftruncate: no journal, no copy")
        cut = layout.truncate_index
        patches = [(start, data) for start, end, data, index in layout.ranges if index != cut]
        if any(len(data) == 0 for _, data in patches):
            return None  # a delete
        size = identity.size
        cut_at = layout.truncate_at if layout.truncate_at is not None and \
            layout.truncate_at < size else None
        keeps = size if cut_at is None else cut_at
        new = sum(len(data) for _, data in patches)
        size_after = keeps + layout.tail_length
        appends_only = appends_only_layout(layout)
        if (mode == "auto" and not appends_only
                and 2 * new + (size - keeps) > INPLACE_SHARE * max(size_after, 1)):
            return None
        tail = tail_items(layout)
        if not patches and not tail and cut_at is None:
            return CommitOutcome("none", 0, size, "the edits change no byte")
        written = new + sum(len(t) for t in tail if not isinstance(t, int))
        if not dry_run:
            # Appends go to the end as it is at commit time: another writer's are kept.
            written = commit_inplace(
                self.cars, self.url, None if appends_only else identity,
                [(o, len(d)) for o, d in patches], cut_at, tail, size_after,
                placed_chunks(patches), writer)
            size_after = os.stat(self.path).st_size if appends_only else size_after
        reason = ("mode inplace was asked for" if mode == "inplace"
                  else "appends only: written at the end of the file" if appends_only
                  else "patches, truncates and appends keep every byte in place, and "
                  + _share(2 * new + (size - keeps), size_after))
        return CommitOutcome("inplace", written, size_after, reason)

    def commit(self, stage: Staging, pieces: Sequence[Piece], manifest: Manifest,
               layout: Layout, mode: str, size_after: int, *, dry_run: bool,
               options: dict[str, Any]) -> CommitOutcome:
        """Verify and commit in ``mode`` (auto picks by the bytes each would write; a file
        with other hard links is committed in place where the edits allow, since a rewrite
        would cut its links)."""
        size = manifest.identity.size
        break_links = bool(options.get("break_hardlinks"))
        linked = not break_links and os.stat(self.path).st_nlink > 1
        cut_at = layout.truncate_at if (layout.truncate_at is not None
                                        and layout.truncate_at < size) else None
        tail = tail_items(layout)
        keeps = cut_at if cut_at is not None else size
        kept = [p for p in pieces if p.start < keeps]
        staged = sum(p.result.staged_bytes for p in pieces if p.result is not None)
        tail_bytes = sum(len(t) for t in tail if not isinstance(t, int))
        cheap = 2 * staged + (size - keeps) <= INPLACE_SHARE * max(size_after, 1)
        if manifest.direct:
            staged += sum(p.result.new_bytes for p in pieces if p.result is not None)
            cheap = 2 * staged + (size - keeps) <= INPLACE_SHARE * max(size_after, 1)
        ranges = None
        inplace_bytes = 2 * staged + (size - keeps)
        reason = ("mode inplace was asked for" if mode == "inplace"
                  else f"the file has {os.stat(self.path).st_nlink} hard links, which an "
                  "in-place commit keeps" if linked and not cheap
                  else "every byte stays in place and " + _share(inplace_bytes, size_after))
        with _opened(self.cars.new_file(manifest.job_id) if manifest.direct
                     else None) as written_fd:
            if mode == "inplace" or (mode == "auto" and (cheap or linked)):
                if _lines_up(pieces, keeps):
                    if dry_run:
                        return CommitOutcome("inplace", staged + tail_bytes, size_after,
                                             reason)
                    ranges = inplace_ranges(stage, kept, manifest, written_fd)
                if ranges is None and mode == "inplace":
                    raise EditError("mode inplace needs edits that keep every byte where it "
                                    "is (patches, same-length replaces, appends, truncates); "
                                    "use rewrite or auto")
            if ranges is not None:
                written = commit_inplace(
                    self.cars, manifest.target, manifest.identity, ranges, cut_at, tail,
                    size_after, staged_writes(stage, kept, manifest, written_fd),
                    options.get("writer", "pwrite"))
                return CommitOutcome("inplace", written, size_after, reason)
        reason = ("mode rewrite was asked for" if mode == "rewrite"
                  else "the edits move bytes (lengths change): only a rewrite commits that"
                  if not _lines_up(pieces, keeps) else _share(inplace_bytes, size_after))
        if dry_run:
            check_hardlinks(os.stat(self.path), self.url, break_links)
            return CommitOutcome("rewrite", size_after, size_after, reason)
        with self.source() as source:
            assert source.fileno is not None
            written = commit_rewrite(self.path, source.fileno, stage, pieces, manifest, tail,
                                     size_after, break_hardlinks=break_links,
                                     verify=options.get("verify", "fast"))
        return CommitOutcome("rewrite", written, size_after, reason)

    def stream_rewrite(self, stage: Staging, pieces: Iterator[Piece], manifest: Manifest,
                       layout: Layout, after_pieces: Callable[[], None],
                       break_hardlinks: bool = False, verify: str = "fast") -> CommitOutcome:
        """Rewrite from pieces that are still being made (see ``commit_rewrite``)."""
        with self.source() as source:
            assert source.fileno is not None
            written = commit_rewrite(self.path, source.fileno, stage, pieces, manifest,
                                     tail_items(layout), None, after_pieces, break_hardlinks,
                                     verify)
        return CommitOutcome("rewrite", written, written,
                             "the edits move bytes (an insert, a delete or a replace of "
                             "another length): only a rewrite commits that")


@contextlib.contextmanager
def _opened(path: str | None) -> Iterator[int | None]:
    """An fd on the new file workers wrote into, if there is one."""
    if path is None:
        yield None
        return
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        yield fd
    finally:
        os.close(fd)


def _lines_up(pieces: Sequence[Piece], keeps: int) -> bool:
    """True when every piece's output sits at its source offset (length kept), up to
    ``keeps`` (where a truncate cuts)."""
    at = 0
    for piece in pieces:
        if piece.start >= keeps:
            if piece.length:
                return False
            continue
        if at != piece.start:
            return False
        at += piece.length
    return at == keeps
