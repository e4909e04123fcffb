"""Offset-only edits (patches, truncates, appends) skip the shard pass: the in-place commit
writes straight from the validated edit list. These check that path's choices and figures;
the property and crash tests check its bytes and its atomicity."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from airflow_bigfile import Append, Delete, Patch, Replace, Truncate, edit_file
from airflow_bigfile.exceptions import EditConflictError, SourceChangedError
from tests.model import apply_model


def _file(tmp_path: Path, size: int = 1 << 20, seed: int = 1) -> tuple[Path, bytes]:
    data = random.Random(seed).randbytes(size)
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    return path, data


def test_scattered_patches_are_written_in_place_without_shards(tmp_path: Path) -> None:
    path, data = _file(tmp_path)
    rng = random.Random(2)
    offsets = sorted(rng.sample(range(0, len(data) - 8, 16), 2000))
    edits = [Patch(o, rng.randbytes(8)) for o in offsets] + [Truncate(len(data) - 5),
                                                             Append(b"end")]
    result = edit_file(str(path), edits)
    assert path.read_bytes() == apply_model(data, edits)
    assert (result.commit_mode, result.shards, result.matches) == ("inplace", 0, 0)
    assert result.bytes_written == 2000 * 8 + 3
    assert result.size_after == len(data) - 5 + 3
    assert os.listdir(tmp_path) == ["data.bin"]  # no journal, staging or new file left


def test_dense_patches_rewrite_under_auto(tmp_path: Path) -> None:
    """Patching most of the file would journal most of it: auto rewrites instead."""
    path, data = _file(tmp_path, 64 << 10)
    edits = [Patch(0, b"x" * (48 << 10))]
    result = edit_file(str(path), edits, shard_size=4096)
    assert path.read_bytes() == apply_model(data, edits)
    assert result.commit_mode == "rewrite" and result.shards > 0
    forced = edit_file(str(path), [Patch(0, b"y" * (48 << 10))], mode="inplace")
    assert forced.commit_mode == "inplace" and forced.shards == 0


@pytest.mark.parametrize("edits", [
    [Patch(10, b"abc"), Delete(100, 5)],
    [Patch(10, b"abc"), Replace(b"\x00\x01", b"zz")],
], ids=["with-delete", "with-replace"])
def test_other_edits_take_the_shard_pass(tmp_path: Path, edits: list) -> None:
    path, data = _file(tmp_path)
    result = edit_file(str(path), edits, shard_size="64KiB")
    assert path.read_bytes() == apply_model(data, edits)
    assert result.shards > 0


def test_dry_run_and_no_op(tmp_path: Path) -> None:
    path, data = _file(tmp_path)
    dry = edit_file(str(path), [Patch(5, b"zz"), Append(b"!")], dry_run=True)
    assert (dry.dry_run, dry.bytes_written, dry.size_after) == (True, 3, len(data) + 1)
    nothing = edit_file(str(path), [Truncate(len(data))])
    assert nothing.commit_mode == "none"
    assert path.read_bytes() == data


def test_conflicts_and_changed_source_leave_the_file(tmp_path: Path) -> None:
    path, data = _file(tmp_path)
    with pytest.raises(EditConflictError, match=r"edit #1 patch.* conflicts with edit #2 patch"):
        edit_file(str(path), [Patch(10, b"abcd"), Patch(12, b"zz")])
    assert path.read_bytes() == data


def test_source_changed_between_identity_and_commit(tmp_path: Path, monkeypatch) -> None:
    """Another writer (ignoring the lock) changes the file after it was checked: refused."""
    from airflow_bigfile.targets import local as targets

    path, data = _file(tmp_path)
    real = targets.commit_inplace

    def meddle(cars, *args, **kwargs):
        with open(cars.path, "ab") as f:
            f.write(b"meddled")
        return real(cars, *args, **kwargs)

    monkeypatch.setattr(targets, "commit_inplace", meddle)
    with pytest.raises(SourceChangedError, match="changed since it was planned"):
        edit_file(str(path), [Patch(1, b"q")])
    assert path.read_bytes() == data + b"meddled"
