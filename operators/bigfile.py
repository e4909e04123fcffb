"""Operators that run the bigfile engine from Airflow: one task, or plan -> mapped patch ->
commit across a fleet of workers.

The operators only translate Airflow's world (templated arguments, connections, XCom,
retries) into engine calls: :func:`~airflow_bigfile.api.edit_file` for the one-task edit;
:func:`~airflow_bigfile.api.plan_edit`, :func:`~airflow_bigfile.api.patch_batch` and
:func:`~airflow_bigfile.api.commit_edit` for the fleet.

What is retried, and by whom (the policy itself is :mod:`airflow_bigfile.io.errors`):

1. The engine retries each call to a remote store that fails transiently (a lost
   connection, a timeout, throttling, HTTP 408/429/5xx): 5 attempts with exponential
   backoff and jitter (tenacity).
2. A transient failure that outlives those retries leaves the engine as
   :class:`~airflow_bigfile.TransientStorageError`, and a lock held by another job as
   :class:`~airflow_bigfile.TargetLockedError`; the operators let both propagate, so
   Airflow retries the task as its ``retries`` and ``retry_delay`` say. That is safe:
   planning starts a new job, patching a batch overwrites its own staged shards, and a
   failed commit changed nothing and kept its staging for the retry.
3. Every other :class:`~airflow_bigfile.BigFileError` (bad edits, EIO, ENOSPC, permission
   denied, a changed source, a corrupt shard) is permanent: the task fails at once with
   ``AirflowFailException``, without retries.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator, TaskGroup, conf
from airflow.sdk.exceptions import AirflowException, AirflowFailException
from airflow_bigfile.hooks.bigfile import BigFileHook
from airflow_bigfile.operators.assets import lineage, record_edit, with_edited_files

from airflow_bigfile.cancel import Cancelled
from airflow_bigfile.exceptions import BigFileError, TargetLockedError, TransientStorageError

if TYPE_CHECKING:
    from airflow.sdk import Context

#: executors whose workers may run on other machines (matched in ``core.executor``)
DISTRIBUTED_EXECUTORS = ("Celery", "Kubernetes", "Edge", "Ecs", "Batch", "Lambda", "Dask")
DEFAULT_MAX_MAP_LENGTH = 1024


# ---------------------------------------------------------------- helpers


@contextlib.contextmanager
def _engine_errors(what: str) -> Iterator[None]:
    """Turn permanent engine errors into ``AirflowFailException`` (no retry); transient
    ones and a held lock propagate for Airflow's retries."""
    try:
        yield
    except (TargetLockedError, TransientStorageError):
        raise  # another job holds the target, or the store was unreachable: retry later
    except BigFileError as exc:
        raise AirflowFailException(f"{what} failed: {exc}") from exc
    except Cancelled as exc:  # on_kill stopped the engine; a retry may run it again
        raise AirflowException(f"{what}: the task was killed; nothing was changed") from exc


def _parse_edits(edits: Any) -> list[Any]:
    """The edit list, from a list of dicts/edit objects or (after templating) JSON text."""
    if isinstance(edits, (str, bytes)):
        try:
            edits = json.loads(edits)
        except ValueError as exc:
            raise AirflowFailException(f"edits is not valid JSON: {exc}") from exc
    if isinstance(edits, Mapping):
        edits = [edits]
    if not isinstance(edits, Sequence) or isinstance(edits, (str, bytes)) or not edits:
        raise AirflowFailException(
            f"edits must be a non-empty list of edits (dicts with 'op'), not {edits!r:.200}")
    from airflow_bigfile.edits import coerce_edits

    with _engine_errors("checking the edits"):
        return list(coerce_edits(list(edits)))


def _is_local(url: str) -> bool:
    from fsspec.core import split_protocol

    protocol, _ = split_protocol(url.rsplit("::", 1)[-1])
    return protocol in (None, "file", "local")


