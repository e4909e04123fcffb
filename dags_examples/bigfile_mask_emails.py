"""Mask the domain of every e-mail address in a big CSV on local disk, with the shards
spread over mapped tasks: plan -> patch (one mapped task per batch) -> commit.

Settings (DAG params, defaulting to environment variables):

* ``path``: the CSV (``BIGFILE_DEMO_FILE``, default ``/tmp/bigfile-demo/emails.csv``)
* ``staging``: where shards are staged (``BIGFILE_DEMO_STAGING``, default a folder beside it);
  with Celery or Kubernetes workers use an object store URL such as ``s3://bucket/staging``.
* ``BIGFILE_DEMO_SHARD_SIZE`` (default ``16MiB``) and ``BIGFILE_DEMO_MAX_BATCHES``
  (default 64): the shard size and the most mapped patch tasks.
"""

from __future__ import annotations

import os

from airflow.sdk import DAG, Param
from airflow_bigfile.operators import (
    BigFileCommitOperator,
    BigFilePatchShardsOperator,
    BigFilePlanOperator,
)

DEMO_FILE = os.environ.get("BIGFILE_DEMO_FILE", "/tmp/bigfile-demo/emails.csv")
DEMO_STAGING = os.environ.get("BIGFILE_DEMO_STAGING",
                              os.path.join(os.path.dirname(DEMO_FILE), "staging"))
SHARD_SIZE = os.environ.get("BIGFILE_DEMO_SHARD_SIZE", "16MiB")
MAX_BATCHES = int(os.environ.get("BIGFILE_DEMO_MAX_BATCHES", "64"))

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
        "staging": Param(DEMO_STAGING, type="string", description="staging folder or URL"),
    },
    doc_md=__doc__,
) as dag:
    plan = BigFilePlanOperator(
        task_id="plan",
        path="{{ params.path }}",
        edits=MASK_DOMAINS,
        staging="{{ params.staging }}",
        shard_size=SHARD_SIZE,
        delimiter="\n",
        max_batches=MAX_BATCHES,
    )
    patch = BigFilePatchShardsOperator.partial(task_id="patch", retries=2).expand(
        batch=plan.output)
    commit = BigFileCommitOperator(task_id="commit", results=patch.output)
