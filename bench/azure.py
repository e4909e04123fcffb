"""The Azure Blob benchmark: a 1-byte patch and a 1 MiB append of a blob on Azurite, with
the bytes that cross the network counted by the tests' HTTP proxy (``tests/proxy.py``): sent
counts request lines, headers and bodies, received counts response bodies."""

from __future__ import annotations

import json
import random
import tempfile
from pathlib import Path
from typing import Any

from bench.common import human, log
from bench.data import DENSE_BLOCK_LINES, make_block, remove
from bench.launcher import run_proc
from tests.azurite import azure_connection_string, start_azurite
from tests.proxy import CountingProxy

AZURE_CONTAINER = "bigfile-bench"
APPEND_SIZE = 1 << 20


def azure_edits(bigfile: list[str], object_size: int, scratch: Path) -> dict[str, Any]:
    """``bigfile patch`` of one byte, then ``bigfile append`` of :data:`APPEND_SIZE` bytes,
    on an ``object_size`` blob: per edit, bytes sent and received, requests, time, peak RSS
    and whether the blob came out as expected."""
    from azure.storage.blob import BlobServiceClient

    log(f"Azure: Azurite, 1-byte patch and {human(APPEND_SIZE)} append of a "
        f"{human(object_size)} blob")
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as home:
        try:
            server, endpoint = start_azurite(Path(home))
        except RuntimeError as exc:
            raise SystemExit(str(exc)) from exc
        proxy = CountingProxy(endpoint).start()
        try:
            container = BlobServiceClient.from_connection_string(
                azure_connection_string(endpoint)).create_container(AZURE_CONTAINER)
            blob = container.get_blob_client("object.csv")
            block = make_block(DENSE_BLOCK_LINES, sparse=False)
            expected = (block * (object_size // len(block) + 1))[:object_size]
            blob.upload_blob(expected)
            offset = object_size // 2 + 12345
            appended = random.Random(1).randbytes(APPEND_SIZE)
            data = scratch / "append.bin"
            data.write_bytes(appended)
            option = ["--storage-option",
                      f"connection_string={azure_connection_string(proxy.endpoint_url)}"]
            url = f"az://{AZURE_CONTAINER}/object.csv"
            for edit, args, expect in (
                    ("patch", ["--offset", str(offset), "--hex", "5a"],
                     lambda b: b[:offset] + b"\x5a" + b[offset + 1:]),
                    ("append", ["--data-file", str(data)], lambda b: b + appended)):
                proxy.reset()
                run = run_proc([*bigfile, edit, url, *args, *option, "--json", "--no-progress"],
                               scratch=scratch)
                if run.code != 0:
                    raise SystemExit(f"Azure {edit} failed: {run.stderr}")
                expected = expect(expected)
                info = json.loads(run.stdout.strip().splitlines()[-1])
                figures[edit] = {
                    "object_size": object_size, "sent": proxy.sent_headers,
                    "received": proxy.received, "requests": len(proxy.requests()),
                    "seconds": run.seconds, "rss": run.rss,
                    "identical": blob.download_blob().readall() == expected,
                    "commit_mode": info.get("commit_mode"),
                    "bytes_written": info.get("bytes_written")}
                log(f"Azure {edit}: sent {figures[edit]['sent']} bytes, received "
                    f"{proxy.received}, identical={figures[edit]['identical']}")
            remove(data)
            container.delete_container()
        finally:
            proxy.stop()
            server.kill()
            server.wait()
    return figures
