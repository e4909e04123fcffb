"""The Python front end.

``edit_file`` runs the whole pipeline on one target in this process. For fleets of workers
the same pipeline comes in three steps, each callable on a different machine:
:func:`plan_edit` (manifest + shard batches), :func:`patch_batch` (one batch, idempotent)
and :func:`commit_edit` (verify + atomic commit).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

from airflow_bigfile.commit.assembly import Piece, iter_pieces, resolve_pieces
from airflow_bigfile.commit.local import check_identity
from airflow_bigfile.commit.metadata import refuse_linked_rewrite
from airflow_bigfile.commit.recover import RecoveryResult
from airflow_bigfile.commit.trust import Batch, check_batch, check_same_target, job_folder
from airflow_bigfile.commit.trust import check_job_id as checked_job_id
from airflow_bigfile.edits import Edit, Layout, check_offsets, coerce_edits
from airflow_bigfile.exceptions import EditError, SourceChangedError, StagingError, TargetError
from airflow_bigfile.io.errors import translated
from airflow_bigfile.io.oscompat import has_holes, preallocate
from airflow_bigfile.io.storage import Staging, is_local, resolve
from airflow_bigfile.patch.patcher import ShardResult
from airflow_bigfile.patch.scan import Matcher
from airflow_bigfile.plan.batching import MAX_BATCHES, batch_count, check_batching
from airflow_bigfile.plan.manifest import (
    BLOCK,
    MANIFEST,
    Manifest,
    Shard,
    boundaries,
    edit_windows,
    new_job_id,
    touched,
)
from airflow_bigfile.run.executors import Executor, check_executor, make_executor
from airflow_bigfile.run.tasks import JobSpec, checksum_ranges, patch_shards
from airflow_bigfile.sizes import parse_size
from airflow_bigfile.targets.local import CommitOutcome, LocalTarget
from airflow_bigfile.targets.lock import TargetLock
from airflow_bigfile.targets.remote import RemoteTarget
from airflow_bigfile.targets.sidecars import (
    check_job_id,
    check_staging_parent,
    make_job_folder,
)

if TYPE_CHECKING:
    from fsspec.callbacks import Callback

log = logging.getLogger(__name__)

DEFAULT_SHARD_SIZE = 64 << 20
# Remote shards are read twice over the network (checksum, patch): keep them smaller.
DEFAULT_REMOTE_SHARD_SIZE = 16 << 20
DEFAULT_ALIGN = 4096
MIN_SPREAD_SHARD = 1 << 20
MODES = ("auto", "inplace", "rewrite")
RESULTS = "results"
RESULT_NAME = re.compile(r"batch-[0-9]{7}\.json")


@dataclass
class EditResult:
    """The figures of one edit (or of what a dry run would do)."""

    target: str
    size_before: int
    size_after: int
    matches: int
    shards: int
    shards_changed: int
    bytes_written: int
    commit_mode: str
    dry_run: bool
    job_id: str
    seconds: float
    commit_reason: str = ""  # why commit_mode was chosen (``auto`` weighs the bytes written)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class PlannedEdit:
    """What :func:`plan_edit` returns: where the manifest is and the shard batches to patch.
    Each batch is a small JSON-able dict naming its staging, so a worker needs nothing else."""

    target: str
    staging: str
    job_id: str
    shards: int
    batches: list[dict[str, Any]]
    manifest_sha256: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def open_target(url: str, storage_options: dict[str, Any] | None = None
                ) -> LocalTarget | RemoteTarget:
    """The target behind ``url``: a local file, or an object on any fsspec filesystem."""
    if not isinstance(url, str) or not url:
        raise EditError(f"the target must be a path or URL, not {url!r}")
    try:
        fs, path = resolve(url, storage_options)
    except (ImportError, ValueError) as exc:
        raise TargetError(f"{url}: {exc}") from exc
    if is_local(fs):
        return LocalTarget(fs, path, url)
    return RemoteTarget(fs, path, url)


def default_align(shard_size: int) -> int:
    """4 KiB, or the largest power of two dividing ``shard_size`` when that is smaller, so
    an explicit shard size is honoured exactly."""
    return min(DEFAULT_ALIGN, shard_size & -shard_size)


def _settings(shard_size: int | str | None, align: int | None, block_size: int | str | None,
              delimiter: bytes | str | None, *, local: bool = True
              ) -> tuple[int, int, int, bytes | None]:
    default = DEFAULT_SHARD_SIZE if local else DEFAULT_REMOTE_SHARD_SIZE
    shard_bytes = parse_size(default if shard_size is None else shard_size, name="shard_size")
    if shard_bytes < 1:
        raise EditError(f"shard_size must be at least 1 byte, not {shard_bytes}")
    block = parse_size(BLOCK if block_size is None else block_size, name="block_size")
    if block < 1:
        raise EditError(f"block_size must be at least 1 byte, not {block}")
    if align is not None and (isinstance(align, bool) or not isinstance(align, int)
                              or align < 1):
        raise EditError(f"align must be a positive integer, not {align!r}")
    if isinstance(delimiter, str):
        delimiter = delimiter.encode("utf-8")
    if delimiter is not None and not delimiter:
        raise EditError("delimiter must not be empty")
    return shard_bytes, align or default_align(shard_bytes), block, delimiter


def _spread(settings: tuple[int, int, int, bytes | None], size: int, workers: int
            ) -> tuple[int, int, int, bytes | None]:
    """Default shards small enough that every worker gets a few (a 16 MiB file on two
    workers is eight 2 MiB shards, not one), but not below 1 MiB."""
    shard_bytes, align, block, delimiter = settings
    per = -(-size // (4 * workers))
    per = max(MIN_SPREAD_SHARD, -(-per // MIN_SPREAD_SHARD) * MIN_SPREAD_SHARD)
    return min(shard_bytes, per), align, block, delimiter


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise EditError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")


def _chunks(items: list[Shard], count: int) -> list[list[Shard]]:
    """Split ``items`` into at most ``count`` contiguous runs of similar byte size."""
    if not items:
        return []
    total = sum(s.length for s in items) or 1
    per = total / max(1, count)
    out: list[list[Shard]] = [[]]
    acc = 0
    for shard in items:
        if out[-1] and acc >= per * len(out) and len(out) < count:
            out.append([])
        out[-1].append(shard)
        acc += shard.length
    return out


def _plan(target: LocalTarget | RemoteTarget, edit_list: list[Edit], spec: JobSpec, job_id: str,
          settings: tuple[int, int, int, bytes | None], exe: Executor,
          batch_count: int | Callable[[int, int], int], direct: bool = False,
          checksum: bool = True) -> tuple[Manifest, Layout, list[list[Shard]], str | None]:
    """Check the edits against the file, shard it, checksum what will be read, write the
    manifest. Runs under the target's lock.

    ``checksum`` False (a local job planned, patched and committed in one call) leaves the
    source CRCs to the workers, who take them as they read: the commit checks the file
    against those, so a change after a worker read its bytes is still refused, and the
    source is read twice instead of three times (for a file larger than memory, from disk).

    ``batch_count`` is a number, or a function of the bytes and the number of the shards to
    patch that gives it."""
    shard_bytes, align, block, delimiter = settings
    identity = target.identity()
    layout = check_offsets(edit_list, identity.size, target.url)
    if layout.replaces or delimiter:
        with target.source() as source:
            starts = boundaries(identity.size, shard_bytes, align, source, delimiter)
    else:
        starts = edit_windows(layout, shard_bytes, align)
    ends = [*starts[1:], identity.size] if starts else []
    hit = touched(layout, starts)
    shards = [Shard(i, s, e - s, i in hit)
              for i, (s, e) in enumerate(zip(starts, ends, strict=True))]
    patched = [s for s in shards if s.patch]
    if callable(batch_count):
        batch_count = batch_count(sum(s.length for s in patched), len(patched))
    batches = _chunks(patched, batch_count)
    crcs: dict[int, int] = {}
    if checksum:
        for part in exe.run(checksum_ranges, [
                (spec, [(s.index, s.offset, s.length) for s in batch]) for batch in batches]):
            crcs.update(part)
    shards = [Shard(s.index, s.offset, s.length, s.patch, crcs.get(s.index)) for s in shards]
    batches = [[shards[s.index] for s in batch] for batch in batches]
    stage = spec.open_staging()
    manifest = Manifest(job_id=job_id, target=target.url, identity=identity, edits=edit_list,
                        shards=shards, align=align, delimiter=delimiter, block_size=block,
                        staging=stage.url())
    if direct and isinstance(target, LocalTarget) and layout.same_length and not spec.dry_run \
            and batches:
        # Output offsets are the source's: workers write new bytes straight into the new
        # file beside the target, and bytes move once.
        name = target.cars.new_name(job_id)
        manifest.direct = True
        fd = target.cars.create(name)
        try:
            preallocate(fd, identity.size, holes=has_holes(os.stat(target.path)))
        finally:
            os.close(fd)
    digest = manifest.save(stage) if not spec.dry_run else None
    return manifest, layout, batches, digest


def _verify_sources(target: LocalTarget | RemoteTarget, manifest: Manifest, spec: JobSpec,
                    exe: Executor, results: dict[int, ShardResult]) -> None:
    """Check every shard a worker read of a local source again right before committing,
    against the CRC taken when planning or, without one, when the worker read it: a writer
    that kept the size, mtime and inode is caught here. (On object stores the ETag, a digest
    of the content, does this job.)"""
    if not target.local:
        return
    expected = {i: manifest.shards[i].crc if manifest.shards[i].crc is not None
                else r.source_crc for i, r in results.items()}
    shards = [manifest.shards[i] for i in sorted(expected) if expected[i] is not None]
    for part in exe.run(checksum_ranges, [
            (spec, [(s.index, s.offset, s.length) for s in batch])
            for batch in _chunks(shards, exe.workers * 2)]):
        for index, crc in part:
            if crc != expected[index]:
                shard = manifest.shards[index]
                raise SourceChangedError(
                    f"{target.url} changed since it was planned (bytes {shard.offset}.."
                    f"{shard.end} no longer match their CRC32C); nothing was committed, "
                    f"run the edit again")


def _commit(target: LocalTarget | RemoteTarget, manifest: Manifest, spec: JobSpec,
            results: dict[int, ShardResult], mode: str, *, dry_run: bool,
            started: float, options: dict[str, Any], exe: Executor) -> EditResult:
    """Resolve the shards' results (re-patching any whose guess failed), verify, commit."""
    layout = manifest.layout
    pieces = resolve_pieces(manifest, results, _repatcher(spec, manifest),
                            len(layout.replaces))
    _check_end(target, manifest, layout)
    size_after = sum(p.length for p in pieces) + layout.tail_length
    stage = spec.open_staging()
    if not any(p.changed for p in pieces) and size_after == manifest.identity.size:
        # Nothing matched and nothing is added or cut: leave the target alone.
        outcome = CommitOutcome("none", 0, size_after, "nothing matched, nothing is added or cut")
    else:
        if not dry_run:
            _verify_sources(target, manifest, spec, exe, results)
        try:
            outcome = target.commit(stage, pieces, manifest, layout, mode, size_after,
                                    dry_run=dry_run, options=options)
        finally:
            stage.close_readers()
    return _figures(manifest, pieces, outcome, dry_run=dry_run, started=started)


