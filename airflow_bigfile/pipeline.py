"""One job on one target: plan -> patch -> resolve -> verify -> commit.

The entry points in :mod:`airflow_bigfile.api` build a :class:`Job` and call its steps; the
steps call the :class:`~airflow_bigfile.targets.base.Target` protocol and never ask which
kind of target they have.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from airflow_bigfile.commit.assembly import Piece, iter_pieces, resolve_pieces
from airflow_bigfile.edits import Edit, Layout, check_offsets
from airflow_bigfile.exceptions import StagingError
from airflow_bigfile.io.sidecars import check_job_id, make_job_folder
from airflow_bigfile.patch.patcher import ShardResult
from airflow_bigfile.patch.re2 import translate
from airflow_bigfile.patch.scan import Matcher
from airflow_bigfile.plan.batching import contiguous_runs
from airflow_bigfile.plan.manifest import Manifest, Shard, boundaries, edit_windows, touched
from airflow_bigfile.results import EditResult
from airflow_bigfile.run.executors import Executor
from airflow_bigfile.run.tasks import JobSpec, checksum_ranges, patch_shards
from airflow_bigfile.settings import Settings
from airflow_bigfile.targets.base import CommitOutcome, Target

if TYPE_CHECKING:
    from fsspec.callbacks import Callback

log = logging.getLogger(__name__)


def staging_parent(target: Target, staging: str | None, local_workers: bool) -> str:
    """The folder a job's own staging folder is made in, checked before any I/O. The
    caller's ``staging`` is a parent: bigfile never removes it nor anything already in it."""
    if staging is None:
        return target.default_staging(local_workers=local_workers)
    if not isinstance(staging, str) or not staging:
        raise StagingError(f"staging must be a folder path or URL, not {staging!r}")
    if "://" not in staging or staging.startswith(("file://", "local://")):
        return target.check_staging(staging.split("://", 1)[-1])
    return staging


def regex_engines(layout: Layout) -> list[dict[str, str]]:
    """Which engine runs each regex replace, and why ``re`` when it does. RE2 (re2.py)
    takes the bulk of every block where that replace is the only edit nearby; ``re`` scans
    the ends of those blocks and every block where other edits are near."""
    engines = []
    for index, edit in layout.replaces:
        if edit.pattern is None:
            continue
        translation = translate(edit.pattern, edit.replace)
        reason = translation.reason or ("re at block ends and where other edits are near"
                                        if len(layout.replaces) == 1 and not layout.ranges
                                        and not layout.inserts
                                        else "re where other edits are near")
        engines.append({"edit": layout.owner(index), "engine": translation.engine,
                        "reason": reason})
    return engines


def job_url(parent: str, job_id: str) -> str:
    """The job's own staging folder in ``parent``."""
    return parent.rstrip("/") + "/" + check_job_id(job_id)


def unchanged(target: Target, job_id: str, dry_run: bool, started: float) -> EditResult:
    """The result of an empty edit list: nothing done, nothing touched."""
    size = target.identity().size
    return EditResult(target=target.url, size_before=size, size_after=size, matches=0,
                      shards=0, shards_changed=0, bytes_written=0, commit_mode="none",
                      dry_run=dry_run, job_id=job_id, seconds=_since(started),
                      commit_reason="the edit list is empty")


def offsets_result(url: str, job_id: str, size_before: int, outcome: CommitOutcome,
                   dry_run: bool, started: float) -> EditResult:
    """The result of edits committed straight from the edit list, with no shard pass."""
    return EditResult(target=url, size_before=size_before, size_after=outcome.size_after,
                      matches=0, shards=0, shards_changed=0,
                      bytes_written=outcome.bytes_written, commit_mode=outcome.mode,
                      dry_run=dry_run, job_id=job_id, seconds=_since(started),
                      commit_reason=outcome.reason)


def rewrite_certain(manifest: Manifest) -> bool:
    """True when any change the edits make moves bytes (an insert, a delete, a literal
    replace of another length), so only a rewrite can commit it and the commit may start
    while shards are still being patched. (A regex may keep lengths: left to ``auto``.)"""
    layout = manifest.layout
    return not manifest.direct and (
        bool(layout.inserts)
        or any(len(data) != end - start for start, end, data, index in layout.ranges
               if index != layout.truncate_index)
        or any(not r.regex and len(r.find) != len(r.replace) for _, r in layout.replaces))


@dataclass
class Planned:
    """A manifest written to staging, the batches of shards to patch, and its SHA-256."""

    manifest: Manifest
    batches: list[list[Shard]]
    digest: str | None


