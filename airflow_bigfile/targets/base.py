"""What the pipeline asks of a target, whatever its storage.

A :class:`Target` is the file being edited: it checks it can be edited, holds it for a job
(lock and recovery), says what it is now (:class:`Identity`), reads it, and commits
verified pieces to it in the modes its storage allows. The pipeline (:mod:`airflow_bigfile.
pipeline`) calls these and never asks which kind of target it has; each kind says what it
can do through the few capability methods below, which answer ``None`` or ``False`` where
the storage cannot.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from airflow_bigfile.edits import Layout
from airflow_bigfile.payload import Data

if TYPE_CHECKING:
    from airflow_bigfile.commit.assembly import Piece
    from airflow_bigfile.commit.recover import RecoveryResult
    from airflow_bigfile.io.storage import Identity, Source, Staging
    from airflow_bigfile.plan.manifest import Manifest
    from airflow_bigfile.run.executors import Executor
    from airflow_bigfile.run.tasks import JobSpec


@dataclass
class CommitOutcome:
    """How a commit went: its mode, the bytes it wrote and the size it left."""

    mode: str
    bytes_written: int
    size_after: int
    reason: str = ""  # why this mode, for the result's commit_reason


def tail_items(layout: Layout) -> list[Data | int]:
    """What follows the last original byte: data, or an int for that many zero bytes."""
    fill: list[Data | int] = [layout.zero_fill] if layout.zero_fill else []
    return [*layout.tail_inserts, *fill, *layout.appends]


class Target(Protocol):
    """The file being edited (local file, S3 object, any other fsspec file)."""

    url: str            # what the caller named, for messages
    path: str           # the real path on its filesystem (a local link resolved)
    local: bool         # on this machine's filesystem (staging beside it is local too)
    default_shard_size: int

    def check(self, *, write: bool, mode: str = "auto", break_hardlinks: bool = False
              ) -> None:
        """Raise a clear :class:`TargetError` if the target cannot be read (or written,
        with ``write``, in ``mode``)."""

    def session(self, *, wait: float, job: str, dry_run: bool = False,
                keep: str | None = None) -> AbstractContextManager[None]:
        """Hold the target for one job: lock it (where the storage has locks) and recover
        what a killed job left, except ``keep`` (the staging of the job being committed)."""

    def locked(self, *, wait: float, job: str) -> AbstractContextManager[None]:
        """The target's lock alone (a no-op where the storage has none)."""

    def recover(self, keep: str | None = None) -> RecoveryResult:
        """Put the target back to a consistent state after a killed job."""

    def identity(self) -> Identity:
        """What the target is now: size and whatever tells a change (mtime, inode, ETag)."""

    def source(self) -> Source:
        """A reader of the target's current bytes."""

    def default_staging(self, *, local_workers: bool) -> str:
        """Where job folders go when the caller names no staging."""

    def check_staging(self, staging: str) -> str:
        """The caller's staging parent, refused if it is unsafe for this target."""

    def commit_offsets(self, layout: Layout, identity: Identity, mode: str, *,
                       dry_run: bool, writer: str) -> CommitOutcome | None:
        """Commit edits that need no shard pass (patches, truncates, appends) straight from
        the edit list, or None when they need the pipeline."""

    def prepare_direct(self, job_id: str, identity: Identity) -> bool:
        """Make the new file workers may write same-length output straight into; False
        where the storage has no such file."""

    def check_unchanged(self, manifest: Manifest, spec: JobSpec, exe: Executor,
                        source_crcs: dict[int, int | None], *, full: bool = False) -> None:
        """Right before committing, refuse if the source changed since its shards were
        read (where the commit itself cannot tell); ``full`` reads it again to be sure."""

    def commit(self, stage: Staging, pieces: Sequence[Piece], manifest: Manifest,
               layout: Layout, mode: str, size_after: int, *, dry_run: bool,
               options: dict[str, Any]) -> CommitOutcome:
        """Commit verified pieces and the tail atomically, in ``mode``."""

    def stream_rewrite(self, stage: Staging, pieces: Iterator[Piece], manifest: Manifest,
                       layout: Layout, after_pieces: Callable[[], None],
                       break_hardlinks: bool = False, verify: str = "fast") -> CommitOutcome:
        """Rewrite from pieces still being made, calling ``after_pieces`` once the last is
        in (it may raise to abandon the commit). Where the storage allows, the scan and the
        copy overlap. ``verify`` as :class:`~airflow_bigfile.settings.Settings` has it."""

    def discard(self, job_id: str) -> None:
        """Remove what ``job_id`` left beside the target (empty staging root, new file)."""
