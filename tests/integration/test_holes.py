"""Sparse files keep their holes through a rewrite: unchanged runs are copied data run by data
run (SEEK_DATA/SEEK_HOLE), since ``copy_file_range`` writes holes out as zeros."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from airflow_bigfile import Delete, Insert, Patch, Replace, edit_file
from airflow_bigfile.io.oscompat import data_runs, has_holes, write_sparse

MiB = 1 << 20
SIZE = 64 * MiB
DATA_AT = (0, 20 * MiB + 123, 41 * MiB, SIZE - 3 * MiB)  # 1 MiB of data at each


def _sparse(tmp_path: Path) -> tuple[Path, bytes]:
    path = tmp_path / "sparse.bin"
    chunk = b"row,user@old.com,42\n" * (MiB // 20)
    with open(path, "wb") as f:
        for at in DATA_AT:
            f.seek(at)
            f.write(chunk)
        f.truncate(SIZE)
    assert has_holes(os.stat(path)), "the test folder's filesystem must keep holes (ext4 does)"
    data = bytearray(SIZE)
    for at in DATA_AT:
        data[at:at + len(chunk)] = chunk
    return path, bytes(data)


def _allocated(path: Path) -> int:
    return os.stat(path).st_blocks * 512


def test_data_runs_skip_holes(tmp_path: Path) -> None:
    path, _ = _sparse(tmp_path)
    fd = os.open(path, os.O_RDONLY)
    try:
        runs = list(data_runs(fd, 0, SIZE))
        assert [start for start, _ in runs] == [0, 20 * MiB, 41 * MiB, SIZE - 3 * MiB]
        assert sum(length for _, length in runs) < 6 * MiB
        # a range cut from the middle of a data run and a hole, and one past the end
        # a range starting inside a data run (which ends 107 bytes past 21 MiB, rounded up to
        # the filesystem's block) and going on into a hole
        [(start, length)] = data_runs(fd, 21 * MiB - 7, 2 * MiB)
        assert start == 21 * MiB - 7 and 21 * MiB + 107 <= start + length < 22 * MiB
        assert list(data_runs(fd, SIZE, MiB)) == []
    finally:
        os.close(fd)


# (edit, what it makes of the bytes): the byte-at-a-time model is too slow for 64 MiB
EDITS = {
    "insert": (Insert(10, b"inserted,"), lambda d: d[:10] + b"inserted," + d[10:]),
    "delete": (Delete(5, 4096), lambda d: d[:5] + d[4101:]),
    # length-changing: the streamed rewrite
    "replace-longer": (Replace(b"@old.com", b"@example.org"),
                       lambda d: d.replace(b"@old.com", b"@example.org")),
    # same length: the workers write the new file directly
    "replace-same-length": (Replace(b"@old.com", b"@new.com"),
                            lambda d: d.replace(b"@old.com", b"@new.com")),
    "patch-in-hole": (Patch(30 * MiB, b"in a hole"),
                      lambda d: d[:30 * MiB] + b"in a hole" + d[30 * MiB + 9:]),
}


@pytest.mark.parametrize("name", EDITS)
def test_rewrites_keep_holes(tmp_path: Path, name: str) -> None:
    path, data = _sparse(tmp_path)
    before = _allocated(path)
    edit, expect = EDITS[name]
    result = edit_file(str(path), [edit], mode="rewrite", shard_size=4 * MiB)
    assert path.read_bytes() == expect(data)
    assert result.commit_mode == "rewrite"
    assert _allocated(path) <= before + 2 * MiB, "the holes were written out as zeros"


def test_without_seek_data_the_copy_is_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                             ) -> None:
    """Where the OS has no SEEK_DATA the runs are the whole range: same bytes, holes filled."""
    path, data = _sparse(tmp_path)
    monkeypatch.delattr(os, "SEEK_DATA")
    fd = os.open(path, os.O_RDONLY)
    try:
        assert list(data_runs(fd, 5, SIZE)) == [(5, SIZE)]
    finally:
        os.close(fd)
    edit_file(str(path), [Insert(10, b"x")], mode="rewrite")
    assert path.read_bytes() == data[:10] + b"x" + data[10:]


@pytest.mark.parametrize("offset", [0, 1, 65536 - 3, 65536, 3 * 65536 + 77])
def test_write_sparse_leaves_zero_pages_unwritten(tmp_path: Path, offset: int) -> None:
    """Zero pages of the new file are skipped, whatever the alignment; the bytes are the same."""
    page = 65536
    rng = random.Random(offset)
    parts = [rng.randbytes(rng.randrange(1, 3 * page)) if rng.random() < 0.5
             else bytes(rng.randrange(page, 4 * page)) for _ in range(40)]
    data = b"".join(parts)
    path = tmp_path / "new.bin"
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    try:
        os.ftruncate(fd, offset + len(data))
        write_sparse(fd, data, offset)
    finally:
        os.close(fd)
    assert path.read_bytes() == bytes(offset) + data
    zero_pages = sum(1 for p in range(-(-offset // page) * page, offset + len(data) - page + 1,
                                      page) if not any(data[p - offset:p - offset + page]))
    if zero_pages and has_holes(os.stat(path)):  # where the filesystem keeps holes
        assert _allocated(path) <= offset + len(data) - zero_pages * page + page
