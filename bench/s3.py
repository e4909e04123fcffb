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


@contextlib.contextmanager
def _object_on_moto(object_size: int) -> Iterator[tuple[Any, str, bytes, CountingProxy,
                                                         dict[str, str]]]:
    """A moto server with one dense CSV object of ``object_size`` bytes behind a fresh
    counting proxy: yields the s3fs filesystem, the object's key, its bytes, the proxy and
    the environment for a measured command. The bucket and the servers go at the end."""
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
            proxy.reset()
            yield fs, key, body, proxy, env
            fs.invalidate_cache()
            fs.rm(S3_BUCKET, recursive=True)
        finally:
            proxy.stop()
            server.stop()


def s3_patch(bigfile: list[str], object_size: int, scratch: Path) -> dict[str, Any]:
    """``bigfile patch`` of one byte in the middle of an ``object_size`` object: bytes sent
    and received, requests, time, peak RSS, and whether the object came out as expected."""
    log(f"S3: moto server, 1-byte patch of a {human(object_size)} object")
    with _object_on_moto(object_size) as (fs, key, body, proxy, env):
        offset = object_size // 2 + 12345
        cmd = [*bigfile, "patch", f"s3://{key}", "--offset", str(offset), "--hex", "5a",
               "--storage-option", f"endpoint_url={proxy.endpoint_url}", "--json",
               "--no-progress"]
        run = run_proc(cmd, env=env, scratch=scratch)
        if run.code != 0:
            raise SystemExit(f"S3 patch failed: {run.stderr}")
        sent, received, requests = proxy.sent_headers, proxy.received, len(proxy.requests())
        fs.invalidate_cache()
        same = fs.cat_file(key) == body[:offset] + b"\x5a" + body[offset + 1:]
    info = json.loads(run.stdout.strip().splitlines()[-1])
    log(f"S3: sent {sent} bytes ({sent / object_size:.1%} of the object), "
        f"received {received}, identical={same}")
    return {"object_size": object_size, "sent": sent, "received": received,
            "requests": requests, "seconds": run.seconds, "rss": run.rss, "identical": same,
            "commit_mode": info.get("commit_mode"), "bytes_written": info.get("bytes_written")}


def s3_bytes_moved(object_size: int, verify: str = "fast") -> dict[str, Any]:
    """A dense same-length replace of an ``object_size`` object by workers elsewhere
    (``plan_edit`` -> ``patch_batch`` per batch -> ``commit_edit``, staging on the same
    store), run in this process through the counting proxy. Each exchange is classed by the
    key it names: the object's bytes fetched and the new object's parts uploaded; staged
    bytes written (by the workers) and read (by the commit). Figures per byte of the file;
    the goal is 1 each (``verify="full"`` reads the object and the staged bytes twice)."""
    log(f"S3: bytes moved per byte of a {human(object_size)} object, plan/patch/commit, "
        f"verify {verify}")
    from airflow_bigfile import Replace, commit_edit, patch_batch, plan_edit

    with _object_on_moto(object_size) as (fs, key, body, proxy, _):
        options = {"endpoint_url": proxy.endpoint_url}
        planned = plan_edit(f"s3://{key}", [Replace(b"@old.com", b"@new.org")],
                            staging=f"s3://{S3_BUCKET}/staging", storage_options=options,
                            staging_options=options, shard_size="8MiB", verify=verify)
        summaries = [patch_batch(b, storage_options=options, staging_options=options)
                     for b in planned.batches]
        commit_started = len(proxy.requests())
        commit_edit(planned.staging, batches=summaries, storage_options=options,
                    staging_options=options, verify=verify)
        exchanges = proxy.requests()
        fs.invalidate_cache()
        same = fs.cat_file(key) == body.replace(b"@old.com", b"@new.org")
    obj, staged = f"/{key}", f"/{S3_BUCKET}/staging/"
    moved = {"fetched": sum(e.received for e in exchanges if e.path.startswith(obj)),
             "uploaded": sum(e.sent for e in exchanges if e.path.startswith(obj)),
             "staged_written": sum(e.sent for e in exchanges if e.path.startswith(staged)),
             "staged_read": sum(e.received for e in exchanges[commit_started:]
                                if e.path.startswith(staged))}
    figures = {name: value / object_size for name, value in moved.items()}
    log("S3 bytes moved per byte of the object: " + ", ".join(
        f"{name} {value:.2f}" for name, value in figures.items()) + f"; identical={same}")
    return {"object_size": object_size, "verify": verify, "per_byte": figures,
            "identical": same}
