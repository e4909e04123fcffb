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
from airflow_bigfile.io.retry import retried
from airflow_bigfile.io.sidecars import JOB_ID
from airflow_bigfile.io.storage import Staging
from airflow_bigfile.plan.manifest import Manifest
from airflow_bigfile.targets.base import tail_items
from airflow_bigfile.targets.parts import MAX_PARTS, MIN_PART, Parts
from airflow_bigfile.targets.stream import UPLOADS, StreamTarget, assemble, new_segments

DATA_PART = 16 << 20


def is_s3(fs: fsspec.AbstractFileSystem) -> bool:
    protocols = (fs.protocol,) if isinstance(fs.protocol, str) else fs.protocol
    return any(p in ("s3", "s3a") for p in protocols) and hasattr(fs, "call_s3")


class S3Target(StreamTarget):
    """An S3 object, committed by a multipart upload of server-side copies and new bytes."""

    kind = "multipart"
    reason = "S3: one multipart upload, unchanged ranges copied by the store"

    def _write(self, stage: Staging, pieces: Sequence[Piece], manifest: Manifest,
               layout: Layout, size_after: int, precheck: bool = True) -> int:
        if size_after == 0:  # S3 has no empty multipart upload
            return super()._write(stage, pieces, manifest, layout, size_after, precheck)
        return self._multipart(new_segments(stage, pieces, manifest, tail_items(layout),
                                            precheck), manifest, size_after)

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
        upload_id = retried(call, "create_multipart_upload", Bucket=bucket, Key=key)["UploadId"]
        marker = posixpath.join(self.staging_root, UPLOADS, upload_id)
        try:
            retried(self.fs.pipe_file, marker, manifest.job_id.encode())
            copy_if = {"CopySourceIfMatch": etag} if etag else {}

            def upload(number: int, body: bytes) -> str:
                return retried(call, "upload_part", Bucket=bucket, Key=key, UploadId=upload_id,
                               PartNumber=number, Body=body)["ETag"]

            def copy(number: int, offset: int, length: int) -> str:
                out = retried(call, "upload_part_copy", Bucket=bucket, Key=key,
                              UploadId=upload_id, PartNumber=number,
                              CopySource={"Bucket": bucket, "Key": key},
                              CopySourceRange=f"bytes={offset}-{offset + length - 1}", **copy_if)
                return out["CopyPartResult"]["ETag"]

            with self.source() as source:
                parts = Parts(max(DATA_PART, -(-size_after // (MAX_PARTS - 100))),
                              read=lambda offset, length: self._read(source, offset, length),
                              upload=upload, copy=copy)
                assemble(segments, parts)
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

