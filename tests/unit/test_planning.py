"""Planning without a file: shard boundaries (aligned, record-aligned, down to 1-byte shards),
the small windows around offset edits, which shards a worker must read (edits at shard
edges and at the ends of the file), and how a target's defaults resolve a job's shard size
and alignment."""

from __future__ import annotations

import uuid

import pytest
from fsspec.implementations.memory import MemoryFileSystem
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_bigfile.edits import Append, Delete, Insert, Patch, Replace, Truncate, check_offsets
from airflow_bigfile.exceptions import EditError
from airflow_bigfile.io.storage import Source
from airflow_bigfile.plan.manifest import boundaries, edit_windows, touched
from airflow_bigfile.settings import DEFAULT_ALIGN, MIN_SPREAD_SHARD, Settings, default_align

MiB = 1 << 20
GiB = 1 << 30


# -- boundaries -----------------------------------------------------------------------------

@pytest.mark.parametrize(("size", "shard", "align", "starts"), [
    pytest.param(0, 4, 1, [], id="empty-file"),
    pytest.param(5, 1, 1, [0, 1, 2, 3, 4], id="shard-size-1"),
    pytest.param(10, 4, 1, [0, 4, 8], id="short-last-shard"),
    pytest.param(12, 4, 1, [0, 4, 8], id="exact-multiple"),
    pytest.param(10, 100, 1, [0], id="one-shard"),
    pytest.param(20, 5, 4, [0, 8, 16], id="shard-rounded-up-to-align"),
    pytest.param(20, 3, 8, [0, 8, 16], id="align-larger-than-shard"),
    pytest.param(8, 4, 4, [0, 4], id="boundary-at-last-byte-start"),
])
def test_boundaries(size: int, shard: int, align: int, starts: list[int]) -> None:
    assert boundaries(size, shard, align) == starts


