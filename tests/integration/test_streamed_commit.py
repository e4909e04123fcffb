"""Edits that move bytes (inserts, deletes, literal replaces of another length) can only be
committed by a rewrite, so the local commit starts writing the new file while later shards
are still being patched. These check its fallbacks and refusals; the property and crash
tests check its bytes and its atomicity."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from fsspec.callbacks import Callback

from airflow_bigfile import Append, Delete, Insert, Replace, SourceChangedError, edit_file
from airflow_bigfile.exceptions import EditConflictError
from tests.model import apply_model

DATA = b"".join(b"%06d,user%d@old.com,%s\n" % (i, i % 7, b"x" * (i % 13)) for i in range(20000))
SMALL_SHARDS = {"shard_size": "16KiB", "workers": 2}


def _file(tmp_path: Path) -> Path:
    path = tmp_path / "data.csv"
    path.write_bytes(DATA)
    return path


def _leftovers(path: Path) -> list[str]:
    return sorted(set(os.listdir(path.parent)) - {path.name, f".{path.name}.bigfile-lock"})


@pytest.mark.parametrize("workers", [1, 2])
def test_moving_edits_match_the_model(tmp_path: Path, workers: int) -> None:
    path = _file(tmp_path)
    edits = [Replace(b"@old.com", b"@a-much-newer.org"), Insert(5, b"INS"),
             Delete(DATA.index(b"\n", len(DATA) // 2) + 1, 5), Append(b"end\n")]
    result = edit_file(str(path), edits, shard_size="16KiB", workers=workers)
    assert path.read_bytes() == apply_model(DATA, edits)
    assert result.commit_mode == "rewrite"
    assert result.size_after == len(apply_model(DATA, edits)) == result.bytes_written
    assert result.matches == DATA.count(b"@old.com")
    assert result.shards_changed == result.shards
    assert _leftovers(path) == []


def test_no_match_leaves_the_file_alone(tmp_path: Path) -> None:
    path = _file(tmp_path)
    before = os.stat(path)
    result = edit_file(str(path), [Replace(b"@nowhere.net", b"@x.y")], **SMALL_SHARDS)
    assert result.commit_mode == "none" and result.matches == 0
    assert os.stat(path).st_mtime_ns == before.st_mtime_ns
    assert path.read_bytes() == DATA and _leftovers(path) == []


def test_no_match_with_an_append_appends_in_place(tmp_path: Path) -> None:
    path = _file(tmp_path)
    inode = os.stat(path).st_ino
    edits = [Replace(b"@nowhere.net", b"@x.y"), Append(b"tail\n")]
    result = edit_file(str(path), edits, **SMALL_SHARDS)
    assert result.commit_mode == "inplace" and result.bytes_written == 5
    assert os.stat(path).st_ino == inode
    assert path.read_bytes() == DATA + b"tail\n" and _leftovers(path) == []


def test_conflict_found_late_leaves_the_file(tmp_path: Path) -> None:
    """The conflict is in the last shards: earlier ones are already in the new file."""
    path = _file(tmp_path)
    at = DATA.rindex(b"@old.com")
    with pytest.raises(EditConflictError, match="conflicts with"):
        edit_file(str(path), [Replace(b"@old.com", b"@new.org.uk"), Delete(at + 2, 3)],
                  **SMALL_SHARDS)
    assert path.read_bytes() == DATA and _leftovers(path) == []


class _Meddler(Callback):
    """Changes a byte of the first shard once it is patched, keeping the target's size,
    mtime and inode: no later worker reads it, only the CRC check before the rename can
    see it."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path, self.done = path, False

    def call(self, *args, **kwargs) -> None:
        if self.done or not self.value:
            return
        self.done = True
        st = os.stat(self.path)
        with open(self.path, "r+b") as f:
            f.seek(10)
            f.write(b"#")
        os.utime(self.path, ns=(st.st_atime_ns, st.st_mtime_ns))


@pytest.mark.parametrize("replace", [b"@new.org.uk", b"@new.org"],
                         ids=["streamed-rewrite", "same-length"])
def test_source_changed_after_it_was_read_is_refused(tmp_path: Path, replace: bytes) -> None:
    """A local job takes its source CRCs as the workers read (not in a planning pass): a
    change after that, keeping size, mtime and inode, is still refused at the commit."""
    path = _file(tmp_path)
    meddler = _Meddler(path)
    with pytest.raises(SourceChangedError, match="changed since it was planned"):
        edit_file(str(path), [Replace(b"@old.com", replace)], progress=meddler,
                  shard_size="16KiB", workers=1)
    assert meddler.done
    expected = bytearray(DATA)
    expected[10] = ord("#")
    assert path.read_bytes() == bytes(expected) and _leftovers(path) == []
