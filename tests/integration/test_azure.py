"""The engine on Azure Blob Storage (Azurite over HTTP on 127.0.0.1, adlfs as the client):
results equal the in-memory model, a small change sends little (headers included), a blob
changed by another writer before the commit is refused by the store's If-Match, a killed
commit leaves the old blob or the new one, and the CLI takes az:// and abfs:// URLs."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

from airflow_bigfile import (
    Append,
    Delete,
    Patch,
    Replace,
    SourceChangedError,
    edit_file,
)
from airflow_bigfile.targets.azure import MAX_BLOCKS, MAX_COPY, MIN_COPY, copy_block_size
from tests.backends import KILLED_EDITS, killed_edit, sample
from tests.model import apply_model

MiB = 1 << 20


def _blocks(azure, key: str, kind: str = "committed") -> list:
    committed, uncommitted = azure.blob(key).get_block_list("all")
    return committed if kind == "committed" else uncommitted


@pytest.mark.parametrize("edits", [
    pytest.param([Replace(b"a\n", b"[a]\n")], id="replace-grows"),
    pytest.param([Delete(0, 12 * MiB)], id="empty-result"),
])
def test_blocklist_commit_leaves_no_uncommitted_blocks(azure, edits) -> None:
    """Beside the shared suite (test_backends.py): a 12 MiB blob in 6 MiB shards, and an
    edit that leaves it empty (a block list of no blocks)."""
    data = sample(12 * MiB)
    azure.fs.pipe(azure.path("obj.csv"), data)
    result = edit_file(azure.url("obj.csv"), edits, storage_options=azure.storage_options,
                       shard_size="6MiB", workers=2)
    expected = apply_model(data, edits)
    assert azure.fs.cat(azure.path("obj.csv")) == expected
    assert result.size_after == len(expected) and result.commit_mode == "blocklist"
    assert azure.fs.ls(azure.container, detail=False) == [azure.path("obj.csv")]
    assert _blocks(azure, "obj.csv", "uncommitted") == []


def test_abfs_url_and_properties_kept(azure) -> None:
    """abfs:// reaches the same target; the blob's content type and metadata survive."""
    from azure.storage.blob import ContentSettings

    blob = azure.blob("people.csv")
    blob.upload_blob(b"id,email\n1,a@old.com\n", content_settings=ContentSettings(
        content_type="text/csv"), metadata={"owner": "data-team"})
    result = edit_file(f"abfs://{azure.container}/people.csv",
                       [Replace(b"@old.com", b"@new.org")],
                       storage_options=azure.storage_options)
    assert result.commit_mode == "blocklist" and result.matches == 1
    props = blob.get_blob_properties()
    assert blob.download_blob().readall() == b"id,email\n1,a@new.org\n"
    assert props.content_settings.content_type == "text/csv"
    assert props.metadata == {"owner": "data-team"}


def test_one_byte_patch_sends_under_64_kib(azure_counted, azure_proxy) -> None:
    data = sample(64 * MiB, seed=2)
    azure_counted.fs.pipe(azure_counted.path("big.bin"), data)
    azure_proxy.reset()
    result = edit_file(azure_counted.url("big.bin"), [Patch(40 * MiB + 1, b"!")],
                       storage_options=azure_counted.storage_options)
    sent = azure_proxy.sent_headers
    assert azure_counted.fs.cat(azure_counted.path("big.bin")) == \
        data[:40 * MiB + 1] + b"!" + data[40 * MiB + 2:]
    assert sent < 64 * 1024, f"sent {sent} bytes (headers included) for a 1-byte patch"
    assert result.bytes_written < 8192
    print(f"1-byte patch of a 64 MiB blob: {sent} bytes sent (headers included), "
          f"{azure_proxy.received} received")
    assert len(_blocks(azure_counted, "big.bin")) == 3


def test_append_of_one_mib_sends_under_1_1_mib(azure_counted, azure_proxy) -> None:
    data = sample(30 * MiB, seed=3)
    azure_counted.fs.pipe(azure_counted.path("log.csv"), data)
    rows = (b"2026-11-25,new,row\n" * 60000)[:MiB]
    azure_proxy.reset()
    edit_file(azure_counted.url("log.csv"), [Append(rows)],
              storage_options=azure_counted.storage_options)
    assert azure_proxy.sent_headers < 1.1 * MiB, azure_proxy.requests()
    assert azure_proxy.received < 64 * 1024, "the append read the blob"
    assert azure_counted.fs.cat(azure_counted.path("log.csv")) == data + rows