def _repatcher(spec: JobSpec, manifest: Manifest) -> Callable[[Shard, list[int]], ShardResult]:
    """Patches one shard again with its true incoming scan positions."""

    def repatch(shard: Shard, resume: list[int]) -> ShardResult:
        return patch_shards(spec, [shard.index], resume, manifest)[0]

    return repatch


def _figures(manifest: Manifest, pieces: Sequence[Piece], outcome: CommitOutcome, *,
             dry_run: bool, started: float) -> EditResult:
    return EditResult(
        target=manifest.target, size_before=manifest.identity.size,
        size_after=outcome.size_after,
        matches=sum(sum(p.result.matches) for p in pieces if p.result is not None),
        shards=len(manifest.shards), shards_changed=sum(1 for p in pieces if p.changed),
        bytes_written=outcome.bytes_written, commit_mode=outcome.mode, dry_run=dry_run,
        job_id=manifest.job_id, seconds=round(time.monotonic() - started, 6),
        commit_reason=outcome.reason)


class _Incoming:
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


def _rewrite_certain(manifest: Manifest) -> bool:
    """True when any change the edits make moves bytes (an insert, a delete, a literal
    replace of another length), so only a rewrite can commit it and the commit may start
    while shards are still being patched. (A regex may keep lengths: left to ``auto``.)"""
    layout = manifest.layout
    return not manifest.direct and (
        bool(layout.inserts)
        or any(len(data) != end - start for start, end, data, index in layout.ranges
               if index != layout.truncate_index)
        or any(not r.regex and len(r.find) != len(r.replace) for _, r in layout.replaces))


