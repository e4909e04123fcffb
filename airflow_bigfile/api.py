"""The Python front end.

``edit_file`` runs the whole pipeline on one target in this process. For fleets of workers
the same pipeline comes in three steps, each callable on a different machine:
:func:`plan_edit` (manifest + shard batches), :func:`patch_batch` (one batch, idempotent)
and :func:`commit_edit` (verify + atomic commit). Each is a few calls of
:mod:`airflow_bigfile.pipeline`.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from airflow_bigfile.commit.recover import RecoveryResult
from airflow_bigfile.commit.results import (
    batch_name,
    check_range,
    commit_batches,
    load_manifest,
    read_results,
)
from airflow_bigfile.commit.verify import check_identity
from airflow_bigfile.edits import check_offsets, coerce_edits
from airflow_bigfile.exceptions import EditError, RegexTimeoutError, SourceChangedError
from airflow_bigfile.io.errors import is_transient, translated
from airflow_bigfile.io.trust import check_batch, check_same_target
from airflow_bigfile.patch.patcher import ShardResult
from airflow_bigfile.payload import refuse_the_target_as_data
from airflow_bigfile.pipeline import (
    Job,
    job_url,
    offsets_result,
    rewrite_certain,
    staging_parent,
    unchanged,
)
from airflow_bigfile.plan.batching import MAX_BATCHES, batch_count, check_batching
from airflow_bigfile.plan.manifest import Manifest, new_job_id
from airflow_bigfile.results import EditResult, PlannedEdit
from airflow_bigfile.run.executors import (
    Executor,
    check_executor,
    make_executor,
    regex_labels,
)
from airflow_bigfile.run.tasks import JobSpec, patch_shards
from airflow_bigfile.settings import MIN_SPREAD_SHARD, Settings
from airflow_bigfile.targets.registry import open_target, target_url

if TYPE_CHECKING:
    from fsspec.callbacks import Callback


@translated
def edit_file(url: str | os.PathLike[str], edits: Any, *,
              storage_options: dict[str, Any] | None = None,
              shard_size: int | str | None = None, workers: int | None = None,
              executor: str | Executor | None = "thread", dry_run: bool = False,
              mode: str = "auto", staging: str | None = None,
              delimiter: bytes | str | None = None, align: int | None = None,
              progress: Callback | None = None, wait: float = 0.0,
              scheduler: str | None = None, client: Any = None,
              block_size: int | str | None = None, writer: str = "pwrite",
              stop: threading.Event | None = None,
              break_hardlinks: bool = False, verify: str = "fast",
              regex_timeout: float | None = None) -> EditResult:
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
    verify : ``"fast"`` (default): every byte is read once and written once; CRC32Cs are
        taken as the bytes stream and the source's identity (size, mtime, ctime, inode,
        device) is checked under the lock before the commit. ``"full"`` also reads the
        source again and the bytes workers wrote into the new file, and checks them against
        those CRC32Cs: up to two more reads of the file.
    regex_timeout : seconds (default None: no bound) that Python's ``re`` may spend
        scanning one block (``block_size``) for one regex replace; past it the edit stops
        with :class:`RegexTimeoutError` naming the pattern, the file unchanged. With a
        timeout, a regex job runs in worker processes, so that it can be stopped; RE2's
        own (linear) work is not timed, the ``re`` scans it leaves are.

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
    url = target_url(url)
    edit_list = coerce_edits(edits)
    settings = Settings.parse(shard_size=shard_size, align=align, block_size=block_size,
                              delimiter=delimiter, mode=mode, writer=writer, wait=wait,
                              break_hardlinks=break_hardlinks, verify=verify,
                              regex_timeout=regex_timeout)
    if not isinstance(dry_run, bool):
        raise EditError(f"dry_run must be true or false, not {dry_run!r}")
    if executor is None or isinstance(executor, str):
        check_executor(executor, workers, timed=settings.regex_timeout is not None
                       and bool(regex_labels(edit_list)))
    target = open_target(url, storage_options)
    target.check(write=not dry_run and bool(edit_list), mode=mode if edit_list else "auto",
                 break_hardlinks=break_hardlinks)
    if target.local:
        refuse_the_target_as_data(edit_list, target.path)
    job_id = new_job_id()
    local_workers = executor in (None, "thread", "process")
    parent = staging_parent(target, staging, local_workers)
    if not edit_list:  # a computed edit list may be empty: nothing to do, nothing touched
        return unchanged(target, job_id, dry_run, started)
    dask = {k: v for k, v in (("scheduler", scheduler), ("client", client)) if v}
    with target.session(wait=wait, job=job_id, dry_run=dry_run):
        if local_workers:
            identity = target.identity()
            outcome = target.commit_offsets(check_offsets(edit_list, identity.size, url),
                                            identity, mode, dry_run=dry_run, writer=writer)
            if outcome is not None:
                return offsets_result(url, job_id, identity.size, outcome, dry_run, started)
        spec = JobSpec(target=url, staging=job_url(parent, job_id),
                       storage_options=storage_options or {}, dry_run=dry_run,
                       checksums=settings.verify == "full")
        size = target.identity().size
        exe = make_executor(executor, workers, stop, edits=edit_list,
                            regex_timeout=settings.regex_timeout,
                            small=size <= MIN_SPREAD_SHARD, **dask)
        spread = {"size": size, "workers": exe.workers} if target.local else {}
        job = Job(target, spec, settings.for_target(target.default_shard_size, **spread), exe,
                  job_id, started)
        made = False
        try:
            if not dry_run:
                job.make_folder(distributed=False)
                made = True
            # Workers on this machine take the source CRCs as they read (see Job.plan).
            # A local file's shards go in small batches taken in file order, so the commit
            # copies unchanged bytes right behind the workers' scan, while still cached.
            planned = job.plan(edit_list, in_file_order(exe.workers) if target.local
                               else exe.workers * 4,
                               direct=local_workers,
                               checksum=not target.local)
            incoming = job.patch(planned, progress)
            if not dry_run and mode != "inplace" and rewrite_certain(planned.manifest):
                streamed = job.stream_commit(planned.manifest, incoming)
                if streamed is not None:
                    return streamed
            return job.commit(planned.manifest, incoming.all(), dry_run=dry_run)
        finally:
            exe.close()
            job.clean(made)


def in_file_order(workers: int) -> Callable[[int, int], int]:
    """How many batches workers on this machine get: one per shard up to 32 per worker
    (each batch is a pickled call for a process pool), taken in file order."""
    return lambda size, shards: min(shards, 32 * workers)


@translated
def plan_edit(url: str | os.PathLike[str], edits: Any, *, staging: str | None = None,
              storage_options: dict[str, Any] | None = None,
              staging_options: dict[str, Any] | None = None,
              shard_size: int | str | None = None, align: int | None = None,
              delimiter: bytes | str | None = None, block_size: int | str | None = None,
              max_batches: int | None = None, batch_bytes: int | str | None = None,
              batch_limit: int = MAX_BATCHES, workers: int | None = None, wait: float = 0.0,
              verify: str = "fast", regex_timeout: float | None = None) -> PlannedEdit:
    """Plan an edit for workers elsewhere: write the manifest to ``staging`` and return the
    batches of contiguous shards (small dicts, one per mapped task).

    How many: enough that each gets about ``batch_bytes`` to patch (default
    :data:`~airflow_bigfile.plan.batching.DEFAULT_BATCH_BYTES`, which outweighs a mapped task's
    start-up), at most ``max_batches`` (given alone: that many), never more than
    ``batch_limit`` and at least one; see :mod:`airflow_bigfile.plan.batching`.

    The target is recovered and locked while planning, not between the steps; the commit
    refuses if the target changed in between. ``verify="fast"`` (default) reads no shard
    here: the workers take the CRC32Cs as they read, after checking the target's identity
    (ETag on object stores), so each source byte is fetched once; ``"full"`` takes them
    here first, a whole extra read, which the workers then check. ``regex_timeout`` (see
    :func:`edit_file`) goes into the manifest: each :func:`patch_batch` then scans regexes
    in a worker process it stops at the timeout.
    """
    url = target_url(url)
    edit_list = coerce_edits(edits)
    settings = Settings.parse(shard_size=shard_size, align=align, block_size=block_size,
                              delimiter=delimiter, wait=wait, verify=verify,
                              regex_timeout=regex_timeout)
    check_batching(max_batches, batch_bytes, batch_limit)
    target = open_target(url, storage_options)
    target.check(write=True)
    if target.local:
        refuse_the_target_as_data(edit_list, target.path)
    job_id = new_job_id()
    stage_url = job_url(staging_parent(target, staging, local_workers=False), job_id)
    spec = JobSpec(target=url, staging=stage_url, storage_options=storage_options or {},
                   staging_options=staging_options or {})
    with target.session(wait=wait, job=job_id):
        exe = make_executor("thread", workers)
        job = Job(target, spec, settings.for_target(target.default_shard_size), exe, job_id,
                  time.monotonic())
        job.make_folder(distributed=True)
        try:
            planned = job.plan(edit_list, functools.partial(
                batch_count, max_batches=max_batches, batch_bytes=batch_bytes,
                ceiling=batch_limit), checksum=verify == "full")
        except BaseException:
            job.clean(True)
            raise
        finally:
            exe.close()
    # Edits that read no shard (appends, growing truncates) still get one (empty) batch, so
    # a mapped patch step runs once and the commit after it is not skipped.
    ranges = [(batch[0].index, batch[-1].index) for batch in planned.batches] or [(0, -1)]
    assert planned.digest is not None
    return PlannedEdit(
        target=url, staging=stage_url, job_id=job_id, shards=len(planned.manifest.shards),
        manifest_sha256=planned.digest,
        batches=[{"staging": stage_url, "job_id": job_id, "first": first, "last": last,
                  "manifest_sha256": planned.digest} for first, last in ranges])


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
    manifest = load_manifest(stage, checked.job_id, checked.manifest_sha256)
    check_range(manifest, checked)
    spec = JobSpec(target=manifest.target, staging=checked.staging,
                   storage_options=storage_options or {}, staging_options=staging_options or {})
    indices = [i for i in range(checked.first, checked.last + 1) if manifest.shards[i].patch]
    try:
        # A target changed since planning fails the batch before any byte is read (or as
        # its file is opened, if it changed just then); the error is its result, so the
        # commit refuses (and removes the staging).
        check_identity(manifest.identity,
                       open_target(manifest.target, storage_options).identity(),
                       manifest.target)
        results = _patch_timed(spec, indices, manifest)
    except SourceChangedError as exc:
        results = [ShardResult.failed(
            i, [manifest.shards[i].offset] * len(manifest.layout.replaces), exc)
            for i in indices[:1]]
    stage.write_json(batch_name(checked.first), [r.to_json() for r in results])
    return {"staging": checked.staging, "job_id": manifest.job_id, "first": checked.first,
            "last": checked.last, "manifest_sha256": checked.manifest_sha256,
            "matches": sum(sum(r.matches) for r in results),
            "changed": sum(1 for r in results if r.changed),
            "errors": [r.error for r in results if r.error]}


def _patch_timed(spec: JobSpec, indices: list[int], manifest: Manifest) -> list[ShardResult]:
    """:func:`patch_shards` here, or in a worker process when a regex must keep the
    manifest's ``regex_timeout``; a timeout is the batch's result, as a worker error is
    (the commit reports it and removes the staging)."""
    exe = make_executor("thread", 1, edits=manifest.edits,
                        regex_timeout=manifest.regex_timeout)
    try:
        return next(exe.run(patch_shards, [(spec, indices, None, manifest)]))
    except RegexTimeoutError as exc:
        return [ShardResult.failed(
            indices[0], [manifest.shards[indices[0]].offset] * len(manifest.layout.replaces),
            exc)]
    finally:
        exe.close()


@translated
def commit_edit(staging: str, *, target: str | None = None,
                batches: Iterable[dict[str, Any]] | None = None,
                manifest_sha256: str | None = None,
                storage_options: dict[str, Any] | None = None,
                staging_options: dict[str, Any] | None = None,
                mode: str = "auto", wait: float = 0.0, writer: str = "pwrite",
                break_hardlinks: bool = False, verify: str = "fast") -> EditResult:
    """Verify every staged shard of a planned edit and commit it atomically. A missing or
    corrupt shard fails here, target untouched. ``break_hardlinks`` and ``verify`` as for
    :func:`edit_file`.

    The job's staging folder is removed afterwards, unless the commit failed for a
    transient reason (:class:`~airflow_bigfile.TransientStorageError`: the store stopped
    answering): then the target is unchanged and the staging is kept, so that running the
    commit again (Airflow's retry of the commit task) finishes the edit.

    Nothing in the staging folder is trusted: the manifest must have the SHA-256 the plan
    returned, from ``batches`` (the plan's batches or the patch summaries) or
    ``manifest_sha256``; with ``target`` a plan for another file is refused.
    """
    started = time.monotonic()
    settings = Settings.parse(mode=mode, writer=writer, wait=wait,
                              break_hardlinks=break_hardlinks, verify=verify)
    plan, checked = commit_batches(staging, batches, manifest_sha256)
    staging = plan.staging
    stage = JobSpec(target="", staging=staging, storage_options=storage_options or {},
                    staging_options=staging_options or {}).open_staging()
    manifest = load_manifest(stage, plan.job_id, plan.manifest_sha256)
    if target is not None:
        check_same_target(manifest.target, target, storage_options)
    spec = JobSpec(target=manifest.target, staging=staging,
                   storage_options=storage_options or {}, staging_options=staging_options or {})
    goal = open_target(manifest.target, storage_options)
    goal.check(write=True, mode=mode, break_hardlinks=break_hardlinks)
    results = read_results(stage, manifest, plan, checked)
    with goal.session(wait=wait, job=manifest.job_id, keep=staging):
        # it re-patches any shard whose worker guessed its scan state wrongly
        exe = make_executor("thread", None, edits=manifest.edits,
                            regex_timeout=manifest.regex_timeout)
        job = Job(goal, spec, settings, exe, manifest.job_id, started)
        resumable = False
        try:
            # A source changed since planning is that, not the checksum errors of workers
            # who read it after the change.
            check_identity(manifest.identity, goal.identity(), manifest.target)
            return job.commit(manifest, results, dry_run=False)
        except Exception as exc:
            resumable = is_transient(exc)
            raise
        finally:
            exe.close()
            job.clean(not resumable)


@translated
def recover_target(url: str | os.PathLike[str], *,
                   storage_options: dict[str, Any] | None = None,
                   wait: float = 0.0) -> RecoveryResult:
    """Bring a target back to a consistent state after a crash (roll back an unfinished
    in-place commit, remove stale staging); a clean target is left alone."""
    target = open_target(url, storage_options)
    target.check(write=False)
    with target.locked(wait=wait, job="recover"):
        return target.recover()


__all__ = ["EditResult", "PlannedEdit", "commit_edit", "edit_file", "patch_batch",
           "plan_edit", "recover_target"]