def test_short_unchanged_runs_are_resent_not_copied(azure) -> None:
    """Matches closer than MIN_COPY leave runs too short to be worth a copy request: the
    block count stays far below one block per run."""
    data = b"".join(b"%07d,x\n" % i for i in range(200_000))   # 1.8 MB, a match per 9 bytes
    azure.fs.pipe(azure.path("dense.csv"), data)
    edit_file(azure.url("dense.csv"), [Replace(b",x\n", b",yy\n")],
              storage_options=azure.storage_options)
    assert azure.fs.cat(azure.path("dense.csv")) == data.replace(b",x\n", b",yy\n")
    assert len(_blocks(azure, "dense.csv")) <= 2


@pytest.mark.parametrize("size", [0, 64 * MiB, 50 << 30, 4 << 40])
def test_block_count_stays_within_the_limit(size) -> None:
    """Copies of at least copy_block_size bytes, the data blocks between them and the
    splits of long copies fit in MAX_BLOCKS whatever the blob's size."""
    least = copy_block_size(size)
    assert least >= MIN_COPY
    worst = 3 * size // least + size // MAX_COPY + 2
    assert worst <= MAX_BLOCKS


def _overwrite_on_signal(azure, key: str, other: bytes) -> None:
    def handler(signum, frame) -> None:
        azure.blob(key).upload_blob(other, overwrite=True)

    signal.signal(signal.SIGUSR1, handler)


def test_writer_between_blocks_and_commit_refused_by_if_match(azure, monkeypatch) -> None:
    """Another writer replaces the blob after bigfile's own checks, right before the block
    list: the store refuses the commit (412) and keeps the other writer's blob."""
    data = sample(8 * MiB, seed=4)
    azure.fs.pipe(azure.path("obj.bin"), data)
    other = b"another writer's content"
    old = signal.getsignal(signal.SIGUSR1)
    _overwrite_on_signal(azure, "obj.bin", other)
    monkeypatch.setenv("BIGFILE_CRASH", "parts-uploaded:1:SIGUSR1")
    try:
        with pytest.raises(SourceChangedError, match="refused the commit"):
            edit_file(azure.url("obj.bin"), [Patch(5, b"x")],
                      storage_options=azure.storage_options)
    finally:
        signal.signal(signal.SIGUSR1, old)
    assert azure.fs.cat(azure.path("obj.bin")) == other


@pytest.mark.parametrize("point", ["block-staged:2", "parts-uploaded:1", "completed:1"])
def test_killed_commit_then_recover_leaves_old_or_new(azure, point) -> None:
    """SIGKILL while blocks are staged, once all are, and right after the block list; then
    ``bigfile recover``: the blob is the old one or the new one."""
    from airflow_bigfile.cli import main

    data = sample(12 * MiB, seed=5)
    key = azure.path("obj.bin")
    azure.fs.pipe(key, data)
    proc = killed_edit(azure.url("obj.bin"), azure.storage_options, point)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    new = apply_model(data, KILLED_EDITS)
    content = azure.fs.cat(key)
    assert content == (new if point == "completed:1" else data)
    if point != "completed:1":
        assert _blocks(azure, "obj.bin", "uncommitted")   # staged, never part of the blob
    option = f"connection_string={azure.storage_options['connection_string']}"
    assert main(["recover", azure.url("obj.bin"), "--storage-option", option]) == 0
    assert azure.fs.cat(key) == content
    assert azure.fs.ls(azure.container, detail=False) == [key]
    edit_file(azure.url("obj.bin"), [Append(b"!")], storage_options=azure.storage_options)
    assert azure.fs.cat(key) == content + b"!"
    assert _blocks(azure, "obj.bin", "uncommitted") == []   # the next commit drops them


def test_cli_on_az_urls(azure) -> None:
    data = b"id,email\n" + b"".join(b"%d,user%d@old.com\n" % (i, i) for i in range(20000))
    key = azure.path("people.csv")
    azure.fs.pipe(key, data)
    options = [f"--storage-option=connection_string={azure.storage_options['connection_string']}"]
    run = subprocess.run([sys.executable, "-m", "airflow_bigfile", "replace",
                          azure.url("people.csv"), "--find", "@old.com", "--replace",
                          "@new.org", "--json", *options], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    figures = json.loads(run.stdout)
    assert figures["matches"] == 20000 and figures["commit_mode"] == "blocklist"
    assert azure.fs.cat(key) == data.replace(b"@old.com", b"@new.org")
    for url in (azure.url("nope.csv"), f"az://no-such-container-{azure.container}/a.csv"):
        missing = subprocess.run([sys.executable, "-m", "airflow_bigfile", "truncate", url,
                                  "--size", "1", *options], capture_output=True, text=True)
        assert missing.returncode == 1, missing.stderr
        assert missing.stderr.startswith("bigfile: error:"), missing.stderr
        assert missing.stderr.count("\n") == 1, missing.stderr
    assert azure.fs.cat(key) == data.replace(b"@old.com", b"@new.org")
