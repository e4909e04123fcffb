"""The S3 benchmark: a 1-byte patch of an object on moto's server, with the bytes that
cross the network counted by the tests' HTTP proxy (``tests/proxy.py``): sent counts request
lines, headers and bodies, received counts response bodies."""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.common import human, log
from bench.data import DENSE_BLOCK_LINES, make_block
from bench.launcher import run_proc
from tests.proxy import CountingProxy

S3_BUCKET = "bigfile-bench"
_AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SECURITY_TOKEN": "testing", "AWS_SESSION_TOKEN": "testing"}
_AWS_UNSET = ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3")


@contextlib.contextmanager
def _fake_credentials() -> Iterator[dict[str, str]]:
    """Test credentials in this process's environment; yields the environment for the
    measured command."""
    saved = dict(os.environ)
    os.environ.update(_AWS)
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    for key in _AWS_UNSET:
        os.environ.pop(key, None)
    try:
        yield dict(os.environ)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def s3_patch(bigfile: list[str], object_size: int, scratch: Path) -> dict[str, Any]:
    """``bigfile patch`` of one byte in the middle of an ``object_size`` object: bytes sent
    and received, requests, time, peak RSS, and whether the object came out as expected."""
    log(f"S3: moto server, 1-byte patch of a {human(object_size)} object")
    import s3fs
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    with _fake_credentials() as env:
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        proxy = CountingProxy(f"http://{host}:{port}").start()
        try:
            fs = s3fs.S3FileSystem(endpoint_url=f"http://{host}:{port}", key="testing",
                                   secret="testing")
            with contextlib.suppress(FileExistsError):
                fs.mkdir(S3_BUCKET)
            block = make_block(DENSE_BLOCK_LINES, sparse=False)
            body = (block * (object_size // len(block) + 1))[:object_size]
            key = f"{S3_BUCKET}/object.csv"
            fs.pipe_file(key, body)
            offset = object_size // 2 + 12345
            proxy.reset()
            cmd = [*bigfile, "patch", f"s3://{key}", "--offset", str(offset), "--hex", "5a",
                   "--storage-option", f"endpoint_url={proxy.endpoint_url}", "--json",
                   "--no-progress"]
            run = run_proc(cmd, env=env, scratch=scratch)
            if run.code != 0:
                raise SystemExit(f"S3 patch failed: {run.stderr}")
            sent, received, requests = proxy.sent_headers, proxy.received, len(proxy.requests())
            fs.invalidate_cache()
            same = fs.cat_file(key) == body[:offset] + b"\x5a" + body[offset + 1:]
            fs.rm(S3_BUCKET, recursive=True)
        finally:
            proxy.stop()
            server.stop()
    info = json.loads(run.stdout.strip().splitlines()[-1])
    log(f"S3: sent {sent} bytes ({sent / object_size:.1%} of the object), "
        f"received {received}, identical={same}")
    return {"object_size": object_size, "sent": sent, "received": received,
            "requests": requests, "seconds": run.seconds, "rss": run.rss, "identical": same,
            "commit_mode": info.get("commit_mode"), "bytes_written": info.get("bytes_written")}
