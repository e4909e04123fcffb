"""Example DAGs run whole by the real ``airflow`` CLI in a temporary ``AIRFLOW_HOME`` on
SQLite (``db migrate`` once per module): ``providers list``, ``dags list-import-errors`` and
``dags test`` for each example DAG and for a DAG written from the README (plan -> mapped
patch -> commit over thousands of shards), each output file checked against the in-memory
model.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.samples import EXAMPLES, MASK_RE, REPO, model, sample_csv

README_DAG = '''
"""Written from the README: plan -> mapped patch -> commit on one big file."""
import json
import os

from airflow.sdk import DAG

from airflow_bigfile.operators import (BigFileCommitOperator, BigFilePatchShardsOperator,
                                       BigFilePlanOperator)

URL = os.environ["BIGFILE_README_FILE"]
STAGING = os.environ["BIGFILE_README_STAGING"]
EDITS = json.loads(os.environ["BIGFILE_README_EDITS"])

with DAG("bigfile_readme_fleet", schedule=None, catchup=False) as dag:
    plan = BigFilePlanOperator(task_id="plan", path=URL, edits=EDITS, staging=STAGING,
                               shard_size="2KiB", max_batches=10, conn_id=None)
    patch = BigFilePatchShardsOperator.partial(task_id="patch", conn_id=None).expand(
        batch=plan.output)
    commit = BigFileCommitOperator(task_id="commit", results=patch.output, conn_id=None)
'''


FAULTS_DAG = '''
"""Storage faults under Airflow's own retry logic: every read of the target fails from the
3rd on, in the edit task's first try only. Each try notes its number in OUT/KIND.tries;
the last task copies the target to OUT/KIND.csv."""
import datetime
import os

import fsspec
from airflow.sdk import DAG, task

from airflow_bigfile.operators import BigFileEditOperator
from tests.faulty import FaultyFileSystem

fsspec.register_implementation("faulty", FaultyFileSystem, clobber=True)
OUT = os.environ["BIGFILE_FAULT_OUT"]
DATA = b"".join(b"%05d,user@old.com\\n" % i for i in range(400))


def make_dag(kind):
    def faults(context):
        with open(f"{OUT}/{kind}.tries", "a") as tries:
            tries.write(f"{context['ti'].try_number}\\n")
        if context["ti"].try_number == 1:
            FaultyFileSystem.fail_reads(3, kind)
        else:
            FaultyFileSystem.reset()

    with DAG(f"bigfile_fault_{kind}", schedule=None, catchup=False) as dag:
        @task
        def prepare():
            fsspec.filesystem("memory").pipe(f"/dagfaults/{kind}.csv", DATA)

        @task(trigger_rule="all_done")
        def report():
            with open(f"{OUT}/{kind}.csv", "wb") as out:
                out.write(fsspec.filesystem("memory").cat(f"/dagfaults/{kind}.csv"))

        edit = BigFileEditOperator(
            task_id="edit", path=f"faulty::memory://dagfaults/{kind}.csv", shard_size=512,
            workers=1, edits=[{"op": "replace", "find": "00007,user", "replace": "00007,x"}],
            retries=1, retry_delay=datetime.timedelta(0), pre_execute=faults)
        prepare() >> edit >> report()
    return dag


reset_dag = make_dag("reset")
s3_500_dag = make_dag("500")
eio_dag = make_dag("EIO")
'''
FAULTS_DATA = b"".join(b"%05d,user@old.com\n" % i for i in range(400))


class Airflow:
    """A temporary AIRFLOW_HOME (SQLite) and the ``airflow`` CLI run against it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.home = root / "home"
        self.dags = root / "dags"
        self.data = root / "data"
        for folder in (self.home, self.dags, self.data):
            folder.mkdir(parents=True)
        for dag_file in EXAMPLES.glob("*.py"):
            shutil.copy(dag_file, self.dags / dag_file.name)
        (self.dags / "bigfile_readme_fleet.py").write_text(README_DAG)
        (self.dags / "bigfile_faults.py").write_text(FAULTS_DAG)
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("AIRFLOW", "BIGFILE_"))}
        self.env.update({
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags),
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "BIGFILE_DEMO_FILE": str(self.data / "emails.csv"),
            "BIGFILE_DEMO_STAGING": str(self.data / "staging"),
            "BIGFILE_DEMO_SHARD_SIZE": "64KiB",
            "BIGFILE_DEMO_MAX_BATCHES": "16",
            "BIGFILE_ONE_TASK_FILE": str(self.data / "one.csv"),
            "BIGFILE_README_FILE": str(self.data / "readme.csv"),
            "BIGFILE_README_STAGING": str(self.data / "readme-staging"),
            "BIGFILE_README_EDITS": "[]",
            "BIGFILE_FAULT_OUT": str(self.data),
            "PYTHONPATH": str(REPO),
        })

    def run(self, *args: str, env: dict[str, str] | None = None, timeout: float = 240,
            check: bool = True, prepared: bool = True) -> subprocess.CompletedProcess[str]:
        """``airflow ARGS``; ``prepared=False`` leaves out the examples' BIGFILE_* settings."""
        base = self.env if prepared else {k: v for k, v in self.env.items()
                                          if not k.startswith("BIGFILE_")}
        proc = subprocess.run([sys.executable, "-m", "airflow", *args],
                              env={**base, **(env or {})}, capture_output=True, text=True,
                              timeout=timeout, cwd=self.root)
        if check and proc.returncode != 0:
            raise AssertionError(f"airflow {' '.join(args)} exited {proc.returncode}:\n"
                                 f"{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}")
        return proc

    def dag_test(self, dag_id: str, env: dict[str, str] | None = None,
                 prepared: bool = True) -> str:
        proc = self.run("dags", "test", dag_id, env=env, prepared=prepared)
        out = proc.stdout + proc.stderr
        assert "DagRun Finished" in out and "state=success" in out, out[-6000:]
        return out


