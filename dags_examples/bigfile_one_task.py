"""The smallest bigfile DAG: one task fixes a bad delimiter in a local file.

``BIGFILE_ONE_TASK_FILE`` (or the ``path`` param) names the file, default
``/tmp/bigfile-demo/one.csv``. Every ``;`` becomes ``,`` and the engine's own threads do the
shards inside this one task.
"""

from __future__ import annotations

import os

from airflow.sdk import DAG, Param
from airflow_bigfile.operators import BigFileEditOperator

ONE_FILE = os.environ.get("BIGFILE_ONE_TASK_FILE", "/tmp/bigfile-demo/one.csv")

with DAG(
    dag_id="bigfile_one_task",
    schedule=None,
    catchup=False,
    tags=["bigfile", "example"],
    params={"path": Param(ONE_FILE, type="string")},
    doc_md=__doc__,
) as dag:
    BigFileEditOperator(
        task_id="fix_delimiter",
        path="{{ params.path }}",
        edits=[{"op": "replace", "find": ";", "replace": ","}],
        shard_size="1MiB",
    )
