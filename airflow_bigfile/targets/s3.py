"""S3 objects (and S3-compatible stores, through s3fs) as a :class:`~airflow_bigfile.targets.
base.Target`: the ``multipart`` commit is one multipart upload whose unchanged ranges are
server-side ``UploadPartCopy`` parts of the object itself and whose changed bytes are
uploaded; completing it swaps the object atomically. Parts follow S3's rules (>= 5 MiB
except the last, <= 5 GiB, <= 10,000), so a small change sends about one minimum part. Any
failure aborts the upload; a killed commit's upload is aborted by the next recovery, which
finds its marker beside the target.
"""

from __future__ import annotations

import contextlib
import posixpath
from collections.abc import Iterator, Sequence
from typing import Any

import fsspec

from airflow_bigfile.commit.assembly import Piece
from airflow_bigfile.commit.crash import crashpoint
from airflow_bigfile.commit.recover import RecoveryResult
from airflow_bigfile.commit.verify import check_identity
from airflow_bigfile.edits import Layout
from airflow_bigfile.exceptions import (
    StagingError,
)
from airflow_bigfile.io.retry import retried
from airflow_bigfile.io.sidecars import JOB_ID
from airflow_bigfile.io.storage import Source, Staging
from airflow_bigfile.plan.manifest import Manifest
from airflow_bigfile.targets.base import tail_items
from airflow_bigfile.targets.stream import UPLOADS, StreamTarget, new_segments

MIN_PART = 5 << 20
MAX_PART = 5 << 30
MAX_PARTS = 10_000
DATA_PART = 16 << 20


def is_s3(fs: fsspec.AbstractFileSystem) -> bool:
    protocols = (fs.protocol,) if isinstance(fs.protocol, str) else fs.protocol
    return any(p in ("s3", "s3a") for p in protocols) and hasattr(fs, "call_s3")


class S3Target(StreamTarget):
    """An S3 object, committed by a multipart upload of server-side copies and new bytes."""

    kind = "multipart"
    reason = "S3: one multipart upload, unchanged ranges copied by the store"

    def _write(self, stage: Staging, pieces: Sequence[Piece], manifest: Manifest,
               layout: Layout, size_after: int) -> int:
        if size_after == 0:  # S3 has no empty multipart upload
            return super()._write(stage, pieces, manifest, layout, size_after)
        return self._multipart(new_segments(stage, pieces, manifest, tail_items(layout)),
                               manifest, size_after)

    def _estimate_sent(self, pieces: Sequence[Piece], layout: Layout, size_after: int) -> int:
        staged = sum(p.result.staged_bytes for p in pieces if p.result is not None)
        return staged + layout.tail_length + (MIN_PART if staged else 0)

    def _recover_uploads(self, folder: str, result: RecoveryResult) -> None:
        self._abort_ours(folder, result)

    def _abort_ours(self, folder: str, result: RecoveryResult) -> None:
        """Abort the uploads a killed commit left, and only those: a marker (named after
        the upload id, holding a bigfile job id) is acted on only if the store lists that
        upload as in progress on this target's own key (abort it), or lists it nowhere (a
        stale marker of a completed upload: removed). A marker naming another key's upload,
        or holding anything but a job id, is left alone and reported."""
        uploads = self._uploads()
        key = self.fs.split_path(self.path)[1]
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

    def _abort(self, upload_id: str) -> None:
        bucket, key, _ = self.fs.split_path(self.path)
        with contextlib.suppress(Exception):
            retried(self.fs.call_s3, "abort_multipart_upload", Bucket=bucket, Key=key,
                    UploadId=upload_id)

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

    def __init__(self, target: S3Target, call: Any, bucket: str, key: str,
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