@settings(max_examples=200, deadline=None)
@given(size=st.integers(0, 5000), shard=st.integers(1, 700), align=st.integers(1, 64))
def test_boundaries_cover_the_file_in_aligned_steps(size: int, shard: int, align: int) -> None:
    starts = boundaries(size, shard, align)
    step = max(align, -(-shard // align) * align)
    assert starts == list(range(0, size, step))
    assert all(start % align == 0 for start in starts)
    ends = [*starts[1:], size][:len(starts)]
    assert sum(end - start for start, end in zip(starts, ends, strict=True)) == size


@settings(max_examples=300, deadline=None)
@given(size=st.integers(0, 20000), shard=st.integers(1, 3000), align=st.integers(1, 64),
       workers=st.integers(2, 8))
def test_tapered_boundaries_shrink_toward_the_end(size: int, shard: int, align: int,
                                                  workers: int) -> None:
    """Shards for ``workers`` taken in file order: aligned, covering the file, none over the
    shard size, each no longer than the one before (the file's last remainder aside) and
    none but that remainder under an eighth of the shard size."""
    starts = boundaries(size, shard, align, taper=workers)
    step = max(align, -(-shard // align) * align)
    floor = max(align, step // 8 // align * align)
    assert starts == sorted(set(starts))
    assert all(start % align == 0 for start in starts)
    ends = [*starts[1:], size][:len(starts)]
    lengths = [end - start for start, end in zip(starts, ends, strict=True)]
    assert sum(lengths) == size
    assert all(length <= step for length in lengths)
    assert all(a >= b for a, b in zip(lengths[:-2], lengths[1:-1], strict=True))
    assert all(length >= floor for length in lengths[:-1])


def test_a_tapered_file_ends_in_short_shards() -> None:
    """256 MiB on two workers: 32 MiB shards while much is left, then shorter ones, so the
    last shard either worker takes is a few MiB, not 32."""
    starts = boundaries(256 * MiB, 32 * MiB, DEFAULT_ALIGN, taper=2)
    lengths = [end - start for start, end in zip(starts, [*starts[1:], 256 * MiB],
                                                  strict=True)]
    assert lengths[:5] == [32 * MiB] * 5
    assert max(lengths[-4:]) == 4 * MiB
    assert boundaries(256 * MiB, 32 * MiB, DEFAULT_ALIGN, taper=1) == list(
        range(0, 256 * MiB, 32 * MiB))


RECORDS = b"".join(b"%d,%s\n" % (i, b"x" * (i % 97)) for i in range(3000))  # ~150 KB


@pytest.fixture
def source() -> Source:
    """Records of varying length in fsspec's memory filesystem."""
    fs = MemoryFileSystem()
    path = f"/plan-{uuid.uuid4().hex}/records.csv"
    fs.pipe_file(path, RECORDS)
    return Source(fs, path)


def record_starts(data: bytes, step: int) -> list[int]:
    """The reference: each multiple of ``step`` moved just past the first newline at or
    after it (``bytes.find`` on the whole file, no chunks)."""
    starts = [0]
    for offset in range(step, len(data), step):
        hit = data.find(b"\n", offset)
        start = len(data) if hit < 0 else hit + 1
        if starts[-1] < start < len(data):
            starts.append(start)
    return starts


@pytest.mark.parametrize("shard", [37, 4096, (64 << 10) + 3])
def test_record_aligned_boundaries(source: Source, shard: int) -> None:
    """With a delimiter every shard starts just after one (like fsspec's read_block), also
    where the search crosses the reader's 64 KiB chunks."""
    starts = boundaries(len(RECORDS), shard, 1, source, b"\n")
    assert starts == record_starts(RECORDS, shard)
    assert all(RECORDS[start - 1:start] == b"\n" for start in starts[1:])


@pytest.mark.parametrize("shard", [37, 4096])
def test_tapered_boundaries_start_after_a_delimiter(source: Source, shard: int) -> None:
    starts = boundaries(len(RECORDS), shard, 1, source, b"\n", taper=2)
    assert len(starts) > 1
    assert starts == sorted(set(starts))
    assert all(RECORDS[start - 1:start] == b"\n" for start in starts[1:])


def test_a_delimiter_never_found_makes_one_shard(source: Source) -> None:
    assert boundaries(len(RECORDS), 4096, 1, source, b"@") == [0]


# -- which shards a worker reads ----------------------------------------------------------

STARTS = [0, 10, 20, 30]      # four shards of a 40-byte file


@pytest.mark.parametrize(("edits", "shards"), [
    pytest.param([Patch(0, b"x")], {0}, id="first-byte"),
    pytest.param([Patch(39, b"x")], {3}, id="last-byte"),
    pytest.param([Patch(9, b"xy")], {0, 1}, id="across-an-edge"),
    pytest.param([Patch(10, b"x")], {1}, id="at-a-shard-start"),
    pytest.param([Patch(8, b"xy")], {0}, id="ends-at-an-edge"),
    pytest.param([Delete(5, 30)], {0, 1, 2, 3}, id="spanning-shards"),
    pytest.param([Insert(10, b"x")], {1}, id="insert-at-an-edge"),
    pytest.param([Insert(0, b"x")], {0}, id="insert-at-start"),
    pytest.param([Insert(40, b"x"), Append(b"y")], set(), id="insert-at-end-and-append"),
    pytest.param([Truncate(25)], {2, 3}, id="truncate-cuts-the-tail"),
    pytest.param([Truncate(40)], set(), id="truncate-to-the-size"),
    pytest.param([Replace(b"a", b"b")], {0, 1, 2, 3}, id="a-replace-reads-all"),
])
def test_touched_shards(edits: list, shards: set[int]) -> None:
    assert touched(check_offsets(edits, 40), STARTS) == shards


def test_edit_windows_read_kilobytes_around_scattered_patches() -> None:
    size = 100 * MiB
    edits = [Patch(0, b"a"), Patch(50 * MiB + 3, b"bb"), Patch(size - 1, b"z")]
    starts = edit_windows(check_offsets(edits, size), 64 * MiB, 4096)
    assert starts[0] == 0 and starts == sorted(set(starts)) and starts[-1] < size
    assert all(start % 4096 == 0 for start in starts)
    read = touched(check_offsets(edits, size), starts)
    ends = [*starts[1:], size]
    assert sum(ends[i] - starts[i] for i in read) <= 3 * 4096
    for edit in edits:
        shard = max(i for i, start in enumerate(starts) if start <= edit.offset)
        assert shard in read and edit.offset + len(edit.data) <= ends[shard]


def test_edit_windows_merge_near_edits_and_split_long_windows() -> None:
    near = [Patch(100, b"a"), Patch(60_000, b"b")]        # closer than the 64 KiB gap
    assert edit_windows(check_offsets(near, MiB), 64 * MiB, 4096) == [0, 61440]
    long = [Delete(0, 3 * 4096)]                          # a window split at shard_size
    assert edit_windows(check_offsets(long, MiB), 4096, 4096) == [0, 4096, 8192, 12288]


# -- shard size and alignment for a target --------------------------------------------------

@pytest.mark.parametrize(("shard", "align"), [
    (1, 1), (6, 2), (4096, 4096), (64 * MiB, DEFAULT_ALIGN), (3 * 4096 + 512, 512)])
def test_default_align_honours_the_shard_size(shard: int, align: int) -> None:
    assert default_align(shard) == align
    assert shard % default_align(shard) == 0


def test_a_chosen_shard_size_is_kept() -> None:
    chosen = Settings.parse(shard_size="7").for_target(64 * MiB, size=10 * MiB, workers=8)
    assert (chosen.shard_size, chosen.align, chosen.taper) == (7, 1, 1)
    assert Settings.parse(shard_size=1, align=1).for_target(64 * MiB).shard_size == 1


def test_the_default_shard_spreads_over_the_workers() -> None:
    default = Settings.parse()
    assert default.for_target(64 * MiB).shard_size == 64 * MiB
    assert default.for_target(64 * MiB, size=16 * MiB, workers=2).shard_size == 2 * MiB
    assert default.for_target(64 * MiB, size=MiB, workers=8).shard_size == MIN_SPREAD_SHARD
    assert default.for_target(16 * MiB, size=10**12, workers=4).shard_size == 16 * MiB
    assert default.for_target(64 * MiB, size=16 * MiB, workers=2).align == DEFAULT_ALIGN


def test_the_default_layout_tapers_for_the_workers() -> None:
    default = Settings.parse()
    assert default.for_target(64 * MiB, size=GiB, workers=3).taper == 3
    assert default.for_target(64 * MiB, size=GiB, workers=1).taper == 1
    assert default.for_target(64 * MiB).taper == 1


@pytest.mark.parametrize("bad", [
    {"shard_size": 0}, {"shard_size": "0MiB"}, {"shard_size": "big"}, {"align": 0},
    {"align": True}, {"delimiter": ""}, {"block_size": 0}])
def test_bad_settings_are_refused(bad: dict) -> None:
    with pytest.raises(EditError, match=next(iter(bad))):
        Settings.parse(**bad)
