"""Targets on object stores and other fsspec filesystems.

``multipart`` (S3 and compatible, through s3fs): one multipart upload whose unchanged
ranges are server-side ``UploadPartCopy`` parts of the object itself and whose changed
bytes are uploaded; completing it swaps the object atomically. Parts follow S3's rules
(>= 5 MiB except the last, <= 5 GiB, <= 10,000), so a small change sends about one
minimum part. Any failure aborts the upload; a killed commit's upload is aborted by the
next recovery, which finds its marker beside the target.

``stream`` (every other store): the new object is written through fsspec in one pass;
stores replace an object only when its write completes.
"""

from __future__ import annotations

import contextlib
import logging
import posixpath
import time
from collections.abc import Iterator, Sequence
from typing import Any

import fsspec

from airflow_bigfile.commit.assembly import Piece
from airflow_bigfile.commit.crash import crashpoint
from airflow_bigfile.commit.local import check_identity, staged_records
from airflow_bigfile.commit.recover import DISTRIBUTED_TTL, RecoveryResult
from airflow_bigfile.edits import Layout
from airflow_bigfile.exceptions import (
    SourceChangedError,
    StagingError,
    TargetError,
    TargetIsDirectoryError,
    TargetNotFoundError,
)
from airflow_bigfile.io.retry import retried
from airflow_bigfile.io.storage import Identity, Source, Staging
from airflow_bigfile.payload import Data, chunks
from airflow_bigfile.plan.manifest import Manifest
from airflow_bigfile.targets.local import CommitOutcome, tail_items
from airflow_bigfile.targets.sidecars import JOB_ID

log = logging.getLogger(__name__)

MIN_PART = 5 << 20
MAX_PART = 5 << 30
MAX_PARTS = 10_000
DATA_PART = 16 << 20
READ_CHUNK = 8 << 20
UPLOADS = "uploads"


def is_s3(fs: fsspec.AbstractFileSystem) -> bool:
    protocols = (fs.protocol,) if isinstance(fs.protocol, str) else fs.protocol
    return any(p in ("s3", "s3a") for p in protocols) and hasattr(fs, "call_s3")


def _protocol(fs: fsspec.AbstractFileSystem) -> str:
    return fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]


