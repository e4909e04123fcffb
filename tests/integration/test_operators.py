"""The Airflow provider in this process: operators (``execute(context)`` after
``render_template_fields``), the hook and the provider's metadata. Whole DAG runs under the
``airflow`` CLI are in ``tests/system/test_dags.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from airflow.sdk.exceptions import AirflowException, AirflowFailException
from airflow_bigfile.hooks import BigFileHook
from airflow_bigfile.operators import (
    BigFileCommitOperator,
    BigFileEditOperator,
    BigFilePatchShardsOperator,
    BigFilePlanOperator,
    bigfile_edit_group,
)

from airflow_bigfile.exceptions import (
    EditConflictError,
    ShardChecksumError,
    SourceChangedError,
    TargetLockedError,
    TransientStorageError,
)
from tests.samples import model, sample_csv


def render(op, **params):
    """Render ``op``'s template fields as a task runner would (a DAG's Jinja environment
    keeps trailing newlines, which appended rows rely on)."""
    from airflow.sdk import DAG

    op.render_template_fields({"params": params},
                              jinja_env=DAG("render", schedule=None).get_template_env())
    return op


# ---------------------------------------------------------------- operators in this process


@pytest.mark.parametrize("edits", [
    pytest.param([{"op": "replace", "find": "@old.com", "replace": "@new.com"}],
                 id="replace-literal"),
    pytest.param([{"op": "replace", "find": r"user(\d+)@", "replace": r"u\1@",
                   "regex": True}], id="replace-regex-shorter"),
    pytest.param([{"op": "insert", "offset": 5, "data": "INSERTED"},
                  {"op": "delete", "offset": 100, "length": 50}], id="insert-delete"),
    pytest.param([{"op": "patch", "offset": 3, "data": "EMAIL"}], id="patch-same-length"),
    pytest.param([{"op": "truncate", "size": 1000}, {"op": "append", "data": "tail\n"}],
                 id="truncate-append"),
    pytest.param([{"op": "append", "data_hex": "00ff0a"}], id="append-hex"),
])
def test_edit_operator_matches_model(tmp_path, edits):
    data = sample_csv(3000)
    target = tmp_path / "data.csv"
    target.write_bytes(data)
    op = render(BigFileEditOperator(task_id="edit", path="{{ params.path }}",
                                    edits=edits, shard_size="8KiB", workers=2),
                path=str(target))
    result = op.execute({})
    assert target.read_bytes() == model(data, edits)
    assert result["size_before"] == len(data)
    assert result["size_after"] == target.stat().st_size
    json.dumps(result)  # XCom-able


def test_edit_operator_takes_json_edits_after_templating(tmp_path):
    data = sample_csv(500)
    target = tmp_path / "d.csv"
    target.write_bytes(data)
    edits = [{"op": "replace", "find": ";", "replace": ","}]
    op = render(BigFileEditOperator(task_id="edit", path="{{ params.path }}",
                                    edits="{{ params.edits | tojson }}"),
                path=str(target), edits=edits)
    assert isinstance(op.edits, str)
    result = op.execute({})
    assert target.read_bytes() == data.replace(b";", b",")
    assert result["matches"] == data.count(b";")


@pytest.mark.parametrize("data", [
    pytest.param("row\n", id="lf"), pytest.param("row\n\n", id="two-lf"),
    pytest.param("row\r\n", id="crlf"), pytest.param("{{ params.day }}\n", id="templated"),
])
def test_templating_keeps_trailing_newlines(tmp_path, data):
    """Jinja drops a template's last newline by default; appended rows must keep theirs."""
    target = tmp_path / "d.csv"
    target.write_bytes(b"a\n")
    op = render(BigFileEditOperator(task_id="e", path=str(target),
                                    edits=[{"op": "append", "data": data}]), day="2024-01-01")
    op.execute({})
    assert target.read_bytes() == b"a\n" + data.replace("{{ params.day }}",
                                                         "2024-01-01").encode()


