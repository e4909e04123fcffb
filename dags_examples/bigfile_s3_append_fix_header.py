"""Append a day of rows to a CSV object on S3 and fix a misspelt header field, as one
atomic change, with plan -> mapped patch -> commit built by ``bigfile_edit_group``.

The header ``id,emial,amount`` becomes ``id,email,amount`` (a same-length patch at offset 3)
and 24 hourly rows for ``params.day`` are appended; on S3 the commit is one multipart upload
that copies the unchanged ranges server-side.

Settings (DAG params, defaulting to environment variables):

* ``BIGFILE_S3_CONN_ID`` (default ``aws_default``): an ``aws`` connection; its extra may carry
  ``endpoint_url`` (MinIO, moto) and ``region_name``.
* ``url`` (``BIGFILE_S3_URL``, default ``s3://bigfile-demo/events.csv``): the object.
* ``staging`` (``BIGFILE_S3_STAGING``, default ``.bigfile-staging/`` in the same bucket).
* ``day`` (``BIGFILE_S3_DAY``, default ``2024-01-01``): the day whose rows are appended.
"""

from __future__ import annotations

import os

from airflow.sdk import DAG, Param
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
    bigfile_edit_group(
        "append_and_fix",
        path="{{ params.url }}",
        edits=[HEADER_FIX, DAY_ROWS],
        staging="{{ params.staging }}",
        conn_id=CONN_ID,
        patch_kwargs={"retries": 2},
    )