def _stream_commit(target: LocalTarget, manifest: Manifest, spec: JobSpec,
                   incoming: _Incoming, started: float, exe: Executor,
                   break_hardlinks: bool = False) -> EditResult | None:
    """Rewrite while the workers are still patching: each piece is written as soon as its
    shard and all before it are resolved, so the scan and the copy overlap. None when the
    pieces changed nothing (the caller then commits the tail, if any, the usual way)."""
    layout = manifest.layout
    _check_end(target, manifest, layout)
    seen: list[Piece] = []

    def pieces() -> Iterator[Piece]:
        for piece in iter_pieces(manifest, incoming.result_of, _repatcher(spec, manifest),
                                 len(layout.replaces)):
            seen.append(piece)
            yield piece

    def after_pieces() -> None:
        if not any(p.changed for p in seen):
            raise _Unchanged
        _verify_sources(target, manifest, spec, exe, incoming.results)

    stage = spec.open_staging()
    try:
        outcome = target.stream_rewrite(stage, pieces(), manifest, layout, after_pieces,
                                        break_hardlinks)
    except _Unchanged:
        return None
    finally:
        stage.close_readers()
    return _figures(manifest, seen, outcome, dry_run=False, started=started)


def _check_end(target: LocalTarget | RemoteTarget, manifest: Manifest, layout: Layout) -> None:
    """No shard owns the offset just past the last byte, where a regex may match empty."""
    regexes = [(i, e) for i, e in layout.replaces if e.regex]
    if not regexes:
        return
    size = manifest.identity.size
    behind = min(size, max(e.max_match for _, e in regexes), 4096)
    tail = bytearray(behind)
    if behind:
        with target.source() as source:
            source.readinto(size - behind, memoryview(tail))
    for index, edit in regexes:
        Matcher(edit, index, layout.owner(index)).check_end(bytes(tail), size)