@pytest.fixture(scope="module")
def airflow(tmp_path_factory) -> Airflow:
    instance = Airflow(tmp_path_factory.mktemp("airflow"))
    instance.run("db", "migrate", timeout=300)
    return instance


def json_output(out: str):
    """The JSON list a CLI command printed (``-o json``) after any warning lines."""
    found = re.search(r"^\[\s*(?:\{|\])", out, re.M)
    assert found, out[-4000:]
    return json.JSONDecoder().raw_decode(out[found.start():])[0]


def committed_figures(log: str) -> dict:
    """The commit task's result (its XCom), from its 'Committed ...: {...}' log line."""
    found = re.findall(r"Committed \S+: (\{.*\})", log)  # greedy: the dict nests
    assert found, log[-4000:]
    import ast

    return ast.literal_eval(found[-1])


def test_provider_is_listed(airflow):
    out = airflow.run("providers", "list", "-o", "json").stdout
    names = [p.get("package_name") for p in json_output(out)]
    assert "airflow-bigfile" in names


def test_example_dags_import_cleanly(airflow):
    proc = airflow.run("dags", "list-import-errors", "-o", "json")
    out = proc.stdout.strip()
    assert "No data found" in out or json_output(out) == [], proc.stdout + proc.stderr


def test_examples_run_with_nothing_prepared(airflow, tmp_path):
    """Each example succeeds under ``dags test`` as it is: it makes its own sample data (in
    the temporary folder), and the S3 one, with no store to reach, skips and says why."""
    env = {"TMPDIR": str(tmp_path)}
    airflow.dag_test("bigfile_one_task", env=env, prepared=False)
    airflow.dag_test("bigfile_mask_emails", env=env, prepared=False)
    log = airflow.dag_test("bigfile_s3_append_fix_header", env=env, prepared=False)
    examples = tmp_path / "bigfile-examples"
    assert sorted(p.name for p in examples.iterdir()) == ["emails.csv", "one.csv", "staging"]
    assert (examples / "one.csv").read_bytes() == b"".join(
        b"%d,user%d@old.com,%d\n" % (i, i, i * 7) for i in range(5000))
    masked = (examples / "emails.csv").read_bytes()
    assert len(masked) > 8 * 10**6 and not re.search(MASK_RE.replace(b"@", b"@(?!masked)"),
                                                     masked)
    assert masked.count(b"@masked.invalid") == masked.count(b"\n") - 1
    assert list((examples / "staging").iterdir()) == []
    assert "no S3 store reachable for s3://bigfile-demo/events.csv" in log
    assert "state=skipped" in log or "new_state=skipped" in log


def test_mask_emails_dag(airflow):
    data = sample_csv(60000)  # ~2 MB of 64 KiB shards in 16 mapped batches
    path = airflow.data / "emails.csv"
    path.write_bytes(data)
    log = airflow.dag_test("bigfile_mask_emails")
    expected = re.sub(MASK_RE, b"@masked.invalid", data)
    assert path.read_bytes() == expected
    figures = committed_figures(log)
    assert figures["matches"] == len(re.findall(MASK_RE, data))
    assert figures["size_after"] == len(expected)
    assert 8 <= log.count("end task task_id=patch") <= 16
    assert not any((airflow.data / "staging").glob("*/shards-*"))