class Incoming:
    """Shard results as the executor delivers them, kept by shard index."""

    def __init__(self, batches: Iterator[list[ShardResult]], manifest: Manifest,
                 progress: Callback | None) -> None:
        self.batches, self.manifest, self.progress = batches, manifest, progress
        self.results: dict[int, ShardResult] = {}

    def _take(self) -> bool:
        batch = next(self.batches, None)
        if batch is None:
            return False
        for result in batch:
            self.results[result.index] = result
            if self.progress is not None:
                self.progress.relative_update(self.manifest.shards[result.index].length)
        return True

    def result_of(self, index: int) -> ShardResult | None:
        """Shard ``index``'s result, waiting for workers until it comes (None: never)."""
        while index not in self.results and self._take():
            pass
        return self.results.get(index)

    def all(self) -> dict[int, ShardResult]:
        while self._take():
            pass
        return self.results


class _Unchanged(Exception):
    """Raised inside a streamed commit whose pieces changed nothing: abandon it."""


class Job:
    """One edit of one target: where it stages (``spec``), how (``settings``, filled in for
    the target) and where its shard work runs (``exe``)."""

    def __init__(self, target: Target, spec: JobSpec, settings: Settings, exe: Executor,
                 job_id: str, started: float) -> None:
        self.target, self.spec, self.settings, self.exe = target, spec, settings, exe
        self.job_id, self.started = job_id, started

    # -- staging -------------------------------------------------------------------------

    def make_folder(self, *, distributed: bool) -> None:
        """Create the job's own staging folder (locally 0700, failing if it exists) and its
        marker, which says whose it is and lets recovery tell a live plan from a dead job."""
        stage = self.spec.open_staging()
        if stage.local:
            parent = os.path.dirname(stage.root)
            default = self.target.local and parent == self.target.default_staging(
                local_workers=True)
            make_job_folder(parent, self.job_id, target=self.target.path,
                            distributed=distributed, follow=not default)
        elif distributed:
            stage.write_json("distributed", {"job_id": self.job_id, "created": time.time()})

    def clean(self, made: bool) -> None:
        """Remove what this job made (its staging folder, its new file), and nothing else.
        After a commit a failure here is a warning: the edit is done and must not be
        reported as failed."""
        try:
            if made:
                self.spec.open_staging().destroy()
            self.target.discard(self.job_id)
        except (OSError, StagingError) as exc:
            log.warning("could not remove the staging of job %s (%s); `bigfile recover` "
                        "removes it later", self.job_id, exc)

    # -- plan ----------------------------------------------------------------------------

    def plan(self, edit_list: list[Edit], batch_count: int | Callable[[int, int], int], *,
             direct: bool = False, checksum: bool = True) -> Planned:
        """Check the edits against the file, shard it, checksum what will be read, write the
        manifest. Runs under the target's session.

        ``checksum`` False (a job planned, patched and committed in one call on a local
        file) leaves the source CRCs to the workers, who take them as they read: the commit
        checks the file against those, so a change after a worker read its bytes is still
        refused, and the source is read twice instead of three times.

        ``batch_count`` is a number, or a function of the bytes and the number of the shards
        to patch that gives it. ``direct`` lets workers write same-length output straight
        into a new file beside the target, where the target has one."""
        target, settings, spec = self.target, self.settings, self.spec
        assert settings.shard_size is not None and settings.align is not None
        identity = target.identity()
        layout = check_offsets(edit_list, identity.size, target.url)
        if layout.replaces or settings.delimiter:
            settings.check_shard_count(identity.size)
            with target.source() as source:
                starts = boundaries(identity.size, settings.shard_size, settings.align,
                                    source, settings.delimiter, settings.taper)
        else:
            starts = edit_windows(layout, settings.shard_size, settings.align)
        ends = [*starts[1:], identity.size] if starts else []
        hit = touched(layout, starts)
        shards = [Shard(i, s, e - s, i in hit)
                  for i, (s, e) in enumerate(zip(starts, ends, strict=True))]
        patched = [s for s in shards if s.patch]
        if callable(batch_count):
            batch_count = batch_count(sum(s.length for s in patched), len(patched))
        batches = contiguous_runs(patched, batch_count)
        crcs: dict[int, int] = {}
        if checksum:
            for part in self.exe.run(checksum_ranges, [
                    (spec, [(s.index, s.offset, s.length) for s in batch], identity.pin)
                    for batch in batches]):
                crcs.update(part)
        shards = [Shard(s.index, s.offset, s.length, s.patch, crcs.get(s.index))
                  for s in shards]
        batches = [[shards[s.index] for s in batch] for batch in batches]
        manifest = Manifest(job_id=self.job_id, target=target.url, identity=identity,
                            edits=edit_list, shards=shards, align=settings.align,
                            delimiter=settings.delimiter, block_size=settings.block_size,
                            regex_timeout=settings.regex_timeout,
                            staging=spec.open_staging().url())
        if direct and layout.same_length and not spec.dry_run and batches:
            manifest.direct = target.prepare_direct(self.job_id, identity)
        digest = manifest.save(spec.open_staging()) if not spec.dry_run else None
        return Planned(manifest, batches, digest)

    # -- patch ---------------------------------------------------------------------------

    def patch(self, planned: Planned, progress: Callback | None) -> Incoming:
        """Start patching every batch; results come in as the workers finish."""
        if progress is not None:
            progress.set_size(sum(s.length for batch in planned.batches for s in batch))
        return Incoming(self.exe.run(patch_shards, [
            (self.spec, [s.index for s in batch], None, planned.manifest)
            for batch in planned.batches]), planned.manifest, progress)

    def _repatcher(self, manifest: Manifest) -> Callable[[Shard, list[int]], ShardResult]:
        """Patches one shard again with its true incoming scan positions, on the job's
        executor (so a regex on ``re`` stays where its timeout and signals can stop it)."""

        def repatch(shard: Shard, resume: list[int]) -> ShardResult:
            results = self.exe.run(patch_shards, [(self.spec, [shard.index], resume, manifest)])
            return next(results)[0]

        return repatch

    # -- commit --------------------------------------------------------------------------

    def commit(self, manifest: Manifest, results: dict[int, ShardResult], *,
               dry_run: bool) -> EditResult:
        """Resolve the shards' results (re-patching any whose guess failed), verify,
        commit."""
        layout = manifest.layout
        pieces = resolve_pieces(manifest, results, self._repatcher(manifest),
                                len(layout.replaces))
        self._check_end(manifest)
        size_after = sum(p.length for p in pieces) + layout.tail_length
        if not any(p.changed for p in pieces) and size_after == manifest.identity.size:
            # Nothing matched and nothing is added or cut: leave the target alone.
            outcome = CommitOutcome("none", 0, size_after,
                                    "nothing matched, nothing is added or cut")
        else:
            if not dry_run:
                self._check_unchanged(manifest, results)
            stage = self.spec.open_staging()
            try:
                outcome = self.target.commit(
                    stage, pieces, manifest, layout, self.settings.mode, size_after,
                    dry_run=dry_run, options={"writer": self.settings.writer,
                                              "break_hardlinks": self.settings.break_hardlinks,
                                              "verify": self.settings.verify})
            finally:
                stage.close_readers()
        return self._figures(manifest, pieces, outcome, dry_run=dry_run)

    def stream_commit(self, manifest: Manifest, incoming: Incoming) -> EditResult | None:
        """Rewrite while the workers are still patching: each piece is written as soon as
        its shard and all before it are resolved, so the scan and the copy overlap. None
        when the pieces changed nothing (the caller then commits the usual way)."""
        self._check_end(manifest)
        seen: list[Piece] = []

        def pieces() -> Iterator[Piece]:
            for piece in iter_pieces(manifest, incoming.result_of,
                                     self._repatcher(manifest),
                                     len(manifest.layout.replaces)):
                seen.append(piece)
                yield piece

        def after_pieces() -> None:
            if not any(p.changed for p in seen):
                raise _Unchanged
            self._check_unchanged(manifest, incoming.results)

        stage = self.spec.open_staging()
        try:
            outcome = self.target.stream_rewrite(stage, pieces(), manifest, manifest.layout,
                                                 after_pieces, self.settings.break_hardlinks,
                                                 self.settings.verify)
        except _Unchanged:
            return None
        finally:
            stage.close_readers()
        return self._figures(manifest, seen, outcome, dry_run=False)

    def _check_unchanged(self, manifest: Manifest, results: dict[int, ShardResult]) -> None:
        self.target.check_unchanged(manifest, self.spec, self.exe,
                                    {i: r.source_crc for i, r in results.items()},
                                    full=self.settings.verify == "full")

    def _check_end(self, manifest: Manifest) -> None:
        """No shard owns the offset just past the last byte, where a regex may match
        empty."""
        layout: Layout = manifest.layout
        regexes = [(i, e) for i, e in layout.replaces if e.regex]
        if not regexes:
            return
        size = manifest.identity.size
        behind = min(size, max(e.max_match for _, e in regexes), 4096)
        tail = bytearray(behind)
        if behind:
            with self.target.source() as source:
                source.readinto(size - behind, memoryview(tail))
        for index, edit in regexes:
            Matcher(edit, index, layout.owner(index)).check_end(bytes(tail), size)

    def _figures(self, manifest: Manifest, pieces: Sequence[Piece], outcome: CommitOutcome,
                 *, dry_run: bool) -> EditResult:
        return EditResult(
            target=manifest.target, size_before=manifest.identity.size,
            size_after=outcome.size_after,
            matches=sum(sum(p.result.matches) for p in pieces if p.result is not None),
            shards=len(manifest.shards), shards_changed=sum(1 for p in pieces if p.changed),
            bytes_written=outcome.bytes_written, commit_mode=outcome.mode, dry_run=dry_run,
            job_id=manifest.job_id, seconds=_since(self.started),
            commit_reason=outcome.reason, regex_engines=regex_engines(manifest.layout))


def _since(started: float) -> float:
    return round(time.monotonic() - started, 6)


__all__ = ["Incoming", "Job", "Planned", "job_url", "offsets_result", "rewrite_certain",
           "staging_parent", "unchanged"]