@translated
def edit_file(url: str, edits: Any, *, storage_options: dict[str, Any] | None = None,
              shard_size: int | str | None = None, workers: int | None = None,
              executor: str | Executor | None = "thread", dry_run: bool = False,
              mode: str = "auto", staging: str | None = None,
              delimiter: bytes | str | None = None, align: int | None = None,
              progress: Callback | None = None, wait: float = 0.0,
              scheduler: str | None = None, client: Any = None,
              block_size: int | str | None = None, writer: str = "pwrite",
              stop: threading.Event | None = None,
              break_hardlinks: bool = False) -> EditResult:
    """Apply ``edits`` to the file at ``url`` as one atomic change.

    Parameters
    ----------
    url : a local path or an fsspec URL.
    edits : edit objects (:class:`Replace`, :class:`Patch`, ...), their JSON dicts, or JSON.
    shard_size : bytes per shard, an int or a string like ``"64MiB"`` (default 64 MiB).
    workers : parallel workers (default: the CPU count).
    executor : ``"thread"`` (default), ``"process"``, ``"dask"`` or an executor object;
        ``scheduler``/``client`` select the Dask cluster.
    dry_run : compute every figure, change nothing.
    mode : ``"auto"`` (by the bytes each mode writes), ``"inplace"`` or ``"rewrite"``.
    staging : where shards are staged (default: a hidden folder beside the target).
    delimiter : move shard boundaries past this record delimiter (e.g. ``b"\\n"``).
    align : shard boundaries are multiples of this (default 4 KiB).
    progress : an ``fsspec.callbacks.Callback`` told the bytes to patch and patched.
    wait : seconds to wait for another job's lock on the target.
    block_size : bytes a worker reads at a time (default 8 MiB); memory per worker is
        about this plus the longest match.
    writer : how an in-place commit writes: ``"pwrite"`` or ``"mmap"``.
    stop : an event that cancels the job when set (from another thread, e.g. an operator's
        ``on_kill``): thread and process workers stop, nothing is committed.
    break_hardlinks : rewrite a file that has other hard links (they keep the old bytes);
        without it such a file is committed in place where the edits allow, else refused
        with :class:`HardLinkError`.

    Returns
    -------
    EditResult with size_before, size_after, matches, shards, shards_changed,
    bytes_written and commit_mode.

    Raises
    ------
    BigFileError
        (a subclass) for bad edits, conflicts, an unusable target, a source that changed
        or a staging failure; the target is then byte-for-byte as it was.

    Examples
    --------
    >>> edit_file("data.csv", [Replace(b"@old.com", b"@new.com")])  # doctest: +SKIP
    """
    started = time.monotonic()
    edit_list = coerce_edits(edits)
    _check_mode(mode)
    if writer not in ("pwrite", "mmap"):
        raise EditError(f"writer must be pwrite or mmap, not {writer!r}")
    _settings(shard_size, align, block_size, delimiter)  # bad settings fail before any I/O
    if executor is None or isinstance(executor, str):
        check_executor(executor, workers)
    target = open_target(url, storage_options)
    settings = _settings(shard_size, align, block_size, delimiter, local=target.local)
    target.check(write=not dry_run and bool(edit_list))
    if mode == "rewrite" and target.local and edit_list:
        refuse_linked_rewrite(target.path, url, break_hardlinks)
    job_id = new_job_id()
    local_workers = executor in (None, "thread", "process")
    parent = _staging_parent(target, staging, local_workers)
    if not edit_list:  # a computed edit list may be empty: nothing to do, nothing touched
        return _unchanged(target, job_id, dry_run, started)
    dask = {k: v for k, v in (("scheduler", scheduler), ("client", client)) if v}
    with target.session(wait=wait, job=job_id, dry_run=dry_run):
        if isinstance(target, LocalTarget) and local_workers:
            identity = target.identity()
            outcome = target.patch_in_place(check_offsets(edit_list, identity.size, url),
                                            identity, mode, dry_run=dry_run, writer=writer)
            if outcome is not None:
                return EditResult(
                    target=url, size_before=identity.size, size_after=outcome.size_after,
                    matches=0, shards=0, shards_changed=0,
                    bytes_written=outcome.bytes_written, commit_mode=outcome.mode,
                    dry_run=dry_run, job_id=job_id,
                    seconds=round(time.monotonic() - started, 6), commit_reason=outcome.reason)
        spec = JobSpec(target=url, staging=_job_url(parent, job_id),
                       storage_options=storage_options or {}, dry_run=dry_run)
        exe = make_executor(executor, workers, stop, **dask)
        made = False
        try:
            if not dry_run:
                _make_job(spec, target, job_id, distributed=False)
                made = True
            if shard_size is None and target.local:
                settings = _spread(settings, target.identity().size, exe.workers)
            manifest, _, batches, _ = _plan(target, edit_list, spec, job_id, settings, exe,
                                            exe.workers * 4, direct=local_workers,
                                         checksum=not target.local)
            if progress is not None:
                progress.set_size(sum(s.length for batch in batches for s in batch))
            incoming = _Incoming(exe.run(patch_shards, [
                (spec, [s.index for s in batch], None, manifest) for batch in batches]),
                manifest, progress)
            if (isinstance(target, LocalTarget) and not dry_run and mode != "inplace"
                    and _rewrite_certain(manifest)):
                streamed = _stream_commit(target, manifest, spec, incoming, started, exe,
                                          break_hardlinks)
                if streamed is not None:
                    return streamed
            return _commit(target, manifest, spec, incoming.all(), mode, dry_run=dry_run,
                           started=started, exe=exe,
                           options={"writer": writer, "break_hardlinks": break_hardlinks})
        finally:
            exe.close()
            _clean_job(target, spec, job_id, made)


