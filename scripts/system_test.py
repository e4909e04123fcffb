#!/usr/bin/env python3
"""``make system-test``: the mapped example DAG on a CeleryExecutor, beyond one scheduler
process.

Starts, all on 127.0.0.1 and ephemeral ports: Redis (Debian's ``redis-server``, the Celery
broker and result backend), a moto S3 server (staging), the scheduler, DAG processor and API
server (SQLite, a temporary ``AIRFLOW_HOME``) and two Celery workers, each in a working
folder and ``TMPDIR`` of its own. It triggers ``bigfile_mask_emails`` on an 8 MB CSV in
4 KiB shards with 2 MiB batches (four mapped patch tasks) and S3 staging, so the workers
share nothing but the object store and the target; checks every output byte against
``re.sub``; prints the timings and which worker ran each task; and stops every process it
started, whatever happens. Exit 0 on success, 1 on a failed check.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.deployment import Deployment, free_port, seconds  # noqa: E402

MASK_RE = rb"@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
DOMAINS = [b"old.com", b"mail.example.org", b"corp.co.uk", b"x-y.net"]


def sample(size: int) -> bytes:
    rows = [b"id,email,amount\n"]
    total = len(rows[0])
    while total < size:
        i = len(rows)
        rows.append(b"%d,user%d@%s,%d\n" % (i, i, DOMAINS[i % 4], i % 997))
        total += len(rows[-1])
    return b"".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true", help="keep the working folder")
    args = parser.parse_args()
    redis = shutil.which("redis-server")
    try:
        import airflow.providers.celery  # noqa: F401
        import boto3
        from moto.server import ThreadedMotoServer
    except ImportError as exc:
        print(f"system-test: needs the celery, s3 and test extras ({exc})", file=sys.stderr)
        return 1
    if redis is None:
        print("system-test: needs Debian's redis-server (apt-get install redis-server)",
              file=sys.stderr)
        return 1

    root = Path(tempfile.mkdtemp(prefix="bigfile-system-"))
    os.environ.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1"})
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    s3_url = f"http://{host}:{port}"
    redis_port = free_port()
    dags = root / "dags"
    dags.mkdir()
    shutil.copy(REPO / "dags_examples" / "bigfile_mask_emails.py", dags)
    broker = f"redis://127.0.0.1:{redis_port}"
    airflow = Deployment(root, dags, executor="CeleryExecutor", parallelism=8, env={
        "AIRFLOW__CELERY__BROKER_URL": f"{broker}/0",
        "AIRFLOW__CELERY__RESULT_BACKEND": f"{broker}/1",
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2",
        "AWS_ENDPOINT_URL": s3_url,
        "BIGFILE_DEMO_SHARD_SIZE": "4KiB",
        "BIGFILE_DEMO_BATCH_BYTES": "2MiB",
    })
    ok = False
    try:
        airflow.spawn("redis", [redis, "--bind", "127.0.0.1", "--port", str(redis_port),
                                "--save", "", "--appendonly", "no", "--dir", str(root)])
        started = time.monotonic()
        airflow.start()
        for n in (1, 2):
            work = root / f"worker{n}"
            (work / "tmp").mkdir(parents=True)
            airflow.spawn(f"worker{n}", [sys.executable, "-m", "airflow", "celery", "worker",
                                         "--celery-hostname", f"worker{n}@%h"],
                          cwd=work, env={"TMPDIR": str(work / "tmp")})
        airflow.wait_for_dags("bigfile_mask_emails")
        print(f"deployment up in {time.monotonic() - started:.1f} s")
        boto3.client("s3", endpoint_url=s3_url).create_bucket(Bucket="staging")
        original = sample(8 * 10**6)
        target = root / "data" / "emails.csv"
        target.parent.mkdir()
        target.write_bytes(original)
        started = time.monotonic()
        run_id = airflow.trigger("bigfile_mask_emails", {"path": str(target),
                                                         "staging": "s3://staging/jobs"})
        run = airflow.wait_for_run("bigfile_mask_emails", run_id, timeout=600)
        wall = time.monotonic() - started
        tis = airflow.task_instances("bigfile_mask_emails", run_id)
        print(f"run {run['state']} in {wall:.1f} s (trigger to finish)")
        for ti in sorted(tis, key=lambda t: (t["start_date"] or "", t["map_index"])):
            ran = seconds(ti) if ti["start_date"] and ti["end_date"] else float("nan")
            waited = (seconds(ti, "queued_when", "start_date")
                      if ti["queued_when"] and ti["start_date"] else float("nan"))
            print(f"  {ti['task_id']:<12} {ti['map_index']:>3} {ti['state']:<8} "
                  f"{ran:6.2f} s  queued {waited:5.2f} s")
        ran_patches = {n: (root / "logs" / f"worker{n}.log").read_text().count(
            "task_id='patch'") for n in (1, 2)}
        print(f"patch tasks run by each worker: {ran_patches}")
        batches = math.ceil(len(original) / 2**21)
        checks = {
            "run succeeded": run["state"] == "success",
            "bytes are re.sub's": target.read_bytes() == re.sub(MASK_RE, b"@masked.invalid",
                                                                original),
            f"{batches} mapped patch tasks of 2 MiB": sorted(
                t["map_index"] for t in tis if t["task_id"] == "patch") == list(range(batches)),
            "patch tasks ran on both workers": all(ran_patches.values()),
        }
        print(json.dumps(checks, indent=2))
        ok = all(checks.values())
        if not ok:
            print(airflow.log_tail(), file=sys.stderr)
    finally:
        airflow.stop()
        moto.stop()
        left = airflow.survivors()
        if left:
            print(f"processes left running: {left}", file=sys.stderr)
            ok = False
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (RuntimeError, TimeoutError, subprocess.SubprocessError) as exc:
        print(f"system-test: {exc}", file=sys.stderr)
        sys.exit(1)
