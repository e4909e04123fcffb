"""Azure Blob Storage (and ADLS Gen2, through adlfs) as a :class:`~airflow_bigfile.targets.
base.Target`: the ``blocklist`` commit stages the new blob's blocks on the blob itself,
unchanged ranges as server-side ``Put Block From URL`` copies of its own bytes (with
``x-ms-source-range``) and changed bytes uploaded, then one ``Put Block List`` conditional on
the ETag the plan saw (``If-Match``) swaps the content atomically: a blob that another
writer changed meanwhile is refused by the store itself. Blocks have no minimum size, so a
small change sends about the changed bytes and the requests' headers.

A killed commit leaves only uncommitted blocks, which never change the blob: the service
discards them at the blob's next commit, or after a week without one.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator, Sequence
from typing import Any

import fsspec
from fsspec.asyn import sync

from airflow_bigfile.commit.assembly import Piece
from airflow_bigfile.commit.crash import crashpoint
from airflow_bigfile.edits import Layout
from airflow_bigfile.exceptions import SourceChangedError, StagingError
from airflow_bigfile.io.retry import retried
from airflow_bigfile.io.storage import Source, Staging
from airflow_bigfile.plan.manifest import Manifest
from airflow_bigfile.targets.base import tail_items
from airflow_bigfile.targets.stream import StreamTarget, assemble, new_segments

log = logging.getLogger(__name__)

MAX_BLOCKS = 50_000
MAX_COPY = 100 << 20      # Put Block From URL's largest source range on every service version
MIN_COPY = 256 << 10      # shorter unchanged runs are cheaper resent than copied
DATA_BLOCK = 16 << 20     # changed bytes are buffered up to this much per block
SAS_SECONDS = 6 * 3600    # lifetime of the read-only signature of the copies' source URL
PROTOCOLS = ("abfs", "abfss", "az")


def is_azure(fs: fsspec.AbstractFileSystem) -> bool:
    """An adlfs filesystem whose credentials can authorize the blob as a copy source."""
    protocols = (fs.protocol,) if isinstance(fs.protocol, str) else fs.protocol
    if not any(p in PROTOCOLS for p in protocols) or not hasattr(fs, "service_client"):
        return False
    return _account_key(fs) is not None or _has_sas(fs)


def _has_sas(fs: Any) -> bool:
    return bool(getattr(fs, "sas_token", None)) or \
        "sharedaccesssignature=" in (getattr(fs, "connection_string", None) or "").lower()


def _account_key(fs: Any) -> str | None:
    if getattr(fs, "account_key", None):
        return fs.account_key
    if getattr(fs, "connection_string", None):
        from azure.storage.blob._shared.base_client import parse_connection_str

        _, _, credential = parse_connection_str(fs.connection_string, None, "blob")
        if isinstance(credential, dict):
            return credential.get("account_key")
    return None


def copy_block_size(size_after: int) -> int:
    """The shortest unchanged run copied server-side rather than resent.

    Copies of at least this length number at most ``size_after / n``, the data blocks
    between them one more, full data blocks at most as many again, and copies longer than
    :data:`MAX_COPY` split: at most :data:`MAX_BLOCKS` in all."""
    budget = MAX_BLOCKS - size_after // MAX_COPY - 10
    if budget <= 0:
        raise StagingError(f"a blob of {size_after} bytes needs more than {MAX_BLOCKS} "
                           f"blocks of server-side copies")
    return max(MIN_COPY, -(-3 * size_after // budget))


class AzureTarget(StreamTarget):
    """An Azure blob, committed by one conditional block list of server-side range copies
    and new blocks."""

    kind = "blocklist"
    reason = ("Azure Blob: one block list committed on the planned ETag, unchanged ranges "
              "copied by the store")

    def _write(self, stage: Staging, pieces: Sequence[Piece], manifest: Manifest,
               layout: Layout, size_after: int, precheck: bool = True) -> int:
        segments = new_segments(stage, pieces, manifest, tail_items(layout), precheck)
        return self._commit_blocks(segments, manifest, size_after)

    def _estimate_sent(self, pieces: Sequence[Piece], layout: Layout, size_after: int) -> int:
        return sum(p.result.staged_bytes for p in pieces if p.result is not None) \
            + layout.tail_length

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call ``method`` of the blob's client on adlfs's event loop."""
        container, blob, _ = self.fs.split_path(self.path)

        async def run() -> Any:
            async with self.fs.service_client.get_blob_client(container, blob) as client:
                return await getattr(client, method)(*args, **kwargs)

        return sync(self.fs.loop, run)

    def _source_url(self) -> str:
        """The blob's URL with a read-only signature the service accepts as a copy source:
        one made from the account key, or the SAS the filesystem was given."""
        key = _account_key(self.fs)
        container, blob, _ = self.fs.split_path(self.path)

        async def client_url() -> str:
            async with self.fs.service_client.get_blob_client(container, blob) as client:
                return client.url

        url = sync(self.fs.loop, client_url)
        if key is None:
            return url  # the client's URL carries the filesystem's SAS
        from datetime import datetime, timedelta, timezone

        from azure.storage.blob import BlobSasPermissions, generate_blob_sas

        sas = generate_blob_sas(
            account_name=self.fs.service_client.account_name, container_name=container,
            blob_name=blob, account_key=key, permission=BlobSasPermissions(read=True),
            expiry=datetime.now(timezone.utc) + timedelta(seconds=SAS_SECONDS))
        return f"{url.split('?', 1)[0]}?{sas}"

    def _commit_blocks(self, segments: Iterator[tuple[str, Any, int]], manifest: Manifest,
                       size_after: int) -> int:
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceModifiedError

        props = retried(self._call, "get_blob_properties")
        blocks = _Blocks(self, self._source_url(), manifest.job_id,
                         copy_block_size(size_after))
        with self.source() as source:
            blocks.source = source
            assemble(segments, blocks)
        crashpoint("parts-uploaded")
        try:
            retried(self._call, "commit_block_list", blocks.ids,
                    etag=manifest.identity.etag, match_condition=MatchConditions.IfNotModified,
                    content_settings=props.content_settings, metadata=props.metadata)
        except ResourceModifiedError as exc:
            raise SourceChangedError(
                f"{self.url} changed since the edit was planned (its ETag is no longer "
                f"{manifest.identity.etag}); the store refused the commit and the blob is "
                f"as the other writer left it") from exc
        crashpoint("completed")
        self.fs.invalidate_cache(self.path)
        return blocks.sent


