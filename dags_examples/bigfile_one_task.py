"""The smallest bigfile DAG: one task fixes a bad delimiter in a local file.

Runs as it is: the first task writes a small sample CSV at ``params.path`` (default
``$TMPDIR/bigfile-examples/one.csv``) if nothing is there yet; point ``path`` at your own file
to fix that instead. Every ``;`` becomes ``,`` and the engine's own threads do the shards
inside this one task. The file is declared as an Asset (``file://...``), so a DAG scheduled
on it runs after each edit.
"""

from __future__ import annotations

import os
import tempfile

from airflow.sdk import DAG, Param, task
from airflow_bigfile.operators import BigFileEditOperator

ONE_FILE = os.environ.get("BIGFILE_ONE_TASK_FILE",
                          os.path.join(tempfile.gettempdir(), "bigfile-examples", "one.csv"))

with DAG(
    dag_id="bigfile_one_task",
    schedule=None,
    catchup=False,
    tags=["bigfile", "example"],
    params={"path": Param(ONE_FILE, type="string", description="CSV to fix")},
    doc_md=__doc__,
) as dag:

    @task
    def make_sample(path: str) -> None:
        """A few thousand ``;``-separated rows, unless the file is already there."""
        if os.path.exists(path):
            return
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as out:
            out.write(b"".join(b"%d;user%d@old.com;%d\n" % (i, i, i * 7) for i in range(5000)))

    fix = BigFileEditOperator(
        task_id="fix_delimiter",
        path="{{ params.path }}",
        edits=[{"op": "replace", "find": ";", "replace": ","}],
        shard_size="1MiB",
    )
    make_sample("{{ params.path }}") >> fix
