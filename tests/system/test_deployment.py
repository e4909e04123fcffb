"""The example DAGs under Airflow as it is deployed, not ``airflow dags test``.

One scheduler, DAG processor and API server (LocalExecutor, parallelism 4, SQLite, API server
on an ephemeral loopback port, a temporary ``AIRFLOW_HOME``) start once for this module; each
test triggers DAG runs through the REST API as a user would, waits for them and checks every
output byte against the in-memory model. Every mapped task runs in its own process, so batches
meet only through their staging (local, or the moto S3 server of ``conftest``). All
processes end with the module, and its teardown checks that none is left.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from tests.deployment import Deployment, seconds
from tests.samples import EXAMPLES, MASK_RE, model, sample_csv

MASKED = b"@masked.invalid"

#: the mask example's edit with batches of 2 MiB (``batch_bytes``), to run several mapped
#: patch tasks side by side
FLEET_DAG = '''
"""The mask example's edit over batches of 2 MiB."""
from airflow.sdk import DAG, Param

from airflow_bigfile.operators import bigfile_edit_group

MASK_DOMAINS = [{"op": "replace", "find": r"@[A-Za-z0-9-]+(?:\\.[A-Za-z0-9-]+)*\\.[A-Za-z]{2,}",
                 "replace": "@masked.invalid", "regex": True, "max_match": 256}]

with DAG("bigfile_fleet_2mib", schedule=None, catchup=False,
         params={"path": Param("", type="string"), "staging": Param("", type="string")}):
    bigfile_edit_group("mask", path="{{ params.path }}", edits=MASK_DOMAINS,
                       staging="{{ params.staging }}", shard_size="4KiB", delimiter="\\n",
                       batch_bytes="2MiB")
'''

#: a DAG scheduled on the Asset of the one-task example's file
CONSUMER_DAG = '''
"""Runs after each edit of the one-task example's file (its Asset)."""
import os

from airflow.sdk import DAG, Asset, task

ONE = os.environ["BIGFILE_ONE_TASK_FILE"]

with DAG("bigfile_on_edited_file", schedule=[Asset("file://" + os.path.realpath(ONE))],
         catchup=False):

    @task
    def semicolons_left() -> int:
        with open(ONE, "rb") as f:
            return f.read().count(b";")

    semicolons_left()
