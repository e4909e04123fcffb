"""Shard tasks on a Dask LocalCluster give the same bytes as the thread pool."""

from __future__ import annotations

import random

import distributed
import pytest

from airflow_bigfile import Insert, Patch, Replace, edit_file


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None)
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()


def _data(n: int, seed: int) -> bytes:
    rng = random.Random(seed)
    return bytes(rng.choice(b"ab\n") for _ in range(n))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_dask_client_matches_model(tmp_path, client, seed: int) -> None:
    data = _data(20_000, seed) + b"#"  # the last byte is never part of a match
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    edits = [Replace(b"aba", b"X"), Insert(0, b"HEAD"), Patch(len(data) - 1, b"!")]
    result = edit_file(str(path), edits, executor="dask", client=client, shard_size=997)
    assert path.read_bytes() == b"HEAD" + data[:-1].replace(b"aba", b"X") + b"!"
    assert result.matches == data.count(b"aba")  # non-overlapping, as replace counts
    assert result.shards == -(-len(data) // 997)


def test_dask_regex_with_scheduler_address(tmp_path, client) -> None:
    data = b"".join(b"%d,user%d@old.com\n" % (i, i) for i in range(5000))
    path = tmp_path / "emails.csv"
    path.write_bytes(data)
    edit_file(str(path), [Replace(rb"user(\d+)@old\.com", rb"u\1@new.org", regex=True)],
              executor="dask", scheduler=client.scheduler.address, shard_size="4KiB",
              delimiter=b"\n")
    import re

    assert path.read_bytes() == re.sub(rb"user(\d+)@old\.com", rb"u\1@new.org", data)