@pytest.mark.parametrize("edits", [
    pytest.param("not json", id="bad-json"),
    pytest.param([], id="empty-list"),
    pytest.param([{"op": "explode"}], id="unknown-op"),
    pytest.param([{"op": "patch", "offset": 10**9, "data": "x"}], id="past-end"),
    pytest.param([{"op": "patch", "offset": 0, "data": "abc"},
                  {"op": "delete", "offset": 1, "length": 1}], id="conflict"),
])
def test_bad_edits_fail_without_retry_and_touch_nothing(tmp_path, edits):
    data = sample_csv(100)
    target = tmp_path / "d.csv"
    target.write_bytes(data)
    op = BigFileEditOperator(task_id="edit", path=str(target), edits=edits)
    with pytest.raises(AirflowFailException):
        op.execute({})
    assert target.read_bytes() == data


@pytest.mark.parametrize(("error", "expected"), [
    pytest.param(EditConflictError("a and b"), AirflowFailException, id="conflict-permanent"),
    pytest.param(SourceChangedError("changed"), AirflowFailException, id="source-changed"),
    pytest.param(ShardChecksumError("crc"), AirflowFailException, id="checksum"),
    pytest.param(TargetLockedError("locked"), TargetLockedError, id="locked-retried"),
    pytest.param(ConnectionError("net"), ConnectionError, id="network-retried"),
    pytest.param(TransientStorageError("lost"), TransientStorageError,
                 id="transient-after-engine-retries"),
])
def test_error_mapping(error, expected):
    from airflow_bigfile.operators.bigfile import _engine_errors

    with pytest.raises(expected), _engine_errors("x"):
        raise error


def test_on_kill_stops_the_edit(tmp_path):
    """on_kill (Airflow calls it on SIGTERM) makes the engine stop at its next shard."""
    data = sample_csv(20000)
    target = tmp_path / "d.csv"
    target.write_bytes(data)
    op = BigFileEditOperator(task_id="e", path=str(target), shard_size="4KiB", workers=1,
                             edits=[{"op": "replace", "find": "@old.com", "replace": "@x"}])
    op.on_kill()
    with pytest.raises(AirflowException, match="killed"):
        op.execute({})
    assert target.read_bytes() == data
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir() if p.is_dir())


def test_edit_logs_progress(tmp_path, capfd):
    """A long edit logs bytes and shards done, rate and time left at a steady interval."""
    target = tmp_path / "d.csv"
    target.write_bytes(sample_csv(20000))
    op = BigFileEditOperator(task_id="e", path=str(target), shard_size="4KiB", workers=1,
                             progress_interval=0,
                             edits=[{"op": "replace", "find": "@old.com", "replace": "@x"}])
    op.execute({})
    out, err = capfd.readouterr()  # the task SDK's logger writes through structlog
    lines = [line for line in (out + err).splitlines() if "Progress: " in line]
    assert len(lines) > 10
    assert "(100%)" in lines[-1] and "shards" in lines[-1] and "/s" in lines[-1]


def test_operators_only_store_arguments():
    """Construction does no I/O and no validation (that happens in execute)."""
    op = BigFilePlanOperator(task_id="p", path="/nope/x.csv", edits="{{ bad }}",
                             staging="/nope/s", conn_id="missing")
    assert op.template_fields == ("path", "edits", "staging")
    assert BigFileEditOperator.template_fields == ("path", "edits", "staging")
    assert op.conn_id == "missing"


def test_edit_reports_the_real_file_as_asset_and_lineage(tmp_path):
    """Through a symlink, the Asset event and the OpenLineage datasets name the real file."""
    from airflow.sdk.execution_time.context import OutletEventAccessors
    from airflow_bigfile.operators.assets import EDITED_FILES

    real = tmp_path / "real.csv"
    real.write_bytes(b"a;b\n" * 100)
    (tmp_path / "link.csv").symlink_to(real)
    op = BigFileEditOperator(task_id="e", path=str(tmp_path / "link.csv"),
                             edits=[{"op": "replace", "find": ";", "replace": ","}])
    assert op.outlets == [EDITED_FILES]
    events = OutletEventAccessors()
    figures = op.execute({"outlet_events": events})
    [event] = events[EDITED_FILES].asset_alias_events
    assert event.dest_asset_key.uri == f"file://{real}"
    assert event.extra == {"commit_mode": figures["commit_mode"], "size_after": 400}
    facets = op.get_openlineage_facets_on_complete(None)
    assert [(d.namespace, d.name) for d in facets.inputs + facets.outputs] == [
        ("file", str(real)), ("file", str(real))]


