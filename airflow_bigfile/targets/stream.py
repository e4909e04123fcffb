"""Objects on any fsspec filesystem but the local one, as a :class:`~airflow_bigfile.
targets.base.Target`: the ``stream`` commit writes the new object through fsspec in one
pass beside the target and moves it over the target; stores replace an object only when its
write completes. Object stores have no locks: every commit is conditional on the identity
(ETag) the plan saw. :class:`~airflow_bigfile.targets.s3.S3Target` does better on S3.
"""

from __future__ import annotations

import contextlib
import logging
import posixpath
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

import fsspec

from airflow_bigfile.commit.assembly import Piece
from airflow_bigfile.commit.crash import crashpoint
from airflow_bigfile.commit.recover import DISTRIBUTED_TTL, RecoveryResult
from airflow_bigfile.commit.verify import check_identity, staged_records
from airflow_bigfile.edits import Layout
from airflow_bigfile.exceptions import (
    SourceChangedError,
    TargetError,
    TargetIsDirectoryError,
    TargetNotFoundError,
)
from airflow_bigfile.io.retry import retried
from airflow_bigfile.io.sidecars import JOB_ID, check_staging_parent
from airflow_bigfile.io.storage import Identity, Source, Staging
from airflow_bigfile.payload import Data, chunks
from airflow_bigfile.plan.manifest import Manifest
from airflow_bigfile.run.executors import Executor
from airflow_bigfile.run.tasks import JobSpec
from airflow_bigfile.targets.base import CommitOutcome, tail_items

log = logging.getLogger(__name__)

READ_CHUNK = 8 << 20
UPLOADS = "uploads"


def _protocol(fs: fsspec.AbstractFileSystem) -> str:
    return fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]


