"""Append a day of rows to a CSV object on S3 and fix a misspelt header field, as one
atomic change, with plan -> mapped patch -> commit built by ``bigfile_edit_group``.

The header ``id,emial,amount`` becomes ``id,email,amount`` (a same-length patch at offset 3)
and 24 hourly rows for ``params.day`` are appended; on S3 the commit is one multipart upload
that copies the unchanged ranges server-side.

Runs as it is: the first task writes a sample object at ``params.url`` if none is there (and
the bucket, if missing). Where no S3 store can be reached through the connection (no
connection, no credentials, no network), that task skips the run's tasks and says why.

Settings (DAG params, defaulting to environment variables):

* ``BIGFILE_S3_CONN_ID`` (default ``aws_default``): an ``aws`` connection; its extra may carry
  ``endpoint_url`` (MinIO, moto) and ``region_name``.
* ``url`` (``BIGFILE_S3_URL``, default ``s3://bigfile-demo/events.csv``): the object.
* ``staging`` (``BIGFILE_S3_STAGING``, default ``.bigfile-staging/`` in the same bucket).
* ``day`` (``BIGFILE_S3_DAY``, default ``2024-01-01``): the day whose rows are appended.
"""

from __future__ import annotations

import os

from airflow.sdk import DAG, Param, task
from airflow_bigfile.operators import bigfile_edit_group

CONN_ID = os.environ.get("BIGFILE_S3_CONN_ID", "aws_default")
URL = os.environ.get("BIGFILE_S3_URL", "s3://bigfile-demo/events.csv")
BUCKET = URL.split("://", 1)[-1].split("/", 1)[0]
STAGING = os.environ.get("BIGFILE_S3_STAGING", f"s3://{BUCKET}/.bigfile-staging")
DAY = os.environ.get("BIGFILE_S3_DAY", "2024-01-01")

HEADER_FIX = {"op": "patch", "offset": 3, "data": "email"}  # "id,emial,..." -> "id,email,..."
DAY_ROWS = {"op": "append", "data": "".join(
    f"{{{{ params.day }}}}T{hour:02d}:00:00,user{hour}@example.com,{hour * 10}\n"
    for hour in range(24))}

with DAG(
    dag_id="bigfile_s3_append_fix_header",
    schedule=None,
    catchup=False,
    tags=["bigfile", "example", "s3"],
    params={
        "url": Param(URL, type="string"),
        "staging": Param(STAGING, type="string"),
        "day": Param(DAY, type="string", format="date"),
    },
    doc_md=__doc__,
) as dag:

    @task
    def make_sample(url: str) -> None:
        """Write a sample events object at ``url`` unless one is there; skip the run (and
        say why) when no S3 store answers."""
        from airflow.sdk.exceptions import AirflowSkipException
        from airflow_bigfile.hooks import BigFileHook

        try:
            hook = BigFileHook(CONN_ID)
            fs, path = hook.get_fs(url)
            bucket = path.split("/", 1)[0]
            if not fs.exists(bucket):
                fs.mkdir(bucket)
            if fs.exists(path):
                return
        except Exception as exc:  # noqa: BLE001 - any reason the store is out of reach
            raise AirflowSkipException(
                f"no S3 store reachable for {url} through connection {CONN_ID!r} "
                f"({type(exc).__name__}: {exc}); define that connection (its extra may name "
                f"an endpoint_url such as MinIO's) to run this example") from exc
        fs.pipe_file(path, b"id,emial,amount\n" + b"".join(
            b"2023-12-31T%02d:00:00,user%d@example.com,%d\n" % (i % 24, i, i)
            for i in range(20000)))

    make_sample("{{ params.url }}") >> bigfile_edit_group(
        "append_and_fix",
        path="{{ params.url }}",
        edits=[HEADER_FIX, DAY_ROWS],
        staging="{{ params.staging }}",
        conn_id=CONN_ID,
        patch_kwargs={"retries": 2},
    )