def test_no_asset_event_when_nothing_changed(tmp_path):
    from airflow.sdk.execution_time.context import OutletEventAccessors
    from airflow_bigfile.operators.assets import EDITED_FILES

    target = tmp_path / "d.csv"
    target.write_bytes(b"a;b\n")
    events = OutletEventAccessors()
    BigFileEditOperator(task_id="e", path=str(target), dry_run=True,
                        edits=[{"op": "replace", "find": ";", "replace": ","}]
                        ).execute({"outlet_events": events})
    assert events[EDITED_FILES].asset_alias_events == []
    assert target.read_bytes() == b"a;b\n"


def test_commit_reports_its_target_and_keeps_user_outlets(tmp_path):
    from airflow.sdk import Asset
    from airflow.sdk.execution_time.context import OutletEventAccessors
    from airflow_bigfile.operators.assets import EDITED_FILES, asset_uri, lineage

    target = tmp_path / "big.csv"
    target.write_bytes(sample_csv(3000))
    edits = [{"op": "replace", "find": "@old.com", "replace": "@new.com"}]
    _, summaries = run_fleet(target, tmp_path / "st", edits, shard_size=4096, max_batches=3)
    mine = Asset("s3://warehouse/report.parquet")
    commit = BigFileCommitOperator(task_id="c", results=summaries, outlets=[mine])
    assert commit.outlets == [mine, EDITED_FILES]
    events = OutletEventAccessors()
    commit.execute({"outlet_events": events})
    assert [e.dest_asset_key.uri for e in events[EDITED_FILES].asset_alias_events] == [
        f"file://{target}"]
    assert asset_uri("bigfile::s3://b/dir/k.csv") == "s3://b/dir/k.csv"
    s3 = lineage("s3://b/dir/k.csv")
    assert [(d.namespace, d.name) for d in s3.outputs] == [("s3://b", "dir/k.csv")]
    assert lineage(None).inputs == []