class StreamTarget:
    """An object (or file) reached through an fsspec filesystem other than the local one,
    committed by writing the new object whole beside it and moving it over the target."""

    local = False
    default_shard_size = 16 << 20  # shards are read twice over the network: keep them small
    kind = "stream"
    reason = "an object store without server-side part copies: the new object is written whole"

    def __init__(self, fs: fsspec.AbstractFileSystem, path: str, url: str) -> None:
        self.fs, self.path, self.url = fs, path, url
        folder, name = posixpath.split(path)
        self.staging_root = posixpath.join(folder, f".{name}.bigfile-staging")

    def full_url(self, path: str) -> str:
        return f"{_protocol(self.fs)}://{path}"

    def info(self) -> dict[str, Any]:
        with contextlib.suppress(Exception):
            self.fs.invalidate_cache(self.path)
        try:
            return retried(self.fs.info, self.path)
        except FileNotFoundError:
            raise TargetNotFoundError(f"{self.url}: no such file or object") from None

    def check(self, *, write: bool, mode: str = "auto", break_hardlinks: bool = False
              ) -> None:
        info = self.info()
        if info.get("type") == "directory":
            raise TargetIsDirectoryError(f"{self.url} is a folder (prefix), not a file")

    @contextlib.contextmanager
    def session(self, *, wait: float, job: str, dry_run: bool = False,
                keep: str | None = None) -> Iterator[None]:
        """Recover the target first (never on a dry run). Object stores have no locks;
        the commit is conditional on the ETag instead."""
        if not dry_run:
            self.recover(keep)
        yield

    def identity(self) -> Identity:
        info = self.info()
        tag = (info.get("ETag") or info.get("etag") or info.get("generation")
               or info.get("md5Hash") or info.get("LastModified") or info.get("mtime")
               or info.get("created"))
        return Identity(size=int(info["size"]), etag=str(tag) if tag is not None else None)

    def source(self) -> Source:
        return Source(self.fs, self.path)

    def default_staging(self, *, local_workers: bool) -> str:
        """Workers on this machine stage in its temporary folder; workers elsewhere in a
        hidden prefix beside the object, which they all can reach."""
        return tempfile.gettempdir() if local_workers else self.full_url(self.staging_root)

    def check_staging(self, staging: str) -> str:
        return check_staging_parent(staging, "")

    def locked(self, *, wait: float, job: str) -> contextlib.nullcontext[None]:
        """Object stores have no locks: the commit is conditional on the ETag instead."""
        return contextlib.nullcontext()

    def commit_offsets(self, layout: Layout, identity: Identity, mode: str, *,
                       dry_run: bool, writer: str) -> CommitOutcome | None:
        """An object is rewritten whole (or by parts): every edit goes through shards."""
        return None

    def prepare_direct(self, job_id: str, identity: Identity) -> bool:
        return False

    def check_unchanged(self, manifest: Manifest, spec: JobSpec, exe: Executor,
                        source_crcs: dict[int, int | None], *, full: bool = False) -> None:
        """The commit checks the ETag, a digest of the content: nothing to read again."""

    def discard(self, job_id: str) -> None:
        """A stream commit removes its temporary object itself."""

    def recover(self, keep: str | None = None) -> RecoveryResult:
        """Abort multipart uploads a killed commit left and remove stale staging."""
        result = RecoveryResult(target=self.url)
        try:
            jobs = retried(self.fs.ls, self.staging_root, detail=False, refresh=True)
        except FileNotFoundError:
            return result
        keep_path = keep and fsspec.core.url_to_fs(keep)[1].rstrip("/")
        for job in jobs:
            job = job.rstrip("/")
            if posixpath.basename(job) == UPLOADS:
                self._recover_uploads(job, result)
                continue
            if job == keep_path or self._live(job):
                continue
            if not JOB_ID.fullmatch(posixpath.basename(job)):
                result.kept.append(self.full_url(job))
                continue
            retried(self.fs.rm, job, recursive=True)
            result.removed.append(self.full_url(job))
        if result.kept:
            log.warning("%s", result.message)
        return result

    def _recover_uploads(self, folder: str, result: RecoveryResult) -> None:
        """A stream commit starts no upload: whatever is in ``folder`` is not ours."""
        result.kept.append(self.full_url(folder))

    def _live(self, job: str) -> bool:
        try:
            info = self.fs.info(posixpath.join(job, "distributed"))
        except (FileNotFoundError, OSError):
            return False
        created = info.get("LastModified") or info.get("created") or info.get("mtime")
        stamp = created.timestamp() if hasattr(created, "timestamp") else float(created or 0)
        return time.time() - stamp < DISTRIBUTED_TTL


    def commit(self, stage: Staging, pieces: Sequence[Piece], manifest: Manifest,
               layout: Layout, mode: str, size_after: int, *, dry_run: bool,
               options: dict[str, Any]) -> CommitOutcome:
        if mode == "inplace":
            raise TargetError(f"{self.url}: an object store cannot be changed in place; "
                              "use mode auto or rewrite")
        if dry_run:
            return CommitOutcome(self.kind, self._estimate_sent(pieces, layout, size_after),
                                  size_after, self.reason)
        check_identity(manifest.identity, self.identity(), manifest.target)
        # fast: each staged payload read once, its CRC32C checked after its last record;
        # the new object only appears once everything is in, so a mismatch abandons it
        precheck = options.get("verify", "fast") == "full"
        return CommitOutcome(self.kind, self._write(stage, pieces, manifest, layout,
                                                    size_after, precheck),
                             size_after, self.reason)

    def stream_rewrite(self, stage: Staging, pieces: Iterator[Piece], manifest: Manifest,
                       layout: Layout, after_pieces: Callable[[], None],
                       break_hardlinks: bool = False, verify: str = "fast") -> CommitOutcome:
        """An object is written once every piece is in."""
        ready = list(pieces)
        after_pieces()
        size_after = sum(p.length for p in ready) + layout.tail_length
        return self.commit(stage, ready, manifest, layout, "auto", size_after, dry_run=False,
                           options={"verify": verify})

    def _estimate_sent(self, pieces: Sequence[Piece], layout: Layout, size_after: int) -> int:
        return size_after

    def _write(self, stage: Staging, pieces: Sequence[Piece], manifest: Manifest,
               layout: Layout, size_after: int, precheck: bool = True) -> int:
        """The stream rewrites its temporary object from the start, so a transient failure
        anywhere in it is retried whole. ``precheck`` as for :func:`new_segments`."""
        return retried(lambda: self._stream(
            new_segments(stage, pieces, manifest, tail_items(layout), precheck), manifest))

    def _read(self, source: Source, offset: int, length: int) -> bytes:
        buf = bytearray(length)
        n = source.readinto(offset, memoryview(buf))
        if n != length:
            raise SourceChangedError(f"{self.url} ended early at {offset + n}; it changed")
        return bytes(buf)

    def _stream(self, segments: Iterator[tuple[str, Any, int]], manifest: Manifest) -> int:
        """Write the new object beside the target in one pass, then move it over the
        target (a server-side copy on object stores): readers see old or new, never part."""
        folder, name = posixpath.split(self.path)
        tmp = posixpath.join(folder, f".{name}.bigfile-{manifest.job_id}.new")
        written = 0
        try:
            with self.source() as source, self.fs.open(tmp, "wb") as out:
                for kind, value, length in segments:
                    if kind == "C":
                        for off in range(value, value + length, READ_CHUNK):
                            out.write(self._read(source, off,
                                                 min(READ_CHUNK, value + length - off)))
                    else:
                        out.write(value)
                    written += length
            crashpoint("stream-written")
            check_identity(manifest.identity, self.identity(), manifest.target)
            retried(self.fs.mv, tmp, self.path)
        except BaseException:
            with contextlib.suppress(Exception):
                self.fs.rm_file(tmp)
            raise
        return written


def new_segments(stage: Staging, pieces: Sequence[Piece], manifest: Manifest,
                 tail: Sequence[Data | int], precheck: bool = True
                 ) -> Iterator[tuple[str, Any, int]]:
    """The new content as ``("C", source_offset, length)`` and ``("D", bytes, length)``.
    Without ``precheck`` each staged payload is read once and its CRC32C checked after its
    last record (see :func:`~airflow_bigfile.commit.verify.open_staged`)."""
    for piece in pieces:
        if piece.staged is None:
            if piece.length:
                yield "C", piece.start, piece.length
            continue
        for kind, length, value in staged_records(stage, piece, manifest,
                                                  precheck=precheck):
            yield kind, value, length
    for item in tail:
        if isinstance(item, int):
            for off in range(0, item, READ_CHUNK):
                n = min(READ_CHUNK, item - off)
                yield "D", bytes(n), n
        else:
            for piece in chunks(item):
                yield "D", piece, len(piece)


class Assembler(Protocol):
    """What builds an object server-side from segments: S3 parts, Azure blocks."""

    def copy(self, offset: int, length: int) -> None: ...
    def data(self, data: bytes | memoryview) -> None: ...
    def finish(self) -> None: ...


def assemble(segments: Iterator[tuple[str, Any, int]], assembler: Assembler) -> None:
    """Feed :func:`new_segments` to ``assembler`` in order, then finish it."""
    for kind, value, length in segments:
        if kind == "C":
            assembler.copy(value, length)
        else:
            assembler.data(value)
    assembler.finish()
