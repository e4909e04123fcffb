"""Checks on everything that comes back from a staging area, which other users may write.

Only what the planner returned (a batch: an Airflow XCom or the caller's memory) is trusted.
From it a worker or committer takes a job id, checked to be a plain token, and the SHA-256
of the manifest; every path it writes or removes is derived from the target and that job
id, never read from a manifest, a staged file or a worker's result file.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from airflow_bigfile.exceptions import StagingError
from airflow_bigfile.io import sidecars
from airflow_bigfile.io.storage import is_local, url_to_fs

#: what the patcher names a staged shard: its batch file and the shard's offset in it
STAGED = re.compile(r"(shards-[0-9]{7}-[0-9a-f]{8}\.bin)#([0-9]{1,19})")
SHA256 = re.compile(r"[0-9a-f]{64}")


def check_job_id(job_id: Any, where: str) -> str:
    """``job_id`` if it is a plain job token (see :func:`sidecars.check_job_id`), the error
    saying ``where`` it came from otherwise."""
    try:
        return sidecars.check_job_id(job_id)
    except StagingError as exc:
        raise StagingError(f"{where}: {exc}; refusing to use it") from None


def manifest_digest(data: bytes) -> str:
    """The SHA-256 (hex) of a manifest's bytes, as every batch carries it."""
    return hashlib.sha256(data).hexdigest()


def check_digest(data: bytes, expected: str, where: str) -> None:
    """Refuse manifest bytes whose SHA-256 is not the one the plan returned."""
    found = manifest_digest(data)
    if found != expected:
        raise StagingError(f"the manifest at {where} does not match the plan (SHA-256 "
                           f"{found}, planned {expected}); it was changed after planning, "
                           f"so nothing is patched or committed from it")


def parse_staged(name: str) -> tuple[str, int]:
    """The batch file and offset of a staged shard name (``shards-NNNNNNN-xxxxxxxx.bin#N``);
    anything else (a path, ``../x#0``) is refused, so a name can only point into the job's
    own staging folder."""
    found = STAGED.fullmatch(name) if isinstance(name, str) else None
    if found is None:
        raise StagingError(f"a worker's result names the staged shard {name!r:.80}, which "
                           f"bigfile never makes; the staging was tampered with")
    return found.group(1), int(found.group(2))


@dataclass(frozen=True)
class Batch:
    """A checked batch: its job folder, job id, shard range and manifest digest."""

    staging: str
    job_id: str
    first: int
    last: int
    manifest_sha256: str

    @property
    def empty(self) -> bool:
        return self.last < self.first


def check_batch(batch: Any) -> Batch:
    """Check a batch dict from :func:`~airflow_bigfile.api.plan_edit` (or a patch summary):
    a job id token, a staging folder that ends in it, integer shard bounds and a digest."""
    if not isinstance(batch, Mapping):
        raise StagingError(f"not a bigfile batch: {batch!r:.200}")
    try:
        staging, job, first, last, digest = (batch["staging"], batch["job_id"],
                                             batch["first"], batch["last"],
                                             batch["manifest_sha256"])
    except KeyError as exc:
        raise StagingError(f"the batch has no {exc.args[0]!r} (plan it again with this "
                           f"version of bigfile): {dict(batch)!r:.200}") from None
    job = check_job_id(job, "the batch")
    if not isinstance(staging, str) or job_folder(staging) != job:
        raise StagingError(f"the batch's staging {staging!r:.200} is not the folder of its job "
                           f"{job}; refusing to patch or commit there")
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= -1
               for n in (first, last)):
        raise StagingError(f"the batch's shard range {first!r:.40}..{last!r:.40} is not a "
                           f"range of shard numbers")
    if not isinstance(digest, str) or not SHA256.fullmatch(digest):
        raise StagingError(f"the batch's manifest_sha256 {digest!r:.80} is not a SHA-256")
    return Batch(staging.rstrip("/"), job, first, last, digest)


def job_folder(staging: str) -> str:
    """The last component of a staging URL: the job id of a job folder."""
    return staging.rstrip("/").rsplit("/", 1)[-1]


def check_same_target(planned: str, given: str, storage_options: dict[str, Any] | None
                      ) -> None:
    """Refuse a plan made for another target than ``given``: locally the real paths (through
    symlinks) must be one file's, elsewhere the normalized URLs must be equal."""
    fs_a, path_a = url_to_fs(planned, storage_options)
    fs_b, path_b = url_to_fs(given, storage_options)
    if is_local(fs_a) and is_local(fs_b):
        same = os.path.realpath(path_a) == os.path.realpath(path_b)
    else:
        same = (not is_local(fs_a) and not is_local(fs_b)
                and fs_a.unstrip_protocol(path_a.rstrip("/"))
                == fs_b.unstrip_protocol(path_b.rstrip("/")))
    if not same:
        raise StagingError(f"the plan is for {planned}, not for {given}; refusing to commit "
                           f"it (plan the edit of {given} again)")
