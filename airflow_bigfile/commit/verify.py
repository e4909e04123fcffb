"""Checks before a commit: the source is the one planned, and every staged byte is what
its worker wrote (CRC32C of each record, and of bytes workers wrote into the new file)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import BinaryIO

from airflow_bigfile.commit.assembly import Piece
from airflow_bigfile.exceptions import ShardChecksumError, SourceChangedError, StagingError
from airflow_bigfile.io.checksum import crc32c
from airflow_bigfile.io.oscompat import pread
from airflow_bigfile.io.storage import Identity, Staging
from airflow_bigfile.io.trust import parse_staged
from airflow_bigfile.patch.patcher import job_tag
from airflow_bigfile.patch.shardfile import HEADER_SIZE, ShardHeader, iter_records
from airflow_bigfile.plan.batching import contiguous_runs
from airflow_bigfile.plan.manifest import Manifest
from airflow_bigfile.run.executors import Executor
from airflow_bigfile.run.tasks import JobSpec, checksum_ranges


def check_identity(was: Identity, now: Identity, url: str) -> None:
    """Refuse to commit if the source ``url`` is no longer the one that was planned."""
    for name in ("size", "mtime_ns", "ctime_ns", "inode", "device", "etag"):
        before, after = getattr(was, name), getattr(now, name)
        if before is not None and after is not None and before != after:
            raise SourceChangedError(
                f"{url} changed since it was planned ({name} {before} -> {after}); "
                f"nothing was committed, run the edit again")


def open_staged(staging: Staging, piece: Piece, manifest: Manifest, precheck: bool = True
                ) -> tuple[BinaryIO, ShardHeader]:
    """Open a staged shard and check its header against the manifest and the result.

    ``precheck`` reads the payload through and checks its CRC32C before returning; without
    it the caller must consume every record (:func:`iter_records` checks the CRC32C at the
    end) and be able to abandon what it made of them."""
    assert piece.staged is not None and piece.result is not None
    name, base = parse_staged(piece.staged)  # a batch file of this job's staging, nothing else
    f = staging.reader(name)  # the handle is shared by the batch's shards: staging closes it
    f.seek(base)
    header = ShardHeader.unpack(f.read(HEADER_SIZE), piece.staged)
    shard, result = piece.shard, piece.result
    if header.job != job_tag(manifest.job_id):
        raise StagingError(f"staged shard {piece.staged} belongs to another job")
    expected = (shard.index, shard.offset, shard.length, result.output_start,
                result.output_length, result.payload_crc)
    found = (header.index, header.source_offset, header.source_length,
             header.output_start, header.output_length, header.payload_crc)
    if found != expected:
        raise StagingError(f"staged shard {piece.staged} does not match the manifest and "
                           f"its worker's result (index, offset, length, start, output, "
                           f"payload CRC: {found} != {expected})")
    if precheck:
        _check_payload(f, header, piece.staged, base)
    read = shard.crc if shard.crc is not None else result.source_crc
    if read is not None and header.source_crc != read:
        raise StagingError(f"staged shard {piece.staged} was made from other source bytes "
                           f"(source CRC32C {header.source_crc:#x} != {read:#x})")
    return f, header


def _check_payload(f: BinaryIO, header: ShardHeader, name: str, base: int) -> None:
    """Read a staged payload through and check its CRC32C before any record is used."""
    crc, left = 0, header.payload_length
    while left:
        chunk = f.read(min(8 << 20, left))
        if not chunk:
            raise StagingError(f"staged shard {name} is truncated")
        crc = crc32c(chunk, crc)
        left -= len(chunk)
    if crc != header.payload_crc:
        raise ShardChecksumError(f"staged shard {name}: payload CRC32C mismatch")
    f.seek(base + HEADER_SIZE)


def check_written(fd: int, offset: int, length: int, crc: int, name: str) -> None:
    """Check bytes a worker wrote straight into the new file against their CRC32C."""
    found, done = 0, 0
    while done < length:
        chunk = pread(fd, min(8 << 20, length - done), offset + done)
        if not chunk:
            break
        found = crc32c(chunk, found)
        done += len(chunk)
    if done != length or found != crc:
        raise ShardChecksumError(f"bytes {offset}..{offset + length} that {name} wrote into "
                                 f"the new file do not match their CRC32C")


def check_all_written(staging: Staging, pieces: Sequence[Piece], manifest: Manifest,
                      fd: int) -> None:
    """Check every byte the workers wrote straight into the new file against its CRC32C,
    a few ranges at a time (pread and CRC32C release the GIL)."""
    checks = []
    for piece in pieces:
        if piece.staged is not None:
            f, header = open_staged(staging, piece, manifest)
            checks += [(value[0], length, value[1], piece.staged) for kind, length, value
                       in iter_records(f, header, piece.staged) if kind == "W"]
    with ThreadPoolExecutor(min(4, os.cpu_count() or 1)) as pool:
        for _ in pool.map(lambda c: check_written(fd, *c), checks):
            pass


def staged_records(staging: Staging, piece: Piece, manifest: Manifest,
                   written_fd: int | None = None, precheck: bool = True):
    """Yield a staged piece's output records, skipping its first ``piece.skip`` bytes.

    ``W`` records (bytes already in the new file) are checked whole through
    ``written_fd`` (when given, and when the worker took their CRC32C) before any of them
    is skipped. Without ``precheck`` the
    payload is read once, its CRC32C checked after the last record (see
    :func:`open_staged`)."""
    f, header = open_staged(staging, piece, manifest, precheck)
    skip = piece.skip
    size = manifest.identity.size
    for kind, length, value in iter_records(f, header, piece.staged or ""):
        if kind in "CW" and (value if kind == "C" else value[0]) + length > size:
            # checked before the CRC32C at the payload's end, so nothing reads past the file
            raise StagingError(f"staged shard {piece.staged} refers to bytes past the end "
                               f"of the {size}-byte file")
        if kind == "W":
            if not manifest.direct:
                raise StagingError(f"staged shard {piece.staged} refers to a new file "
                                   f"this commit does not have")
            if written_fd is not None and header.written_crcs:
                check_written(written_fd, value[0], length, value[1],
                              piece.staged or "")
            value = value[0]
        if skip >= length:
            skip -= length
            continue
        if kind == "D":
            yield "D", length - skip, value[skip:]  # type: ignore[index]
        else:
            yield kind, length - skip, value + skip  # type: ignore[operator]
        skip = 0


def check_sources(url: str, manifest: Manifest, spec: JobSpec, exe: Executor,
                  source_crcs: dict[int, int | None]) -> None:
    """Read again every shard a worker read of a local source and check it against the CRC
    taken when planning or, without one, when the worker read it (``source_crcs``, by shard
    index): a writer that kept the size, mtime and inode is caught here. (On object stores
    the ETag, a digest of the content, does this job.)"""
    expected = {i: manifest.shards[i].crc if manifest.shards[i].crc is not None else crc
                for i, crc in source_crcs.items()}
    shards = [manifest.shards[i] for i in sorted(expected) if expected[i] is not None]
    for part in exe.run(checksum_ranges, [
            (spec, [(s.index, s.offset, s.length) for s in batch], manifest.identity.pin)
            for batch in contiguous_runs(shards, exe.workers * 2)]):
        for index, crc in part:
            if crc != expected[index]:
                shard = manifest.shards[index]
                raise SourceChangedError(
                    f"{url} changed since it was planned (bytes {shard.offset}.."
                    f"{shard.end} no longer match their CRC32C); nothing was committed, "
                    f"run the edit again")