def _unchanged(target: LocalTarget | RemoteTarget, job_id: str, dry_run: bool,
               started: float) -> EditResult:
    size = target.identity().size
    return EditResult(target=target.url, size_before=size, size_after=size, matches=0,
                      shards=0, shards_changed=0, bytes_written=0, commit_mode="none",
                      dry_run=dry_run, job_id=job_id,
                      seconds=round(time.monotonic() - started, 6),
                      commit_reason="the edit list is empty")


def _staging_parent(target: LocalTarget | RemoteTarget, staging: str | None,
                    local_workers: bool) -> str:
    """The folder a job's own staging folder is made in, checked before any I/O. The
    caller's ``staging`` is a parent: bigfile never removes it nor anything already in it."""
    if staging is not None:
        if not isinstance(staging, str) or not staging:
            raise StagingError(f"staging must be a folder path or URL, not {staging!r}")
        if "://" not in staging or staging.startswith(("file://", "local://")):
            local = staging.split("://", 1)[-1]
            return check_staging_parent(local, target.path if target.local else "")
        return staging
    if not target.local and local_workers:
        return tempfile.gettempdir()
    return target.staging_parent(None)


def _job_url(parent: str, job_id: str) -> str:
    return parent.rstrip("/") + "/" + check_job_id(job_id)


