"""How many batches a plan makes: the rule of :mod:`airflow_bigfile.plan.batching`, and
:func:`plan_edit` following it on real files."""

from __future__ import annotations

import pytest

from airflow_bigfile import Replace, plan_edit
from airflow_bigfile.exceptions import EditError
from airflow_bigfile.plan.batching import DEFAULT_BATCH_BYTES, batch_count

MiB = 2**20


@pytest.mark.parametrize(("args", "expected"), [
    pytest.param((8 * MiB, 2048), 1, id="8MB-4KiB-shards-one-batch"),
    pytest.param((DEFAULT_BATCH_BYTES, 10), 1, id="exactly-one-batch-of-bytes"),
    pytest.param((DEFAULT_BATCH_BYTES + 1, 10), 2, id="one-byte-more"),
    pytest.param((10**13, 10**6), 1024, id="10TB-capped-at-ceiling"),
    pytest.param((0, 0), 1, id="nothing-to-patch-still-one"),
])
def test_default_rule(args, expected):
    assert batch_count(*args) == expected


@pytest.mark.parametrize(("kwargs", "expected"), [
    pytest.param({"batch_bytes": "1MiB"}, 8, id="batch-bytes"),
    pytest.param({"batch_bytes": 3 * MiB}, 3, id="batch-bytes-int"),
    pytest.param({"max_batches": 16}, 16, id="max-batches-alone-is-the-count"),
    pytest.param({"max_batches": 5000}, 1024, id="max-batches-above-ceiling"),
    pytest.param({"max_batches": 16, "ceiling": 4}, 4, id="ceiling-wins"),
    pytest.param({"max_batches": 3, "batch_bytes": "1MiB"}, 3, id="both-max-caps"),
    pytest.param({"max_batches": 30, "batch_bytes": "1MiB"}, 8, id="both-bytes-decide"),
    pytest.param({"batch_bytes": 1}, 1024, id="tiny-batches-capped"),
])
def test_overrides(kwargs, expected):
    assert batch_count(8 * MiB, 2048, **kwargs) == expected


def test_never_more_batches_than_shards():
    assert batch_count(8 * MiB, 3, max_batches=16) == 3
    assert batch_count(8 * MiB, 3, batch_bytes=1) == 3


@pytest.mark.parametrize("kwargs", [
    pytest.param({"max_batches": 0}, id="max-zero"),
    pytest.param({"max_batches": True}, id="max-bool"),
    pytest.param({"max_batches": "8"}, id="max-str"),
    pytest.param({"batch_bytes": 0}, id="bytes-zero"),
    pytest.param({"batch_bytes": "lots"}, id="bytes-text"),
    pytest.param({"ceiling": 0}, id="ceiling-zero"),
])
def test_bad_overrides_are_edit_errors(kwargs):
    with pytest.raises(EditError, match="max_batches|batch_bytes|ceiling"):
        batch_count(8 * MiB, 2048, **kwargs)


def test_plan_edit_groups_shards_by_bytes(tmp_path):
    target = tmp_path / "d.csv"
    data = b"0123456789abcdef" * (MiB // 4)  # 4 MiB
    target.write_bytes(data)
    staging = tmp_path / "st"
    staging.mkdir()
    edits = [Replace(b"abc", b"ABC")]
    default = plan_edit(str(target), edits, staging=str(staging), shard_size="4KiB")
    assert (default.shards, len(default.batches)) == (1024, 1)
    assert (default.batches[0]["first"], default.batches[0]["last"]) == (0, 1023)
    sized = plan_edit(str(target), edits, staging=str(staging), shard_size="4KiB",
                      batch_bytes="1MiB")
    assert [(b["first"], b["last"]) for b in sized.batches] == [
        (0, 255), (256, 511), (512, 767), (768, 1023)]
    capped = plan_edit(str(target), edits, staging=str(staging), shard_size="4KiB",
                       batch_bytes="1MiB", batch_limit=3)
    assert len(capped.batches) == 3
    assert target.read_bytes() == data


def test_plan_edit_refuses_bad_batching_before_any_io(tmp_path):
    target = tmp_path / "d.csv"
    target.write_bytes(b"abc\n" * 100)
    with pytest.raises(EditError, match="batch_bytes"):
        plan_edit(str(target), [Replace(b"a", b"b")], staging=str(tmp_path / "nope"),
                  batch_bytes=-5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.csv"]
