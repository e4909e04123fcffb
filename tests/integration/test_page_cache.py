"""Large rewrites drop the new file's pages behind the writer once they are on disk
(``sync_file_range`` + ``POSIX_FADV_DONTNEED``), and the source's pages behind the reader
once nothing will read them again, so a rewrite of a file larger than memory does not evict
other programs' cached data. Residency is read with ``mincore``."""

from __future__ import annotations

import ctypes
import mmap
import os
import random
from pathlib import Path

import pytest

import airflow_bigfile.commit.rewrite as commit
import airflow_bigfile.io.storage as storage
from airflow_bigfile import Insert, Replace, edit_file
from airflow_bigfile.io.oscompat import drop_written, start_writeback

MiB = 1 << 20


def resident_pages(path: Path) -> int:
    """How many of the file's pages are in the page cache."""
    size = path.stat().st_size
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
    with open(path, "rb") as f, mmap.mmap(f.fileno(), size, access=mmap.ACCESS_COPY) as mm:
        vec = ctypes.create_string_buffer((size + 4095) // 4096)
        address = ctypes.addressof(ctypes.c_char.from_buffer(mm))
        try:
            assert libc.mincore(address, size, vec) == 0, os.strerror(ctypes.get_errno())
        finally:
            del address  # no export may outlive the mmap
        return sum(b & 1 for b in vec.raw)


def test_drop_written_takes_the_pages_out_of_the_cache(tmp_path: Path) -> None:
    path = tmp_path / "new.bin"
    with open(path, "wb") as f:
        f.write(random.Random(1).randbytes(8 * MiB))
        f.flush()
        start_writeback(f.fileno(), 0, 8 * MiB)
        assert resident_pages(path) > 1000
        drop_written(f.fileno(), 0, 8 * MiB)
    assert resident_pages(path) < 16


@pytest.fixture
def drop_behind(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every rewrite drops behind its writer, in 2 MiB windows."""
    monkeypatch.setattr(commit, "DROP_BEHIND_FROM", 1)
    monkeypatch.setattr(storage, "DROP_BEHIND_FROM", 1)
    monkeypatch.setattr(commit, "WRITEBACK_EVERY", 2 * MiB)
    monkeypatch.setattr(commit, "COPY_CHUNK", 2 * MiB)


def test_a_large_rewrite_leaves_only_its_last_window_cached(tmp_path: Path, drop_behind: None
                                                            ) -> None:
    """With the size threshold lowered, a 32 MiB rewrite keeps its bytes right and at most
    the last writeback windows of the new file in the cache (32 MiB in 2 MiB windows)."""
    data = random.Random(2).randbytes(32 * MiB)
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    edits = [Insert(5, b"new,"), Replace(data[20 * MiB:20 * MiB + 8], b"replaced longer")]
    result = edit_file(str(path), edits, shard_size="4MiB")
    assert result.commit_mode == "rewrite"
    pages = resident_pages(path)
    expected = data[:5] + b"new," + data[5:].replace(data[20 * MiB:20 * MiB + 8],
                                                     b"replaced longer")
    assert path.read_bytes() == expected
    assert pages <= 3 * 2 * MiB // 4096, pages  # the last window, the one before, the rest


DENSE = b"".join(b"%08d,user%d@old.com\n" % (i, i % 97) for i in range(1_500_000))
READ_SIDE = [
    pytest.param([Replace(b"@old.com", b"@new.com")], id="dense-same-length"),  # direct
    pytest.param([Replace(b"user1@old.com", b"user1@newer.com")], id="length-changing"),
    pytest.param([Insert(100, b"INSERTED")], id="insert"),  # kernel copies only
]


@pytest.mark.parametrize("edits", READ_SIDE)
@pytest.mark.parametrize("large", [True, False], ids=["large", "small"])
def test_the_source_leaves_the_cache_behind_the_reader(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, edits: list, large: bool) -> None:
    """The old file (kept here by a second hard link) was fully cached before the edit: a
    large one has left the cache when the edit is done, a small one is still there."""
    if large:
        monkeypatch.setattr(commit, "DROP_BEHIND_FROM", 1)
        monkeypatch.setattr(storage, "DROP_BEHIND_FROM", 1)
    path, old = tmp_path / "data.csv", tmp_path / "old.csv"
    path.write_bytes(DENSE)
    os.sync()  # clean pages, as a file long written has: dirty ones cannot be dropped
    os.link(path, old)
    old.read_bytes()
    cached = resident_pages(old)
    assert cached >= len(DENSE) // 4096
    result = edit_file(str(path), edits, shard_size="4MiB", workers=2, break_hardlinks=True)
    assert result.commit_mode == "rewrite"
    left = resident_pages(old)
    assert old.read_bytes() == DENSE
    if large:
        # what is left: about one 4 MiB shard's worth (read-ahead, the scans' look-ahead)
        assert left <= cached // 6, f"{left} of {cached} source pages still cached"
    else:
        # not all: a machine short of memory reclaims some clean pages of its own accord
        # (CI lost 6% once), far from the sixth a dropping reader leaves
        assert left >= cached * 3 // 4, f"only {left} of {cached} source pages still cached"


def test_small_rewrites_stay_cached(tmp_path: Path) -> None:
    """Below DROP_BEHIND_FROM the result stays in the cache for whoever reads it next."""
    path = tmp_path / "data.bin"
    path.write_bytes(random.Random(3).randbytes(8 * MiB))
    edit_file(str(path), [Insert(0, b"x")])
    assert resident_pages(path) >= 8 * MiB // 4096


def test_a_writeback_error_fails_the_commit_and_keeps_the_file(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch,
                                                                drop_behind: None) -> None:
    """Waiting for writeback consumes a write error the final fsync would have reported, so
    an error there fails the commit: a clear error, the target as it was, no new file."""
    import airflow_bigfile.io.oscompat as oscompat
    from airflow_bigfile.exceptions import BigFileError

    def failing(fd: int, offset: int, length: int, flags: int) -> int:
        if flags & 4:  # SYNC_FILE_RANGE_WAIT_AFTER: the disk reports the error here
            ctypes.set_errno(5)
            return -1
        return 0

    monkeypatch.setattr(oscompat, "_sync_file_range", failing)
    data = random.Random(4).randbytes(8 * MiB)
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    with pytest.raises(BigFileError, match="Input/output error|EIO|I/O"):
        edit_file(str(path), [Insert(5, b"new,")])
    assert path.read_bytes() == data
    assert sorted(os.listdir(tmp_path)) == ["data.bin"]