def _make_job(spec: JobSpec, target: LocalTarget | RemoteTarget, job_id: str, *,
              distributed: bool) -> None:
    """Create the job's own staging folder (locally 0700, failing if it exists) and its
    marker, which says whose it is and lets recovery tell a live plan from a dead job."""
    stage = spec.open_staging()
    if stage.local:
        parent = os.path.dirname(stage.root)
        make_job_folder(parent, job_id, target=target.path, distributed=distributed,
                        follow=not (target.local and parent == target.staging_parent(None)))
    elif distributed:
        stage.write_json("distributed", {"job_id": job_id, "created": time.time()})


def _clean_job(target: LocalTarget | RemoteTarget, spec: JobSpec, job_id: str,
               made: bool) -> None:
    """Remove what this job made (its staging folder, its new file), and nothing else.
    After a commit a failure here is a warning: the edit is done and must not be
    reported as failed."""
    try:
        if made:
            spec.open_staging().destroy()
        target.cleanup_staging_root()
        if isinstance(target, LocalTarget):
            target.cars.remove(target.cars.new_name(job_id))
    except OSError as exc:
        log.warning("could not remove the staging of job %s (%s); `bigfile recover` "
                    "removes it later", job_id, exc)


@translated
def plan_edit(url: str, edits: Any, *, staging: str | None = None,
              storage_options: dict[str, Any] | None = None,
              staging_options: dict[str, Any] | None = None,
              shard_size: int | str | None = None, align: int | None = None,
              delimiter: bytes | str | None = None, block_size: int | str | None = None,
              max_batches: int | None = None, batch_bytes: int | str | None = None,
              batch_limit: int = MAX_BATCHES, workers: int | None = None, wait: float = 0.0
              ) -> PlannedEdit:
    """Plan an edit for workers elsewhere: write the manifest to ``staging`` and return the
    batches of contiguous shards (small dicts, one per mapped task).

    How many: enough that each gets about ``batch_bytes`` to patch (default
    :data:`~airflow_bigfile.plan.batching.DEFAULT_BATCH_BYTES`, which outweighs a mapped task's
    start-up), at most ``max_batches`` (given alone: that many), never more than
    ``batch_limit`` and at least one; see :mod:`airflow_bigfile.plan.batching`.

    The target is recovered and locked while planning, not between the steps; the commit
    refuses if the target changed in between.
    """
    edit_list = coerce_edits(edits)
    _settings(shard_size, align, block_size, delimiter)
    check_batching(max_batches, batch_bytes, batch_limit)
    target = open_target(url, storage_options)
    settings = _settings(shard_size, align, block_size, delimiter, local=target.local)
    target.check(write=True)
    job_id = new_job_id()
    stage_url = _job_url(_staging_parent(target, staging, local_workers=False), job_id)
    spec = JobSpec(target=url, staging=stage_url, storage_options=storage_options or {},
                   staging_options=staging_options or {})
    with target.session(wait=wait, job=job_id):
        exe = make_executor("thread", workers)
        _make_job(spec, target, job_id, distributed=True)
        try:
            manifest, _, batches, digest = _plan(
                target, edit_list, spec, job_id, settings, exe,
                functools.partial(batch_count, max_batches=max_batches,
                                  batch_bytes=batch_bytes, ceiling=batch_limit))
        except BaseException:
            _clean_job(target, spec, job_id, True)
            raise
        finally:
            exe.close()
    # Edits that read no shard (appends, growing truncates) still get one (empty) batch, so
    # a mapped patch step runs once and the commit after it is not skipped.
    ranges = [(batch[0].index, batch[-1].index) for batch in batches] or [(0, -1)]
    assert digest is not None
    return PlannedEdit(
        target=url, staging=stage_url, job_id=job_id, shards=len(manifest.shards),
        manifest_sha256=digest,
        batches=[{"staging": stage_url, "job_id": job_id, "first": first, "last": last,
                  "manifest_sha256": digest} for first, last in ranges])