class RemoteTarget:
    """An object (or file) reached through an fsspec filesystem other than the local one."""

    local = False

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

    def check(self, *, write: bool) -> None:
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

    def staging_parent(self, staging: str | None) -> str:
        """Where this target's job folders go: ``staging``, or a hidden prefix beside it."""
        return staging.rstrip("/") if staging else self.full_url(self.staging_root)

    def cleanup_staging_root(self) -> None:
        pass

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
                self._abort_ours(job, result)
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

    def _abort_ours(self, folder: str, result: RecoveryResult) -> None:
        """Abort the uploads a killed commit left, and only those: a marker (named after
        the upload id, holding a bigfile job id) is acted on only if the store lists that
        upload as in progress on this target's own key (abort it), or lists it nowhere (a
        stale marker of a completed upload: removed). A marker naming another key's upload,
        or holding anything but a job id, is left alone and reported."""
        uploads = self._uploads()
        key = self.fs.split_path(self.path)[1] if is_s3(self.fs) else ""
        for marker in retried(self.fs.ls, folder, detail=False, refresh=True):
            upload_id = posixpath.basename(marker.rstrip("/"))
            try:
                job = retried(self.fs.cat_file, marker).decode("ascii")
            except (OSError, UnicodeDecodeError):
                job = ""
            on = uploads.get(upload_id)
            if not JOB_ID.fullmatch(job) or on not in (None, key):
                result.kept.append(self.full_url(marker))
                continue
            if on is not None:
                self._abort(upload_id)
            retried(self.fs.rm_file, marker)
            result.removed.append(self.full_url(marker))

    def _uploads(self) -> dict[str, str]:
        """The multipart uploads in progress in the target's bucket: upload id -> key."""
        if not is_s3(self.fs):
            return {}
        bucket, _, _ = self.fs.split_path(self.path)
        found: dict[str, str] = {}
        page: dict[str, str] = {}
        while True:
            out = retried(self.fs.call_s3, "list_multipart_uploads", Bucket=bucket, **page)
            found.update((u["UploadId"], u["Key"]) for u in out.get("Uploads", []))
            if not out.get("IsTruncated"):
                return found
            page = {"KeyMarker": out["NextKeyMarker"],
                    "UploadIdMarker": out["NextUploadIdMarker"]}

    def _live(self, job: str) -> bool:
        try:
            info = self.fs.info(posixpath.join(job, "distributed"))
        except (FileNotFoundError, OSError):
            return False
        created = info.get("LastModified") or info.get("created") or info.get("mtime")
        stamp = created.timestamp() if hasattr(created, "timestamp") else float(created or 0)
        return time.time() - stamp < DISTRIBUTED_TTL

    def _abort(self, upload_id: str) -> None:
        if not is_s3(self.fs):
            return
        bucket, key, _ = self.fs.split_path(self.path)
        with contextlib.suppress(Exception):
            retried(self.fs.call_s3, "abort_multipart_upload", Bucket=bucket, Key=key,
                    UploadId=upload_id)

    # -- commit ------------------------------------------------------------------------

    def commit(self, stage: Staging, pieces: Sequence[Piece], manifest: Manifest,
               layout: Layout, mode: str, size_after: int, *, dry_run: bool,
               options: dict[str, Any]) -> CommitOutcome:
        if mode == "inplace":
            raise TargetError(f"{self.url}: an object store cannot be changed in place; "
                              "use mode auto or rewrite")
        kind = "multipart" if is_s3(self.fs) else "stream"
        reason = ("S3: one multipart upload, unchanged ranges copied by the store"
                  if kind == "multipart" else
                  "an object store without server-side part copies: the new object is "
                  "written whole")
        if dry_run:
            return CommitOutcome(kind, _estimate_sent(pieces, layout, kind, size_after),
                                  size_after, reason)
        check_identity(manifest.identity, self.identity(), manifest.target)
        segments = _segments(stage, pieces, manifest, tail_items(layout))
        if kind == "multipart" and size_after > 0:
            sent = self._multipart(segments, manifest, size_after)
        else:
            # The stream rewrites its temporary object from the start, so a transient
            # failure anywhere in it is retried whole.
            sent = retried(lambda: self._stream(
                _segments(stage, pieces, manifest, tail_items(layout)), manifest))
        return CommitOutcome(kind, sent, size_after, reason)

    def _read(self, source: Source, offset: int, length: int) -> bytes:
        buf = bytearray(length)
        n = retried(source.readinto, offset, memoryview(buf))
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

    def _multipart(self, segments: Iterator[tuple[str, Any, int]], manifest: Manifest,
                   size_after: int) -> int:
        bucket, key, _ = self.fs.split_path(self.path)
        call = self.fs.call_s3
        etag = manifest.identity.etag
        upload = retried(call, "create_multipart_upload", Bucket=bucket, Key=key)
        upload_id = upload["UploadId"]
        marker = posixpath.join(self.staging_root, UPLOADS, upload_id)
        try:
            retried(self.fs.pipe_file, marker, manifest.job_id.encode())
            parts = _Parts(self, call, bucket, key, upload_id, etag,
                           max(DATA_PART, -(-size_after // (MAX_PARTS - 100))))
            with self.source() as source:
                parts.source = source
                for kind, value, length in segments:
                    if kind == "C":
                        parts.copy(value, length)
                    else:
                        parts.data(value)
                parts.finish()
            crashpoint("parts-uploaded")
            check_identity(manifest.identity, self.identity(), manifest.target)
            done = {"Parts": parts.done}
            try:
                retried(call, "complete_multipart_upload", Bucket=bucket, Key=key,
                        UploadId=upload_id, MultipartUpload=done, IfMatch=etag)
            except Exception as exc:  # an older botocore without IfMatch: check was done
                if "IfMatch" not in str(exc) and "Unknown parameter" not in str(exc):
                    raise
                retried(call, "complete_multipart_upload", Bucket=bucket, Key=key,
                        UploadId=upload_id, MultipartUpload=done)
        except BaseException:
            self._abort(upload_id)
            with contextlib.suppress(Exception):
                self.fs.rm_file(marker)
            raise
        crashpoint("completed")
        with contextlib.suppress(Exception):
            retried(self.fs.rm_file, marker)
        self.fs.invalidate_cache(self.path)
        return parts.sent


class _Parts:
    """Builds the parts of a multipart upload from copy and data segments."""

    def __init__(self, target: RemoteTarget, call: Any, bucket: str, key: str,
                 upload_id: str, etag: str | None, part_size: int) -> None:
        self.target, self.call = target, call
        self.bucket, self.key, self.upload_id, self.etag = bucket, key, upload_id, etag
        self.part_size = part_size
        self.buf = bytearray()
        self.run: list[int] | None = None  # pending copy run [offset, length]
        self.done: list[dict[str, Any]] = []
        self.sent = 0
        self.source: Source | None = None

    def copy(self, offset: int, length: int) -> None:
        if self.run and self.run[0] + self.run[1] == offset:
            self.run[1] += length
        else:
            self._end_run(last=False)
            self.run = [offset, length]

    def data(self, data: bytes | memoryview) -> None:
        self._end_run(last=False)
        self.buf += data
        if len(self.buf) >= self.part_size:
            self._upload()

    def finish(self) -> None:
        self._end_run(last=True)
        if self.buf or not self.done:
            self._upload()

    def _download(self, offset: int, length: int) -> None:
        assert self.source is not None
        self.buf += self.target._read(self.source, offset, length)

    def _end_run(self, *, last: bool) -> None:
        if not self.run:
            return
        offset, length = self.run
        self.run = None
        if self.buf:  # pending bytes must grow to a full part before a copy part follows
            take = min(length, max(0, MIN_PART - len(self.buf)))
            self._download(offset, take)
            offset, length = offset + take, length - take
            if length >= MIN_PART or (last and length > 0):
                self._upload()
            elif length:
                self._download(offset, length)
                length = 0
            if len(self.buf) >= self.part_size:
                self._upload()
        if length >= MIN_PART or (last and length > 0 and not self.buf):
            count = -(-length // MAX_PART)
            step = -(-length // count)
            for start in range(offset, offset + length, step):
                self._copy_part(start, min(step, offset + length - start))
        elif length:
            self._download(offset, length)

    def _number(self) -> int:
        number = len(self.done) + 1
        if number > MAX_PARTS:
            raise StagingError("the new object would need more than 10,000 parts; "
                               "use a larger shard size")
        return number

    def _copy_part(self, offset: int, length: int) -> None:
        number = self._number()
        source: dict[str, Any] = {"Bucket": self.bucket, "Key": self.key}
        extra = {"CopySourceIfMatch": self.etag} if self.etag else {}
        out = retried(self.call, "upload_part_copy", Bucket=self.bucket, Key=self.key,
                      UploadId=self.upload_id, PartNumber=number, CopySource=source,
                      CopySourceRange=f"bytes={offset}-{offset + length - 1}", **extra)
        self.done.append({"PartNumber": number, "ETag": out["CopyPartResult"]["ETag"]})

    def _upload(self) -> None:
        number = self._number()
        body = bytes(self.buf)
        self.buf = bytearray()
        out = retried(self.call, "upload_part", Bucket=self.bucket, Key=self.key,
                      UploadId=self.upload_id, PartNumber=number, Body=body)
        self.sent += len(body)
        self.done.append({"PartNumber": number, "ETag": out["ETag"]})


def _segments(stage: Staging, pieces: Sequence[Piece], manifest: Manifest,
              tail: Sequence[Data | int]) -> Iterator[tuple[str, Any, int]]:
    """The new content as ``("C", source_offset, length)`` and ``("D", bytes, length)``."""
    for piece in pieces:
        if piece.staged is None:
            if piece.length:
                yield "C", piece.start, piece.length
            continue
        for kind, length, value in staged_records(stage, piece, manifest):
            yield kind, value, length
    for item in tail:
        if isinstance(item, int):
            for off in range(0, item, READ_CHUNK):
                n = min(READ_CHUNK, item - off)
                yield "D", bytes(n), n
        else:
            for piece in chunks(item):
                yield "D", piece, len(piece)


def _estimate_sent(pieces: Sequence[Piece], layout: Layout, kind: str, size_after: int
                   ) -> int:
    if kind == "stream":
        return size_after
    staged = sum(p.result.staged_bytes for p in pieces if p.result is not None)
    return staged + layout.tail_length + (MIN_PART if staged else 0)