def test_readme_dag_over_thousands_of_shards(airflow):
    data = sample_csv(150000)  # ~5 MB in 2 KiB shards: thousands of shards, 10 tasks
    path = airflow.data / "readme.csv"
    path.write_bytes(data)
    quiet = data.index(b"@x-y.net", 4_000_000)  # a line no replace touches: delete it
    quiet, quiet_end = data.rindex(b"\n", 0, quiet) + 1, data.index(b"\n", quiet) + 1
    edits = [
        {"op": "replace", "find": "@mail.example.org", "replace": "@m.example"},
        {"op": "replace", "find": r"user(\d)(\d*)@old\.com", "replace": r"U\1-\2@old.com",
         "regex": True},
        {"op": "patch", "offset": 3, "data": "EMAIL"},
        {"op": "insert", "offset": 100000, "data": "# inserted\n"},
        {"op": "delete", "offset": quiet, "length": quiet_end - quiet},
        {"op": "append", "data": "# end\n"},
    ]
    log = airflow.dag_test("bigfile_readme_fleet",
                           env={"BIGFILE_README_EDITS": json.dumps(edits)})
    assert path.read_bytes() == model(data, edits)
    figures = committed_figures(log)
    assert figures["shards"] >= 2000
    assert log.count("end task task_id=patch") <= 10


def test_s3_append_fix_header_dag(airflow, monkeypatch):
    import boto3
    from moto.server import ThreadedMotoServer

    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "us-east-1"
                       }.items():
        monkeypatch.setenv(key, value)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        url = "s3://bigfile-test/events.csv"
        s3 = boto3.client("s3", endpoint_url=endpoint)
        s3.create_bucket(Bucket="bigfile-test")
        original = b"id,emial,amount\n" + b"".join(
            b"2023-12-31T%02d:00:00,user%d@example.com,%d\n" % (i % 24, i, i)
            for i in range(20000))
        s3.put_object(Bucket="bigfile-test", Key="events.csv", Body=original)
        conn = {"conn_type": "aws", "login": "testing", "password": "testing",
                "extra": {"endpoint_url": endpoint}}
        env = {key: os.environ[key] for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                                "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION")}
        env.update({
            "AWS_ENDPOINT_URL": endpoint,  # staging reached with default credentials too
            "AIRFLOW_CONN_BIGFILE_S3": json.dumps(conn),
            "BIGFILE_S3_CONN_ID": "bigfile_s3",
            "BIGFILE_S3_URL": url,
            "BIGFILE_S3_STAGING": "s3://bigfile-test/.bigfile-staging",
            "BIGFILE_S3_DAY": "2024-03-05",
        })
        airflow.dag_test("bigfile_s3_append_fix_header", env=env)
        body = s3.get_object(Bucket="bigfile-test", Key="events.csv")["Body"].read()
        rows = b"".join(b"2024-03-05T%02d:00:00,user%d@example.com,%d\n" % (h, h, h * 10)
                        for h in range(24))
        assert body == b"id,email,amount\n" + original[len(b"id,emial,amount\n"):] + rows
    finally:
        server.stop()


@pytest.mark.parametrize("kind", ["reset", "500"])
def test_airflow_retries_a_transient_fault(airflow, kind):
    """Under Airflow's own task runner: a connection reset (or an S3 500, as s3fs raises it)
    from the 3rd read on outlives the engine's retries, the try ends up for retry, and the
    second try edits the file."""
    log = airflow.dag_test(f"bigfile_fault_{kind}")
    assert "TransientStorageError" in log and "AirflowFailException" not in log
    assert (airflow.data / f"{kind}.tries").read_text().split() == ["1", "2"]
    assert (airflow.data / f"{kind}.csv").read_bytes() == FAULTS_DATA.replace(
        b"00007,user", b"00007,x")


def test_airflow_fails_a_permanent_fault_at_once(airflow):
    """An EIO fails the task at once (AirflowFailException) though it has a retry left, and
    the file is unchanged."""
    proc = airflow.run("dags", "test", "bigfile_fault_EIO", check=False)
    out = proc.stdout + proc.stderr
    assert "AirflowFailException" in out and "Input/output error" in out, out[-6000:]
    assert (airflow.data / "EIO.tries").read_text().split() == ["1"]
    assert (airflow.data / "EIO.csv").read_bytes() == FAULTS_DATA