'''


@pytest.fixture(scope="module")
def deployment(tmp_path_factory, s3_server):
    root = tmp_path_factory.mktemp("deployment")
    dags = root / "dags"
    dags.mkdir()
    for dag_file in EXAMPLES.glob("*.py"):
        shutil.copy(dag_file, dags / dag_file.name)
    (dags / "bigfile_fleet_2mib.py").write_text(FLEET_DAG)
    (dags / "bigfile_on_edited_file.py").write_text(CONSUMER_DAG)
    data = root / "data"
    data.mkdir()
    conn = {"conn_type": "aws", "login": "testing", "password": "testing",
            "extra": {"endpoint_url": s3_server}}
    env = {
        "BIGFILE_ONE_TASK_FILE": str(data / "one.csv"),
        "BIGFILE_DEMO_SHARD_SIZE": "4KiB",
        "AIRFLOW_CONN_BIGFILE_S3": json.dumps(conn),
        "BIGFILE_S3_CONN_ID": "bigfile_s3",
        "AWS_ENDPOINT_URL": s3_server,  # S3 staging reached with default credentials too
    }
    airflow = Deployment(root, dags, parallelism=4, env=env)
    airflow.data = data
    try:
        with airflow:
            airflow.wait_for_dags("bigfile_mask_emails", "bigfile_one_task",
                                  "bigfile_s3_append_fix_header", "bigfile_fleet_2mib",
                                  "bigfile_on_edited_file")
            yield airflow
    finally:
        assert airflow.survivors() == [], "processes of the deployment outlived it"


def run_ok(airflow: Deployment, dag_id: str, run_id: str) -> list[dict]:
    """Wait for the run; fail with the component logs unless it succeeded. Returns its TIs."""
    run = airflow.wait_for_run(dag_id, run_id)
    tis = airflow.task_instances(dag_id, run_id)
    assert run["state"] == "success", (
        f"{dag_id} {run_id}: {run['state']}; "
        f"{[(t['task_id'], t['map_index'], t['state']) for t in tis]}\n{airflow.log_tail()}")
    return tis


def test_mapped_examples_under_the_scheduler(deployment):
    """8 MB in 4 KiB shards: the default batching gives one patch task and the run takes
    seconds (it once planned 1,024 batches, one task each); 2 MiB batches run five
    patch tasks side by side. Both give the bytes of ``re.sub``."""
    original = sample_csv(240_000)
    assert len(original) > 8 * 10**6
    expected = re.sub(MASK_RE, MASKED, original)
    runs = {}
    for dag_id in ("bigfile_mask_emails", "bigfile_fleet_2mib"):
        path = deployment.data / f"{dag_id}.csv"
        path.write_bytes(original)
        staging = deployment.data / f"{dag_id}-staging"
        staging.mkdir()
        runs[dag_id] = (path, staging, deployment.trigger(
            dag_id, {"path": str(path), "staging": str(staging)}))
    patch_tasks = {}
    for dag_id, (path, staging, run_id) in runs.items():
        tis = run_ok(deployment, dag_id, run_id)
        assert path.read_bytes() == expected, dag_id
        assert sorted(p.name for p in staging.iterdir()) == [], dag_id
        patches = [t for t in tis if t["task_id"].endswith("patch")]
        patch_tasks[dag_id] = sorted(t["map_index"] for t in patches)
        task_time = sum(seconds(t) for t in tis)
        assert task_time < 60, f"{dag_id}: {task_time:.1f} s of task time"
    assert patch_tasks["bigfile_mask_emails"] == [0]
    assert patch_tasks["bigfile_fleet_2mib"] == [0, 1, 2, 3, 4]


def test_one_task_example_schedules_the_dag_on_its_asset(deployment):
    path = Path(deployment.env["BIGFILE_ONE_TASK_FILE"])
    original = sample_csv(20_000)
    path.write_bytes(original)
    assert deployment.runs("bigfile_on_edited_file") == []
    run_ok(deployment, "bigfile_one_task", deployment.trigger("bigfile_one_task"))
    assert path.read_bytes() == original.replace(b";", b",")
    consumer = deployment._wait(lambda: deployment.runs("bigfile_on_edited_file"), 120,
                                "the DAG scheduled on the Asset to be queued")
    assert len(consumer) == 1
    assert consumer[0]["run_type"] == "asset_triggered"
    run_ok(deployment, "bigfile_on_edited_file", consumer[0]["dag_run_id"])
    assert deployment.xcom("bigfile_on_edited_file", consumer[0]["dag_run_id"],
                           "semicolons_left") == 0


def test_s3_example_shares_only_the_object_store(deployment, s3_server):
    """Target and staging on S3: the plan, mapped patch and commit processes meet only there."""
    import boto3

    s3 = boto3.client("s3", endpoint_url=s3_server)
    bucket = "bigfile-deploy"
    s3.create_bucket(Bucket=bucket)
    original = b"id,emial,amount\n" + b"".join(
        b"2023-12-31T%02d:00:00,user%d@example.com,%d\n" % (i % 24, i, i) for i in range(30000))
    s3.put_object(Bucket=bucket, Key="events.csv", Body=original)
    run_id = deployment.trigger("bigfile_s3_append_fix_header", {
        "url": f"s3://{bucket}/events.csv", "staging": f"s3://{bucket}/staging",
        "day": "2024-03-05"})
    run_ok(deployment, "bigfile_s3_append_fix_header", run_id)
    body = s3.get_object(Bucket=bucket, Key="events.csv")["Body"].read()
    rows = "".join(f"2024-03-05T{h:02d}:00:00,user{h}@example.com,{h * 10}\n" for h in range(24))
    assert body == model(original, [{"op": "patch", "offset": 3, "data": "email"},
                                    {"op": "append", "data": rows}])
    left = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
    assert [o["Key"] for o in left] == ["events.csv"]