def _executors() -> list[str]:
    raw = conf.get("core", "executor", fallback="LocalExecutor") or "LocalExecutor"
    names = []
    for item in str(raw).split(","):
        item = item.strip()
        if item:
            names.append(item.split(":")[-1].rsplit(".", 1)[-1])
    return names


def _distributed_executor() -> str | None:
    """The configured executor that can run tasks on other machines, if any."""
    for name in _executors():
        if any(word.lower() in name.lower() for word in DISTRIBUTED_EXECUTORS):
            return name
    return None


def _max_map_length() -> int:
    try:
        return conf.getint("core", "max_map_length", fallback=DEFAULT_MAX_MAP_LENGTH)
    except (ValueError, TypeError):
        return DEFAULT_MAX_MAP_LENGTH


def _as_dict(value: Any, what: str) -> dict[str, Any]:
    if isinstance(value, (str, bytes)):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise AirflowFailException(f"{what} is not valid JSON: {exc}") from exc
    if not isinstance(value, Mapping):
        raise AirflowFailException(f"{what} must be a dict from BigFilePlanOperator, "
                                   f"not {value!r:.200}")
    return dict(value)


def _kill_switch(log: Any, interval: float) -> Any:
    """A progress callback that logs progress every ``interval`` seconds, and whose
    ``killed`` event, also the engine's ``stop``, is set by ``on_kill``: workers stop, the
    next progress report raises, the engine removes its staging."""
    from airflow_bigfile.cli.progress import ProgressLog

    class KillSwitch(ProgressLog):
        def __init__(self) -> None:
            super().__init__(log, interval=interval)
            self.killed = threading.Event()

        def call(self, *args: Any, **kwargs: Any) -> None:
            if self.killed.is_set():
                raise AirflowException("the task was killed; pending shards were cancelled")
            super().call(*args, **kwargs)

    return KillSwitch()