def test_plan_operator_batch_bytes(tmp_path):
    """The operator passes batch_bytes and core.max_map_length to the plan."""
    target = tmp_path / "d.csv"
    target.write_bytes(sample_csv(30000))  # ~1 MB
    edits = [{"op": "replace", "find": "user", "replace": "USER"}]
    default, _ = run_fleet(target, tmp_path / "a", edits, shard_size=4096)
    sized, summaries = run_fleet(target, tmp_path / "b", edits, shard_size=4096,
                                 batch_bytes="256KiB")
    assert len(default) == 1
    assert len(sized) == -(-target.stat().st_size // (256 * 1024))
    BigFileCommitOperator(task_id="c", results=summaries).execute({})
    assert b"user" not in target.read_bytes()


def run_fleet(target: Path, staging: Path, edits, *, shard_size, max_batches=None,
              batch_bytes=None, retry: bool = False):
    plan = render(BigFilePlanOperator(task_id="plan", path="{{ params.path }}", edits=edits,
                                      staging="{{ params.staging }}", shard_size=shard_size,
                                      max_batches=max_batches, batch_bytes=batch_bytes),
                  path=str(target), staging=str(staging))
    batches = plan.execute({})
    json.dumps(batches)
    summaries = []
    for i, batch in enumerate(batches):
        patch = BigFilePatchShardsOperator(task_id="patch", batch=batch)
        summary = patch.execute({})
        if retry:
            assert patch.execute({}) == summary, f"retry of batch {i} differs"
        summaries.append(summary)
    return batches, summaries


def test_plan_patch_commit_in_process_with_retries(tmp_path):
    data = sample_csv(20000)
    target = tmp_path / "big.csv"
    target.write_bytes(data)
    edits = [{"op": "replace", "find": "@old.com", "replace": "@new.example.com"},
             {"op": "insert", "offset": 0, "data": "# masked\n"},
             {"op": "append", "data": "end\n"}]
    batches, summaries = run_fleet(target, tmp_path / "staging", edits, shard_size=4096,
                                   max_batches=7, retry=True)
    assert 1 <= len(batches) <= 7
    assert {b["staging"] for b in batches} == {summaries[0]["staging"]}
    result = BigFileCommitOperator(task_id="commit", results=summaries).execute({})
    assert target.read_bytes() == model(data, edits)
    assert result["matches"] == data.count(b"@old.com")
    assert result["shards"] > 100


def test_retry_after_a_half_written_shard(tmp_path):
    """A worker that died mid-shard leaves a torn staged file; its retry overwrites it."""
    data = sample_csv(5000)
    target = tmp_path / "d.csv"
    target.write_bytes(data)
    edits = [{"op": "replace", "find": "@corp.co.uk", "replace": "@c.uk"}]
    batches, summaries = run_fleet(target, tmp_path / "st", edits, shard_size=4096,
                                   max_batches=4)
    shards = sorted(Path(batches[0]["staging"]).glob("shards-*.bin"))
    assert shards
    shards[0].write_bytes(shards[0].read_bytes()[:10])  # the crash
    summaries[0] = BigFilePatchShardsOperator(task_id="p", batch=batches[0]).execute({})
    BigFileCommitOperator(task_id="commit", results=summaries).execute({})
    assert target.read_bytes() == data.replace(b"@corp.co.uk", b"@c.uk")


def test_corrupt_staged_shard_fails_commit_and_leaves_target(tmp_path):
    data = sample_csv(5000)
    target = tmp_path / "d.csv"
    target.write_bytes(data)
    edits = [{"op": "replace", "find": "@old.com", "replace": "@OLD.COM"}]
    batches, summaries = run_fleet(target, tmp_path / "st", edits, shard_size=4096,
                                   max_batches=4)
    shard = sorted(Path(batches[0]["staging"]).glob("shards-*.bin"))[-1]
    raw = bytearray(shard.read_bytes())
    raw[len(raw) // 2 + 40] ^= 0x04  # one bit in the payload
    shard.write_bytes(bytes(raw))
    with pytest.raises(AirflowFailException):
        BigFileCommitOperator(task_id="commit", results=summaries).execute({})
    assert target.read_bytes() == data


def test_plan_never_exceeds_max_map_length(tmp_path, monkeypatch):
    monkeypatch.setenv("AIRFLOW__CORE__MAX_MAP_LENGTH", "5")
    data = sample_csv(4000)
    target = tmp_path / "d.csv"
    target.write_bytes(data)
    edits = [{"op": "replace", "find": "user", "replace": "USER"}]
    batches, summaries = run_fleet(target, tmp_path / "st", edits, shard_size=1024,
                                   max_batches=50)
    assert 1 <= len(batches) <= 5
    BigFileCommitOperator(task_id="c", results=summaries).execute({})
    assert target.read_bytes() == data.replace(b"user", b"USER")


def test_append_only_plan_still_has_a_batch(tmp_path):
    """Nothing to patch must not map zero tasks (that would skip the commit)."""
    target = tmp_path / "d.csv"
    target.write_bytes(b"a,b\n" * 1000)
    edits = [{"op": "append", "data": "c,d\n"}]
    batches, summaries = run_fleet(target, tmp_path / "st", edits, shard_size=1024)
    assert len(batches) == 1
    result = BigFileCommitOperator(task_id="c", results=summaries).execute({})
    assert target.read_bytes() == b"a,b\n" * 1000 + b"c,d\n"
    assert result["size_after"] == 4004


@pytest.mark.parametrize("executor", [
    pytest.param("CeleryExecutor", id="celery"),
    pytest.param("KubernetesExecutor", id="kubernetes"),
    pytest.param("LocalExecutor,airflow.providers.celery.executors.celery_executor."
                 "CeleryExecutor", id="multi-executor"),
])
def test_local_staging_refused_under_distributed_executor(tmp_path, monkeypatch, executor):
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", executor)
    target = tmp_path / "d.csv"
    target.write_bytes(b"x@old.com\n" * 10)
    op = BigFilePlanOperator(task_id="p", path=str(target), staging=str(tmp_path / "st"),
                             edits=[{"op": "replace", "find": "old", "replace": "new"}])
    with pytest.raises(AirflowException, match="local path.*shared_staging"):
        op.execute({})
    assert not (tmp_path / "st").exists()
    BigFilePlanOperator(task_id="p", path=str(target), staging="s3://bucket/st",
                        edits=[])._check_staging(str(target))  # object store: allowed
    shared = BigFilePlanOperator(task_id="p", path=str(target), staging=str(tmp_path / "st"),
                                 shared_staging=True,
                                 edits=[{"op": "replace", "find": "old", "replace": "new"}])
    assert shared.execute({})


@pytest.mark.parametrize("verify", ["fast", "full"])
def test_operators_take_the_verify_level(tmp_path, verify):
    data = sample_csv(3000)
    edits = [{"op": "replace", "find": "@old.com", "replace": "@newer.com"}]
    target = tmp_path / "data.csv"
    target.write_bytes(data)
    BigFileEditOperator(task_id="edit", path=str(target), edits=edits, shard_size="8KiB",
                        verify=verify).execute({})
    assert target.read_bytes() == model(data, edits)
    target.write_bytes(data)
    _, summaries = run_fleet(target, tmp_path / "staging", edits, shard_size=8192,
                             max_batches=3)
    BigFileCommitOperator(task_id="commit", results=summaries, verify=verify).execute({})
    assert target.read_bytes() == model(data, edits)


def test_a_bad_verify_level_fails_the_task_and_touches_nothing(tmp_path):
    data = sample_csv(300)
    target = tmp_path / "data.csv"
    target.write_bytes(data)
    with pytest.raises(AirflowFailException, match="verify must be fast or full"):
        BigFileEditOperator(task_id="edit", path=str(target), verify="most",
                            edits=[{"op": "append", "data": "x"}]).execute({})
    assert target.read_bytes() == data


def test_edit_group_builds_plan_patch_commit():
    from airflow.sdk import DAG

    with DAG("g", schedule=None) as dag:
        group = bigfile_edit_group("mask", path="/d.csv", staging="s3://b/st",
                                   edits=[{"op": "append", "data": "x"}], shard_size="1MiB",
                                   patch_kwargs={"retries": 3}, verify="full")
    assert dag.task_dict["mask.commit"].verify == "full"
    assert set(dag.task_dict) == {"mask.plan", "mask.patch", "mask.commit"}
    assert group.group_id == "mask"
    assert dag.task_dict["mask.patch"].upstream_task_ids == {"mask.plan"}
    assert dag.task_dict["mask.commit"].upstream_task_ids == {"mask.patch"}


# ---------------------------------------------------------------- hook


@pytest.mark.parametrize(("conn", "url", "expected"), [
    pytest.param({"conn_type": "aws", "login": "AKIDTEST", "password": "s3cr3t-value",
                  "extra": {"endpoint_url": "http://127.0.0.1:9000",
                            "region_name": "eu-west-1"}},
                 "s3://b/k",
                 {"key": "AKIDTEST", "secret": "s3cr3t-value",
                  "endpoint_url": "http://127.0.0.1:9000",
                  "client_kwargs": {"region_name": "eu-west-1"}}, id="aws"),
    pytest.param({"conn_type": "google_cloud_platform",
                  "extra": {"key_path": "/keys/sa.json", "project": "p1"}},
                 "gs://b/k", {"token": "/keys/sa.json", "project": "p1"}, id="gcp"),
    pytest.param({"conn_type": "fs", "extra": {"path": "/data"}}, "x.csv", {}, id="fs"),
    pytest.param({"conn_type": "bigfile",
                  "extra": {"storage_options": {"account_name": "a", "sas_token": "tok"}}},
                 "abfs://c/k", {"account_name": "a", "sas_token": "tok"}, id="generic"),
    pytest.param({"conn_type": "generic", "extra": {"anon": True}}, "s3://b/k",
                 {"anon": True}, id="generic-flat"),
    pytest.param({"conn_type": "wasb", "login": "acct", "password": "s3cr3t-key"},
                 "az://c/k", {"account_name": "acct", "account_key": "s3cr3t-key"},
                 id="wasb-key"),
    pytest.param({"conn_type": "wasb", "host": "https://acct.blob.core.windows.net",
                  "extra": {"sas_token": "sv=1&sig=s3cr3t"}},
                 "abfs://c/k", {"account_name": "acct", "sas_token": "sv=1&sig=s3cr3t"},
                 id="wasb-sas"),
    pytest.param({"conn_type": "wasb", "extra": {"connection_string": "AccountName=a;s3cr3t"}},
                 "bigfile::az://c/k", {"connection_string": "AccountName=a;s3cr3t"},
                 id="wasb-connection-string"),
    pytest.param({"conn_type": "adls", "login": "client-id", "password": "s3cr3t",
                  "extra": {"tenant_id": "t1", "account_name": "acct"}},
                 "abfss://c/k", {"account_name": "acct", "tenant_id": "t1",
                                 "client_id": "client-id", "client_secret": "s3cr3t"},
                 id="adls-service-principal"),
    pytest.param({"conn_type": "wasb", "login": "dev", "password": "s3cr3t",
                  "extra": {"blob_endpoint": "http://127.0.0.1:10000/dev"}},
                 "az://c/k", {"connection_string": "DefaultEndpointsProtocol=http;"
                              "AccountName=dev;BlobEndpoint=http://127.0.0.1:10000/dev;"
                              "AccountKey=s3cr3t;"}, id="wasb-emulator"),
])
def test_hook_storage_options(monkeypatch, conn, url, expected):
    monkeypatch.setenv("AIRFLOW_CONN_BF_TEST", json.dumps(conn))
    hook = BigFileHook("bf_test")
    assert hook.storage_options(url) == expected
    assert "s3cr3t" not in repr(hook)


def test_hook_without_connection_and_fs_base_path(monkeypatch, tmp_path):
    assert BigFileHook(None).storage_options("s3://b/k") == {}
    monkeypatch.setenv("AIRFLOW_CONN_BF_FS", json.dumps(
        {"conn_type": "fs", "extra": {"path": str(tmp_path)}}))
    (tmp_path / "a.txt").write_bytes(b"hi")
    fs, path = BigFileHook("bf_fs").get_fs("a.txt")
    assert fs.cat_file(path) == b"hi"


@pytest.mark.parametrize("auth", ["key", "sas"])
def test_wasb_connection_edits_a_blob_on_azurite(monkeypatch, azure, azurite, auth):
    """A wasb connection (account key, or a container SAS) reaches the emulator; the edit
    is a block list of server-side copies either way."""
    from datetime import datetime, timedelta, timezone

    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    from tests.azurite import AZURE_ACCOUNT, AZURE_KEY

    extra = {"blob_endpoint": f"{azurite}/{AZURE_ACCOUNT}"}
    conn = {"conn_type": "wasb", "login": AZURE_ACCOUNT, "extra": extra}
    if auth == "key":
        conn["password"] = AZURE_KEY
    else:
        extra["sas_token"] = generate_container_sas(
            AZURE_ACCOUNT, azure.container, account_key=AZURE_KEY,
            permission=ContainerSasPermissions(read=True, write=True, list=True, add=True,
                                               create=True, delete=True),
            expiry=datetime.now(timezone.utc) + timedelta(hours=1))
    monkeypatch.setenv("AIRFLOW_CONN_BF_WASB", json.dumps(conn))
    azure.fs.pipe(azure.path("d.csv"), b"id,email\n" + b"1,a@old.com\n" * 1000)
    out = BigFileEditOperator(task_id="e", path=azure.url("d.csv"), conn_id="bf_wasb",
                              edits=[{"op": "replace", "find": "@old.com",
                                      "replace": "@new.org"}]).execute({})
    assert out["commit_mode"] == "blocklist" and out["matches"] == 1000
    assert azure.fs.cat(azure.path("d.csv")) == b"id,email\n" + b"1,a@new.org\n" * 1000


def test_hook_refuses_a_connection_for_another_store(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_BF_AWS", json.dumps({"conn_type": "aws"}))
    with pytest.raises(ValueError, match="s3://"):
        BigFileHook("bf_aws").storage_options("gs://b/k")


def test_secrets_never_logged(monkeypatch, tmp_path, caplog):
    secret = "very-secret-key-123"
    monkeypatch.setenv("AIRFLOW_CONN_BF_SECRET", json.dumps(
        {"conn_type": "bigfile", "extra": {"secret": secret, "auto_mkdir": True}}))
    target = tmp_path / "d.csv"
    target.write_bytes(b"a;b\n" * 100)
    caplog.set_level("DEBUG")
    BigFileEditOperator(task_id="e", path=str(target), conn_id="bf_secret",
                        edits=[{"op": "replace", "find": ";", "replace": ","}]).execute({})
    BigFileHook("bf_secret").storage_options("memory://x")
    assert secret not in caplog.text


def test_provider_info_and_filesystems_module():
    from airflow_bigfile.hooks import filesystems

    from airflow_bigfile.provider import get_provider_info

    info = get_provider_info()
    assert info["package-name"] == "airflow-bigfile"
    assert info["filesystems"] == ["airflow_bigfile.hooks.filesystems"]
    assert filesystems.schemes == ["bigfile"]
    assert callable(filesystems.get_fs)
