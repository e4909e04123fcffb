"""Mask the domain of every e-mail address in a big CSV on local disk, with the shards
spread over mapped tasks: plan -> patch (one mapped task per batch) -> commit.

Runs as it is: the first task writes a sample CSV of ``params.sample_mb`` MB at
``params.path`` if nothing is there yet (point ``path`` at your own file to mask that).

Settings (DAG params, defaulting to environment variables):

* ``path``: the CSV (``BIGFILE_DEMO_FILE``, default ``$TMPDIR/bigfile-examples/emails.csv``)
* ``staging``: the parent folder of each job's staging folder (``BIGFILE_DEMO_STAGING``,
  default a folder beside the CSV); with Celery or Kubernetes workers use an object store URL
  such as ``s3://bucket/staging``.
* ``BIGFILE_DEMO_SHARD_SIZE`` (default ``4KiB``): the shard size. The plan groups shards into
  batches of 256 MiB (one mapped task each), ``BIGFILE_DEMO_BATCH_BYTES`` or
  ``BIGFILE_DEMO_MAX_BATCHES`` override that.
"""

from __future__ import annotations

import os
import tempfile

from airflow.sdk import DAG, Param, task
from airflow_bigfile.operators import (
    BigFileCommitOperator,
    BigFilePatchShardsOperator,
    BigFilePlanOperator,
)

DEMO_FILE = os.environ.get("BIGFILE_DEMO_FILE",
                           os.path.join(tempfile.gettempdir(), "bigfile-examples", "emails.csv"))
DEMO_STAGING = os.environ.get("BIGFILE_DEMO_STAGING",
                              os.path.join(os.path.dirname(DEMO_FILE), "staging"))
SHARD_SIZE = os.environ.get("BIGFILE_DEMO_SHARD_SIZE", "4KiB")
BATCH_BYTES = os.environ.get("BIGFILE_DEMO_BATCH_BYTES") or None
MAX_BATCHES = int(os.environ.get("BIGFILE_DEMO_MAX_BATCHES") or 0) or None

#: user@any.domain.tld -> user@masked.invalid (Python ``re`` on bytes, as re.sub would)
MASK_DOMAINS = [{
    "op": "replace",
    "find": r"@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}",
    "replace": "@masked.invalid",
    "regex": True,
    "max_match": 256,
}]

with DAG(
    dag_id="bigfile_mask_emails",
    schedule=None,
    catchup=False,
    tags=["bigfile", "example"],
    params={
        "path": Param(DEMO_FILE, type="string", description="CSV to mask"),
        "staging": Param(DEMO_STAGING, type="string", description="staging parent folder"),
        "sample_mb": Param(8, type="integer", minimum=1, description="size of the sample"),
    },
    doc_md=__doc__,
) as dag:

    @task
    def make_sample(path: str, sample_mb: str) -> None:
        """CSV rows with e-mail addresses up to ``sample_mb`` MB, unless the file exists."""
        if os.path.exists(path):
            return
        domains = [b"old.com", b"mail.example.org", b"corp.co.uk", b"x-y.net"]
        block = b"".join(b"%d,user%d@%s,%d\n" % (i, i, domains[i % 4], i % 997)
                         for i in range(20000))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as out:
            out.write(b"id,email,amount\n")
            for _ in range(max(1, int(sample_mb) * 10**6 // len(block))):
                out.write(block)

    plan = BigFilePlanOperator(
        task_id="plan",
        path="{{ params.path }}",
        edits=MASK_DOMAINS,
        staging="{{ params.staging }}",
        shard_size=SHARD_SIZE,
        delimiter="\n",
        batch_bytes=BATCH_BYTES,
        max_batches=MAX_BATCHES,
    )
    patch = BigFilePatchShardsOperator.partial(task_id="patch", retries=2).expand(
        batch=plan.output)
    commit = BigFileCommitOperator(task_id="commit", results=patch.output)
    make_sample("{{ params.path }}", "{{ params.sample_mb }}") >> plan
