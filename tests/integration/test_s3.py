"""What only S3 has (moto's server over HTTP on 127.0.0.1, s3fs as the client): a small change
moves little, a killed multipart commit leaves the original and its upload is aborted by
recovery, and the CLI takes s3:// URLs like local paths. The edits themselves, dry runs, bad
input and the three steps run on S3 in the shared suite (``test_backends.py``)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from airflow_bigfile import (
    Append,
    Patch,
    edit_file,
    recover_target,
)
from tests.backends import KILLED_EDITS, killed_edit, sample
from tests.model import apply_model

MiB = 1 << 20


def _uploads(s3) -> list:
    return s3.fs.call_s3("list_multipart_uploads", Bucket=s3.bucket).get("Uploads", [])


def test_one_byte_patch_sends_under_two_parts(s3_counted, counting_proxy) -> None:
    data = sample(64 * MiB, seed=2)
    s3_counted.fs.pipe(f"{s3_counted.bucket}/big.bin", data)
    counting_proxy.reset()
    result = edit_file(s3_counted.url("big.bin"), [Patch(40 * MiB + 1, b"!")],
                       storage_options=s3_counted.storage_options)
    sent = counting_proxy.sent
    s3_counted.fs.invalidate_cache()
    assert s3_counted.fs.cat(f"{s3_counted.bucket}/big.bin") == \
        data[:40 * MiB + 1] + b"!" + data[40 * MiB + 2:]
    assert sent < 2 * 5 * MiB, f"sent {sent} bytes for a 1-byte patch"
    assert result.bytes_written <= 5 * MiB + 1024
    print(f"1-byte patch of a 64 MiB object: {sent} bytes sent, "
          f"{counting_proxy.received} received")


def test_append_moves_no_object_bytes_up(s3_counted, counting_proxy) -> None:
    data = sample(30 * MiB, seed=3)
    s3_counted.fs.pipe(f"{s3_counted.bucket}/log.csv", data)
    counting_proxy.reset()
    rows = b"2026-11-25,new,row\n" * 500
    edit_file(s3_counted.url("log.csv"), [Append(rows)],
              storage_options=s3_counted.storage_options)
    assert counting_proxy.sent < 5 * MiB + len(rows) + 64 * 1024
    s3_counted.fs.invalidate_cache()
    assert s3_counted.fs.cat(f"{s3_counted.bucket}/log.csv") == data + rows


@pytest.mark.parametrize("point", ["parts-uploaded", "completed"])
def test_killed_multipart_commit_leaves_old_or_new(s3, point) -> None:
    data = sample(16 * MiB, seed=5)
    key = f"{s3.bucket}/obj.bin"
    s3.fs.pipe(key, data)
    proc = killed_edit(s3.url("obj.bin"), s3.storage_options, f"{point}:1")
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    s3.fs.invalidate_cache()
    content = s3.fs.cat(key)
    assert content in (data, apply_model(data, KILLED_EDITS))
    if point == "parts-uploaded":
        assert content == data
        assert len(_uploads(s3)) == 1          # the killed commit's upload is still open
    recovered = recover_target(s3.url("obj.bin"), storage_options=s3.storage_options)
    assert _uploads(s3) == []
    assert point == "completed" or not recovered.clean
    s3.fs.invalidate_cache()
    assert s3.fs.cat(key) == content
    assert s3.fs.ls(s3.bucket, detail=False) == [key]


def test_cli_on_s3_urls(s3, tmp_path) -> None:
    data = b"id,email\n" + b"".join(b"%d,user%d@old.com\n" % (i, i) for i in range(20000))
    key = f"{s3.bucket}/people.csv"
    s3.fs.pipe(key, data)
    options = []
    for name, value in s3.storage_options.items():
        options += ["--storage-option", f"{name}={value}"]
    run = subprocess.run([sys.executable, "-m", "airflow_bigfile", "replace",
                          s3.url("people.csv"), "--find", "@old.com", "--replace", "@new.org",
                          "--json", *options], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    figures = json.loads(run.stdout)
    assert figures["matches"] == 20000 and figures["commit_mode"] == "multipart"
    s3.fs.invalidate_cache()
    assert s3.fs.cat(key) == data.replace(b"@old.com", b"@new.org")
    missing = subprocess.run([sys.executable, "-m", "airflow_bigfile", "patch",
                              s3.url("nope.csv"), "--offset", "0", "--data", "x", *options],
                             capture_output=True, text=True)
    assert missing.returncode == 1
    assert missing.stderr.startswith("bigfile: error:") and missing.stderr.count("\n") == 1
