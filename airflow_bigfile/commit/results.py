"""The workers' results in staging: one JSON file per batch, written by
:func:`~airflow_bigfile.api.patch_batch` and read back by the commit, which believes only
what the plan's batches vouch for (see :mod:`airflow_bigfile.io.trust`)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from airflow_bigfile.exceptions import StagingError
from airflow_bigfile.io.storage import Staging
from airflow_bigfile.io.trust import Batch, check_batch, job_folder
from airflow_bigfile.io.trust import check_job_id as checked_job_id
from airflow_bigfile.patch.patcher import ShardResult
from airflow_bigfile.plan.manifest import MANIFEST, Manifest

RESULTS = "results"
RESULT_NAME = re.compile(r"batch-[0-9]{7}\.json")


def batch_name(first: int) -> str:
    """The results file of the batch starting at shard ``first``."""
    return f"{RESULTS}/batch-{first:07d}.json"


def load_manifest(stage: Staging, job_id: str, sha256: str) -> Manifest:
    """The plan's manifest: its bytes must have the plan's SHA-256 and name the job."""
    manifest = Manifest.load(stage, sha256)
    if manifest.job_id != job_id:
        raise StagingError(f"the manifest at {stage.path(MANIFEST)} is for job "
                           f"{manifest.job_id}, not {job_id}; refusing it")
    return manifest


def check_range(manifest: Manifest, batch: Batch) -> None:
    """Refuse a batch whose shards are not the manifest's."""
    if not batch.empty and not (batch.first >= 0 and batch.last < len(manifest.shards)):
        raise StagingError(f"the batch's shards {batch.first}..{batch.last} are not shards of "
                           f"job {batch.job_id} (it has {len(manifest.shards)})")


def commit_batches(staging: str, batches: Iterable[dict[str, Any]] | None,
                   manifest_sha256: str | None) -> tuple[Batch, list[Batch] | None]:
    """The plan a commit trusts: its job folder, job id and manifest digest (as a batch
    covering no shard) and the checked batches given, all of that one plan."""
    given = None if batches is None else [check_batch(b) for b in batches]
    digest = manifest_sha256 or (given[0].manifest_sha256 if given else None)
    if digest is None:
        raise StagingError(
            f"commit_edit({staging!r}) needs the plan's batches (or the patch summaries) or "
            f"its manifest_sha256: a staging folder alone is not trusted")
    job_id = checked_job_id(job_folder(staging), f"the staging {staging}")
    plan = check_batch({"staging": staging, "job_id": job_id, "first": 0,
                        "last": -1, "manifest_sha256": digest})
    if any((b.staging, b.job_id, b.manifest_sha256) != (plan.staging, plan.job_id, digest)
           for b in given or []):
        raise StagingError(f"the batches given are not all of the one plan staged at "
                           f"{staging}; refusing to commit")
    return plan, given


def read_results(stage: Staging, manifest: Manifest, plan: Batch,
                 batches: list[Batch] | None) -> dict[int, ShardResult]:
    """The workers' results, each refused unless it is for a shard of its batch. Without
    batches, each results file is one, up to the next."""
    if batches is None:
        firsts = sorted(int(name[6:13]) for name in _list_results(stage))
        batches = [replace(plan, first=first, last=after - 1) for first, after
                   in zip(firsts, [*firsts[1:], len(manifest.shards)], strict=True)]
    results: dict[int, ShardResult] = {}
    for batch in batches:
        if batch.empty:
            continue
        check_range(manifest, batch)
        name = batch_name(batch.first)
        found = stage.read_json(name)
        for obj in found if isinstance(found, list) else [found]:
            result = ShardResult.from_json(obj)
            if not batch.first <= result.index <= batch.last or result.index in results:
                raise StagingError(f"{stage.path(name)} has a result for shard "
                                   f"{result.index}, outside its batch {batch.first}.."
                                   f"{batch.last} or given twice; the staging was tampered "
                                   f"with")
            results[result.index] = result
    return results


def _list_results(stage: Staging) -> list[str]:
    try:
        return [name for name in (p.rsplit("/", 1)[1] for p in
                                  stage.fs.ls(stage.path(RESULTS), detail=False))
                if RESULT_NAME.fullmatch(name)]
    except FileNotFoundError:
        return []