class _Blocks:
    """Stages the new blob's blocks from copy and data segments, in order."""

    def __init__(self, target: AzureTarget, source_url: str, job_id: str,
                 min_copy: int) -> None:
        self.target, self.source_url, self.job_id = target, source_url, job_id
        self.min_copy = min_copy
        self.data_block = max(DATA_BLOCK, min_copy)
        self.buf = bytearray()
        self.run: list[int] | None = None  # pending copy run [offset, length]
        self.ids: list[str] = []
        self.sent = 0
        self.source: Source | None = None

    def copy(self, offset: int, length: int) -> None:
        if self.run and self.run[0] + self.run[1] == offset:
            self.run[1] += length
        else:
            self._end_run()
            self.run = [offset, length]

    def data(self, data: bytes | memoryview) -> None:
        self._end_run()
        self.buf += data
        if len(self.buf) >= self.data_block:
            self._upload()

    def finish(self) -> None:
        self._end_run()
        if self.buf:
            self._upload()

    def _end_run(self) -> None:
        if not self.run:
            return
        offset, length = self.run
        self.run = None
        if length < self.min_copy:
            assert self.source is not None
            self.buf += self.target._read(self.source, offset, length)
            if len(self.buf) >= self.data_block:
                self._upload()
            return
        if self.buf:
            self._upload()
        count = -(-length // MAX_COPY)
        step = -(-length // count)
        for start in range(offset, offset + length, step):
            block = self._next_id()
            retried(self.target._call, "stage_block_from_url", block, self.source_url,
                    source_offset=start, source_length=min(step, offset + length - start))
            crashpoint("block-staged")

    def _next_id(self) -> str:
        """Block ids of one length (the service's rule for a blob), unique to this job: a
        concurrent job's blocks can never stand in for ours."""
        if len(self.ids) >= MAX_BLOCKS:
            raise StagingError(f"the new blob would need more than {MAX_BLOCKS} blocks")
        block = base64.b64encode(f"bigfile-{self.job_id}-{len(self.ids):06d}".encode())
        self.ids.append(block.decode("ascii"))
        return self.ids[-1]

    def _upload(self) -> None:
        body = bytes(self.buf)
        self.buf = bytearray()
        retried(self.target._call, "stage_block", self._next_id(), body)
        self.sent += len(body)
        crashpoint("block-staged")