class _BigFileOperator(BaseOperator):
    """What every bigfile operator shares: the connection and the hook."""

    ui_color = "#e8f1fb"
    #: the file this task changed, for lineage (set by the edit and commit operators)
    _edited: str | None = None

    def __init__(self, *, conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.conn_id = conn_id

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """The file this task changed as both the input and the output dataset (none for
        the plan and patch tasks, which change no file)."""
        return lineage(self._edited)

    @cached_property
    def hook(self) -> BigFileHook:
        return BigFileHook(conn_id=self.conn_id)

    def render_template(self, content: Any, context: Any, jinja_env: Any = None,
                        seen_oids: set[int] | None = None) -> Any:
        """Render as Airflow does, but keep a string's trailing newline: Jinja drops it
        unless the DAG sets ``keep_trailing_newline``, and appended rows need it."""
        rendered = super().render_template(content, context, jinja_env, seen_oids)
        if isinstance(content, str) and isinstance(rendered, str) \
                and content.endswith(("\n", "\r")):
            env = jinja_env if jinja_env is not None else self.get_template_env()
            if not getattr(env, "keep_trailing_newline", False):
                rendered += "\r\n" if content.endswith("\r\n") else content[-1]
        return rendered

    def _options(self, url: str | None) -> dict[str, Any]:
        try:
            return self.hook.storage_options(url)
        except ValueError as exc:
            raise AirflowFailException(str(exc)) from exc


# ---------------------------------------------------------------- one task


class BigFileEditOperator(_BigFileOperator):
    """Apply an edit list to one file in this task, with the engine's own thread pool.

    Returns the result figures (``size_before``, ``size_after``, ``matches``, ``shards``,
    ``shards_changed``, ``bytes_written``, ``commit_mode``, ...) as XCom. A store that stops
    answering is retried by the engine, then raised as ``TransientStorageError`` for
    Airflow's retries; a permanent error fails the task at once (see the module docstring).

    :param path: local path or fsspec URL of the file to edit. (templated)
    :param edits: list of edit dicts (``{"op": "replace", "find": ..., "replace": ...}``) or
        their JSON text. (templated)
    :param staging: where shards are staged (default: a hidden folder beside the target).
        (templated)
    :param conn_id: Airflow connection for the file's store (``None``: default credentials).
    :param shard_size: bytes per shard, int or ``"64MiB"``.
    :param workers: threads (default: the CPU count).
    :param mode: ``auto``, ``inplace`` or ``rewrite``.
    :param delimiter: align shard boundaries to records ending with this.
    :param dry_run: compute the figures, change nothing.
    :param wait: seconds to wait for another job's lock on the target.
    :param break_hardlinks: allow a rewrite of a file with other hard links (they keep the
        old bytes); without it such a file is edited in place or the task fails.
    :param verify: ``fast`` (each byte read once and written once, the file's identity
        checked before the commit) or ``full`` (also reads the source and the new bytes
        again); see :func:`~airflow_bigfile.edit_file`.
    :param regex_timeout: seconds Python's ``re`` may spend scanning one block for one
        regex replace (default ``None``: no bound); past it the task fails, the file
        unchanged. See :func:`~airflow_bigfile.edit_file`.
    :param progress_interval: seconds between progress lines in the task log (bytes and
        shards done, rate, time left).

    The edited file is reported as an Asset (through the outlet alias
    :data:`~airflow_bigfile.operators.assets.EDITED_FILES`) and, with the OpenLineage
    provider, as the input and output dataset.
    """

    template_fields: Sequence[str] = ("path", "edits", "staging")
    template_fields_renderers = {"edits": "json"}

    def __init__(self, *, path: str, edits: Any, staging: str | None = None,
                 conn_id: str | None = None, shard_size: int | str | None = None,
                 workers: int | None = None, mode: str = "auto",
                 delimiter: str | bytes | None = None, dry_run: bool = False,
                 wait: float = 0.0, break_hardlinks: bool = False, verify: str = "fast",
                 regex_timeout: float | None = None, progress_interval: float = 30.0,
                 **kwargs: Any) -> None:
        kwargs["outlets"] = with_edited_files(kwargs.get("outlets"))
        super().__init__(conn_id=conn_id, **kwargs)
        self.path = path
        self.edits = edits
        self.staging = staging
        self.shard_size = shard_size
        self.workers = workers
        self.mode = mode
        self.delimiter = delimiter
        self.dry_run = dry_run
        self.wait = wait
        self.break_hardlinks = break_hardlinks
        self.verify = verify
        self.regex_timeout = regex_timeout
        self.progress_interval = progress_interval

    @cached_property
    def _kill_switch(self) -> Any:
        return _kill_switch(self.log, self.progress_interval)

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_bigfile.api import edit_file

        edits = _parse_edits(self.edits)
        url = self.hook.resolve_url(self.path)
        self.log.info("Editing %s with %d edit(s)%s", url, len(edits),
                      " (dry run)" if self.dry_run else "")
        with _engine_errors(f"editing {url}"):
            result = edit_file(url, edits, storage_options=self._options(url),
                               shard_size=self.shard_size, workers=self.workers,
                               mode=self.mode, staging=self.staging or None,
                               delimiter=self.delimiter, dry_run=self.dry_run,
                               wait=self.wait, progress=self._kill_switch,
                               stop=self._kill_switch.killed,
                               break_hardlinks=self.break_hardlinks, verify=self.verify,
                               regex_timeout=self.regex_timeout)
        figures = result.to_dict()
        self.log.info("Edited %s: %s", url, figures)
        self._edited = url
        record_edit(context, url, figures)
        return figures

    def on_kill(self) -> None:
        # Stops the engine's workers (threads within a block, processes at once) and makes
        # the waiting engine raise, so its cleanup runs even if no exception reaches it.
        self._kill_switch.killed.set()


# ---------------------------------------------------------------- plan / patch / commit


class BigFilePlanOperator(_BigFileOperator):
    """Plan an edit for a fleet of mapped tasks: check the edits against the file, write the
    manifest to ``staging`` and return the shard batches (small dicts, at most
    ``core.max_map_length`` of them) for ``BigFilePatchShardsOperator.expand(batch=...)``.

    :param path: local path or fsspec URL of the file to edit. (templated)
    :param edits: list of edit dicts or their JSON text. (templated)
    :param staging: folder or URL every worker can reach (an object store, or a shared
        mount with ``shared_staging=True``). (templated)
    :param conn_id: Airflow connection for the file's (and staging's) store.
    :param shard_size: bytes per shard, int or ``"64MiB"``.
    :param max_batches: at most this many batches (mapped tasks); given alone, exactly that
        many (fewer only if there are fewer shards to patch).
    :param batch_bytes: bytes of shards each batch gets at least, int or ``"256MiB"``
        (default :data:`~airflow_bigfile.plan.batching.DEFAULT_BATCH_BYTES`, 256 MiB).
    :param delimiter: align shard boundaries to records ending with this.
    :param align: shard boundaries are multiples of this.

    How many batches: shards are grouped into contiguous batches of about ``batch_bytes``
    each, because every mapped task pays a start-up (a new process, the DAG file parsed
    again, the task API calls) that small batches would not outweigh;
    at most ``max_batches``, never more than ``core.max_map_length``, at least one. An 8 MB
    file in 4 KiB shards is one batch; 10 GB is 38.
    :param shared_staging: the local ``staging`` path is a mount every worker shares, so it
        is allowed under a distributed executor.
    :param wait: seconds to wait for another job's lock on the target.
    :param verify: ``fast`` (the workers take the CRC32Cs as they read: each source byte is
        fetched once) or ``full`` (also read here first); see ``BigFileEditOperator``.
    :param regex_timeout: seconds Python's ``re`` may spend scanning one block for one
        regex replace in a patch task (default ``None``: no bound); past it the commit
        fails, the file unchanged. It travels in the manifest.
    """

    template_fields: Sequence[str] = ("path", "edits", "staging")
    template_fields_renderers = {"edits": "json"}

    def __init__(self, *, path: str, edits: Any, staging: str | None = None,
                 conn_id: str | None = None, shard_size: int | str | None = None,
                 max_batches: int | None = None, batch_bytes: int | str | None = None,
                 delimiter: str | bytes | None = None, align: int | None = None,
                 shared_staging: bool = False, wait: float = 0.0, verify: str = "fast",
                 regex_timeout: float | None = None, **kwargs: Any) -> None:
        super().__init__(conn_id=conn_id, **kwargs)
        self.path = path
        self.edits = edits
        self.staging = staging
        self.shard_size = shard_size
        self.max_batches = max_batches
        self.batch_bytes = batch_bytes
        self.delimiter = delimiter
        self.align = align
        self.shared_staging = shared_staging
        self.wait = wait
        self.verify = verify
        self.regex_timeout = regex_timeout

    def _check_staging(self, url: str) -> None:
        staging = self.staging or url
        if self.shared_staging or not _is_local(staging):
            return
        executor = _distributed_executor()
        if executor is not None:
            raise AirflowException(
                f"staging {staging!r} is a local path, but the executor {executor} runs "
                f"mapped tasks on other machines that cannot read it; set staging= to an "
                f"object store URL (s3://bucket/prefix) or, if every worker mounts that "
                f"path, pass shared_staging=True")

    def _batch_limit(self) -> int:
        ceiling = _max_map_length()
        if isinstance(self.max_batches, int) and not isinstance(self.max_batches, bool) \
                and self.max_batches > ceiling:
            self.log.warning("max_batches=%d is above core.max_map_length=%d; using %d",
                             self.max_batches, ceiling, ceiling)
        return ceiling

    def execute(self, context: Context) -> list[dict[str, Any]]:
        from airflow_bigfile.api import plan_edit

        edits = _parse_edits(self.edits)
        url = self.hook.resolve_url(self.path)
        self._check_staging(url)
        limit = self._batch_limit()
        staging_options = self._options(self.staging) if self.staging else None
        with _engine_errors(f"planning the edit of {url}"):
            planned = plan_edit(url, edits, staging=self.staging or None,
                                storage_options=self._options(url),
                                staging_options=staging_options,
                                shard_size=self.shard_size, align=self.align,
                                delimiter=self.delimiter, max_batches=self.max_batches,
                                batch_bytes=self.batch_bytes, batch_limit=limit,
                                wait=self.wait, verify=self.verify,
                                regex_timeout=self.regex_timeout)
        batches = [dict(b) for b in planned.batches]
        if len(batches) > limit:  # the engine promised not to; never hand Airflow more
            raise AirflowFailException(f"the plan has {len(batches)} batches, more than "
                                       f"core.max_map_length={limit}")
        self.log.info("Planned %s: %d shards in %d batches, staging %s", url, planned.shards,
                      len(batches), planned.staging)
        return batches


class BigFilePatchShardsOperator(_BigFileOperator):
    """Patch one batch of shards from ``BigFilePlanOperator`` and stage the result; meant to
    be mapped: ``BigFilePatchShardsOperator.partial(task_id="patch").expand(batch=plan.output)``.

    Idempotent: a retry overwrites its own staged shards, so a ``TransientStorageError``
    (the store stopped answering after the engine's retries) is left to Airflow's retries;
    a permanent error fails the task at once. Returns a small summary (staging, shard
    range, matches, shards changed) for the commit.

    :param batch: one item of the plan's output.
    :param conn_id: Airflow connection for the file's store.
    """

    template_fields: Sequence[str] = ("batch",)

    def __init__(self, *, batch: Any = None, conn_id: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(conn_id=conn_id, **kwargs)
        self.batch = batch

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_bigfile.api import patch_batch

        batch = _as_dict(self.batch, "batch")
        for key in ("staging", "first", "last"):
            if key not in batch:
                raise AirflowFailException(f"batch has no {key!r}: {batch!r:.200}")
        first, last = int(batch["first"]), int(batch["last"])
        if last < first:
            self.log.info("Nothing to patch in job %s (no shard changes)", batch.get("job_id"))
            return {"staging": batch["staging"], "job_id": batch.get("job_id"),
                    "manifest_sha256": batch.get("manifest_sha256"),
                    "first": first, "last": last, "matches": 0, "changed": 0, "errors": []}
        with _engine_errors(f"patching shards {first}-{last}"):
            summary = patch_batch(batch, storage_options=self._options(None),
                                  staging_options=self._options(batch["staging"]))
        self.log.info("Patched shards %d-%d: %d matches, %d shards changed", first, last,
                      summary.get("matches", 0), summary.get("changed", 0))
        return summary

    def on_kill(self) -> None:
        # One batch runs in this thread; the staged shard it was writing is overwritten by
        # the retry, and the commit verifies every shard, so there is nothing to undo.
        self.log.info("Killed while patching; the retry overwrites this batch's shards")


class BigFileCommitOperator(_BigFileOperator):
    """Verify every staged shard of a planned edit and commit it atomically; any missing or
    corrupt shard, or a source that changed since the plan, fails the task (no retry) and
    leaves the target untouched. A store that stops answering raises
    ``TransientStorageError`` with the target untouched and the staging kept, so Airflow's
    retry of this task commits. Returns the same figures as ``BigFileEditOperator``.

    :param results: the mapped patch task's output (``patch.output``): one summary per batch,
        each naming the staging and carrying the manifest's SHA-256.
    :param path: the file the plan must be for (a plan of another file is refused).
        (templated)
    :param conn_id: Airflow connection for the file's store.
    :param mode: ``auto``, ``inplace`` or ``rewrite``.
    :param wait: seconds to wait for another job's lock on the target.
    :param break_hardlinks: allow a rewrite of a file with other hard links (see
        ``BigFileEditOperator``).
    :param verify: ``fast`` or ``full`` (see ``BigFileEditOperator``).

    The committed file is reported as an Asset and an OpenLineage dataset, as
    ``BigFileEditOperator`` does.
    """

    template_fields: Sequence[str] = ("results", "path")

    def __init__(self, *, results: Any, path: str | None = None, conn_id: str | None = None,
                 mode: str = "auto", wait: float = 0.0, break_hardlinks: bool = False,
                 verify: str = "fast", **kwargs: Any) -> None:
        kwargs["outlets"] = with_edited_files(kwargs.get("outlets"))
        super().__init__(conn_id=conn_id, **kwargs)
        self.results = results
        self.path = path
        self.mode = mode
        self.wait = wait
        self.break_hardlinks = break_hardlinks
        self.verify = verify

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_bigfile.api import commit_edit

        raw = self.results
        if isinstance(raw, (str, bytes)):
            raw = json.loads(raw)
        if isinstance(raw, Mapping):
            raw = [raw]
        summaries = [_as_dict(r, "a patch result") for r in (raw or [])]
        if not summaries:
            raise AirflowFailException("no patch results to commit; results= must be the "
                                       "mapped patch task's output (patch.output)")
        stagings = {s.get("staging") for s in summaries}
        if len(stagings) != 1 or None in stagings:
            raise AirflowFailException(f"the patch results name {len(stagings)} stagings; "
                                       f"one commit takes the results of one plan")
        staging = stagings.pop()
        target = self.hook.resolve_url(self.path) if self.path else None
        self.log.info("Verifying and committing %d batches from %s", len(summaries), staging)
        with _engine_errors(f"committing {staging}"):
            result = commit_edit(staging, target=target, storage_options=self._options(None),
                                 mode=self.mode, wait=self.wait, batches=summaries,
                                 staging_options=self._options(staging),
                                 break_hardlinks=self.break_hardlinks, verify=self.verify)
        figures = result.to_dict()
        self.log.info("Committed %s: %s", figures.get("target"), figures)
        self._edited = figures.get("target")
        record_edit(context, figures["target"], figures)
        return figures

    def on_kill(self) -> None:
        # The commit is crash-safe (journal or atomic rename); the next edit's recovery
        # finishes what a killed commit left behind.
        self.log.warning("Killed while committing; the target is recovered on its next edit")


def bigfile_edit_group(group_id: str, *, path: str, edits: Any, staging: str | None = None,
                       shard_size: int | str | None = None, conn_id: str | None = None,
                       max_batches: int | None = None, batch_bytes: int | str | None = None,
                       mode: str = "auto",
                       delimiter: str | bytes | None = None, align: int | None = None,
                       shared_staging: bool = False, patch_kwargs: dict[str, Any] | None = None,
                       break_hardlinks: bool = False, verify: str = "fast",
                       regex_timeout: float | None = None,
                       **group_kwargs: Any) -> TaskGroup:
    """Build plan -> mapped patch -> commit as one ``TaskGroup`` named ``group_id``.

    ``patch_kwargs`` go to the mapped patch task's ``partial()`` (``retries``, ``pool``,
    ``queue``, ``max_active_tis_per_dagrun``...); ``group_kwargs`` to the ``TaskGroup``.
    Use the group like a task: ``extract >> bigfile_edit_group(...) >> load``.
    """
    group_kwargs.setdefault("tooltip", f"bigfile edit of {path}")
    with TaskGroup(group_id=group_id, **group_kwargs) as group:
        plan = BigFilePlanOperator(task_id="plan", path=path, edits=edits, staging=staging,
                                   shard_size=shard_size, conn_id=conn_id,
                                   max_batches=max_batches, batch_bytes=batch_bytes,
                                   delimiter=delimiter, align=align,
                                   shared_staging=shared_staging, verify=verify,
                                   regex_timeout=regex_timeout)
        patch = BigFilePatchShardsOperator.partial(
            task_id="patch", conn_id=conn_id, **(patch_kwargs or {})).expand(batch=plan.output)
        BigFileCommitOperator(task_id="commit", results=patch.output, path=path,
                              conn_id=conn_id, mode=mode, break_hardlinks=break_hardlinks,
                              verify=verify)
    return group