def _batch_name(first: int) -> str:
    return f"{RESULTS}/batch-{first:07d}.json"


def _load_manifest(stage: Staging, job_id: str, sha256: str) -> Manifest:
    """The plan's manifest: its bytes must have the plan's SHA-256 and name the job."""
    manifest = Manifest.load(stage, sha256)
    if manifest.job_id != job_id:
        raise StagingError(f"the manifest at {stage.path(MANIFEST)} is for job "
                           f"{manifest.job_id}, not {job_id}; refusing it")
    return manifest


def _check_range(manifest: Manifest, batch: Batch) -> None:
    if not batch.empty and not (batch.first >= 0 and batch.last < len(manifest.shards)):
        raise StagingError(f"the batch's shards {batch.first}..{batch.last} are not shards of "
                           f"job {batch.job_id} (it has {len(manifest.shards)})")


@translated
def patch_batch(batch: dict[str, Any], *, storage_options: dict[str, Any] | None = None,
                staging_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Patch one batch from :func:`plan_edit` and record its results in staging.

    The manifest is used only if it is the one planned (the batch carries its SHA-256); the
    batch's staging must be its job's folder. Idempotent: a retry overwrites its own staged
    shards and results. Returns a small summary (no shard data) suitable for XCom.
    """
    checked = check_batch(batch)
    stage = JobSpec(target="", staging=checked.staging, storage_options=storage_options or {},
                    staging_options=staging_options or {}).open_staging()
    manifest = _load_manifest(stage, checked.job_id, checked.manifest_sha256)
    _check_range(manifest, checked)
    spec = JobSpec(target=manifest.target, staging=checked.staging,
                   storage_options=storage_options or {}, staging_options=staging_options or {})
    indices = [i for i in range(checked.first, checked.last + 1) if manifest.shards[i].patch]
    results = patch_shards(spec, indices, None, manifest)
    stage.write_json(_batch_name(checked.first), [r.to_json() for r in results])
    return {"staging": checked.staging, "job_id": manifest.job_id, "first": checked.first,
            "last": checked.last, "manifest_sha256": checked.manifest_sha256,
            "matches": sum(sum(r.matches) for r in results),
            "changed": sum(1 for r in results if r.changed),
            "errors": [r.error for r in results if r.error]}


def _commit_batches(staging: str, batches: Iterable[dict[str, Any]] | None,
                    manifest_sha256: str | None) -> tuple[Batch, list[Batch] | None]:
    """The plan a commit trusts: its job folder, job id and manifest digest (as a batch
    covering no shard) and the checked batches given, all of that one plan."""
    given = None if batches is None else [check_batch(b) for b in batches]
    digest = manifest_sha256 or (given[0].manifest_sha256 if given else None)
    if digest is None:
        raise StagingError(
            f"commit_edit({staging!r}) needs the plan's batches (or the patch summaries) or "
            f"its manifest_sha256: a staging folder alone is not trusted")
    job_id = checked_job_id(job_folder(staging), f"the staging {staging}")
    plan = check_batch({"staging": staging, "job_id": job_id, "first": 0,
                        "last": -1, "manifest_sha256": digest})
    if any((b.staging, b.job_id, b.manifest_sha256) != (plan.staging, plan.job_id, digest)
           for b in given or []):
        raise StagingError(f"the batches given are not all of the one plan staged at "
                           f"{staging}; refusing to commit")
    return plan, given


def _read_results(stage: Staging, manifest: Manifest, plan: Batch,
                  batches: list[Batch] | None) -> dict[int, ShardResult]:
    """The workers' results, each refused unless it is for a shard of its batch. Without
    batches, each results file is one, up to the next."""
    if batches is None:
        firsts = sorted(int(name[6:13]) for name in _list_results(stage))
        batches = [replace(plan, first=first, last=after - 1) for first, after
                   in zip(firsts, [*firsts[1:], len(manifest.shards)], strict=True)]
    results: dict[int, ShardResult] = {}
    for batch in batches:
        if batch.empty:
            continue
        _check_range(manifest, batch)
        name = _batch_name(batch.first)
        found = stage.read_json(name)
        for obj in found if isinstance(found, list) else [found]:
            result = ShardResult.from_json(obj)
            if not batch.first <= result.index <= batch.last or result.index in results:
                raise StagingError(f"{stage.path(name)} has a result for shard "
                                   f"{result.index}, outside its batch {batch.first}.."
                                   f"{batch.last} or given twice; the staging was tampered "
                                   f"with")
            results[result.index] = result
    return results


@translated
def commit_edit(staging: str, *, target: str | None = None,
                batches: Iterable[dict[str, Any]] | None = None,
                manifest_sha256: str | None = None,
                storage_options: dict[str, Any] | None = None,
                staging_options: dict[str, Any] | None = None,
                mode: str = "auto", wait: float = 0.0, writer: str = "pwrite",
                break_hardlinks: bool = False) -> EditResult:
    """Verify every staged shard of a planned edit and commit it atomically; the job's
    staging folder is removed afterwards, whatever happens. A missing or corrupt shard fails
    here, target untouched. ``break_hardlinks`` as for :func:`edit_file`.

    Nothing in the staging folder is trusted: the manifest must have the SHA-256 the plan
    returned, from ``batches`` (the plan's batches or the patch summaries) or
    ``manifest_sha256``; with ``target`` a plan for another file is refused.
    """
    started = time.monotonic()
    _check_mode(mode)
    plan, checked = _commit_batches(staging, batches, manifest_sha256)
    staging = plan.staging
    stage = JobSpec(target="", staging=staging, storage_options=storage_options or {},
                    staging_options=staging_options or {}).open_staging()
    manifest = _load_manifest(stage, plan.job_id, plan.manifest_sha256)
    if target is not None:
        check_same_target(manifest.target, target, storage_options)
    spec = JobSpec(target=manifest.target, staging=staging,
                   storage_options=storage_options or {}, staging_options=staging_options or {})
    goal = open_target(manifest.target, storage_options)
    goal.check(write=True)
    if mode == "rewrite" and goal.local:
        refuse_linked_rewrite(goal.path, manifest.target, break_hardlinks)
    results = _read_results(stage, manifest, plan, checked)
    with goal.session(wait=wait, job=manifest.job_id, keep=staging):
        exe = make_executor("thread", None)
        try:
            # A source changed since planning is that, not the checksum errors of workers
            # who read it after the change.
            check_identity(manifest.identity, goal.identity(), manifest.target)
            result = _commit(goal, manifest, spec, results, mode, dry_run=False,
                             started=started, exe=exe,
                             options={"writer": writer, "break_hardlinks": break_hardlinks})
        finally:
            exe.close()
            _clean_job(goal, spec, manifest.job_id, True)
        return result


def _list_results(stage: Staging) -> list[str]:
    try:
        return [name for name in (p.rsplit("/", 1)[1] for p in
                                  stage.fs.ls(stage.path(RESULTS), detail=False))
                if RESULT_NAME.fullmatch(name)]
    except FileNotFoundError:
        return []


@translated
def recover_target(url: str, *, storage_options: dict[str, Any] | None = None,
                   wait: float = 0.0) -> RecoveryResult:
    """Bring a target back to a consistent state after a crash (roll back an unfinished
    in-place commit, remove stale staging); a clean target is left alone."""
    target = open_target(url, storage_options)
    target.check(write=False)
    with TargetLock(target.path, wait=wait, job="recover") if target.local \
            else contextlib.nullcontext():
        return target.recover()


__all__ = ["EditResult", "PlannedEdit", "commit_edit", "edit_file", "patch_batch",
           "plan_edit", "recover_target"]
