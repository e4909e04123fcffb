"""Bad input through the Python API: each case raises the documented :class:`BigFileError`
subclass with a message that names what is wrong, and the target's bytes and mode bits are
unchanged, with nothing (lock, staging, journal, new file) left beside it.

Edits are given in their JSON form where building the edit object would itself raise, so
the error comes out of ``edit_file``.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_bigfile import (
    BigFileError,
    EditConflictError,
    EditError,
    PatternError,
    TargetIsDirectoryError,
    TargetNotFoundError,
    TargetPermissionError,
    edit_file,
    recover_target,
)
from airflow_bigfile.edits import Append, Delete, Insert, Patch, Replace, Truncate
from tests.neighbours import NOBODY, forked_as_nobody, require_root, shared_folder

CONTENT = b"".join(b"id=%04d;name=user%d;mail=u%d@old.com;aaaaaaaa\n" % (i, i, i)
                   for i in range(500))
SIZE = len(CONTENT)
FILE_MODE = 0o640


def _target(tmp_path: Path) -> Path:
    folder = tmp_path / "target"
    folder.mkdir()
    path = folder / "data.csv"
    path.write_bytes(CONTENT)
    os.chmod(path, FILE_MODE)
    return path


def _replace(find: str, replace: str = "x", **extra: Any) -> dict[str, Any]:
    return {"op": "replace", "find": find, "replace": replace, **extra}


CASES = [
    # -- offsets against the file ----------------------------------------------------------
    pytest.param([Patch(SIZE, b"x")], {}, EditError, r"edit #1 patch.*past the end.*size",
                 id="patch-offset-past-end"),
    pytest.param([Patch(SIZE - 2, b"xyz")], {}, EditError, f"ends at {SIZE + 1}, past the end",
                 id="patch-runs-past-end"),
    pytest.param([Insert(SIZE + 1, b"x")], {}, EditError, r"edit #1 insert.*past the end",
                 id="insert-past-end"),
    pytest.param([Delete(SIZE - 5, 10)], {}, EditError, r"edit #1 delete.*past the end",
                 id="delete-past-end"),
    pytest.param([{"op": "patch", "offset": -1, "data": "x"}], {}, EditError,
                 r"edit #1.*offset must be >= 0", id="negative-offset"),
    # -- conflicts, naming both edits ------------------------------------------------------
    pytest.param([Patch(10, b"abcd"), Patch(12, b"xy")], {}, EditConflictError,
                 r"edit #1 patch.*conflicts with edit #2 patch", id="overlapping-patches"),
    pytest.param([Append(b"tail"), Delete(10, 10), Patch(19, b"zz")], {}, EditConflictError,
                 r"edit #2 delete.*conflicts with edit #3 patch", id="delete-overlaps-patch"),
    pytest.param([Delete(10, 10), Insert(15, b"x")], {}, EditConflictError,
                 r"edit #2 insert.*conflicts with edit #1 delete|"
                 r"edit #1 delete.*conflicts with edit #2 insert", id="insert-inside-delete"),
    pytest.param([Truncate(100), Truncate(200)], {}, EditConflictError,
                 r"edit #1 truncate.*conflicts with edit #2 truncate", id="two-truncates"),
    pytest.param([Truncate(100), Patch(98, b"abcd")], {}, EditConflictError,
                 r"truncate.*patch|patch.*truncate", id="patch-past-truncate"),
    pytest.param([Truncate(100), Insert(150, b"x")], {}, EditConflictError,
                 r"insert.*truncate|truncate.*insert", id="insert-past-truncate"),
    pytest.param([Replace(b"old.com", b"new.com"), Patch(SIZE - 20, b"XXXXXXXXXX")], {},
                 EditConflictError, r"edit #1 replace.*conflicts with edit #2 patch",
                 id="replace-match-overlaps-patch"),
    # -- malformed edits -------------------------------------------------------------------
    pytest.param([_replace("")], {}, PatternError, r"edit #1.*find must not be empty",
                 id="empty-find"),
    pytest.param([{"op": "patch", "offset": 3, "data": ""}], {}, EditError,
                 r"edit #1.*data must not be empty", id="empty-patch"),
    pytest.param([{"op": "delete", "offset": 3, "length": 0}], {}, EditError,
                 r"edit #1.*length must be >= 1", id="zero-length-delete"),
    pytest.param([_replace("(unclosed", regex=True)], {}, PatternError,
                 r"edit #1.*invalid regex.*unclosed", id="invalid-regex"),
    pytest.param([_replace("(a)(b)?", r"\3", regex=True)], {}, PatternError,
                 r"edit #1.*invalid replacement.*group", id="bad-group-reference"),
    pytest.param([_replace("(?P<x>a)", r"\g<y>", regex=True)], {}, PatternError,
                 r"edit #1.*invalid replacement", id="bad-named-group"),
    pytest.param([_replace("q*", regex=True)], {}, PatternError,
                 r"edit #1 regex.*(zero|empty)", id="zero-length-regex-match"),
    pytest.param([_replace("a+", regex=True, max_match=4)], {}, PatternError,
                 r"edit #1 regex.*max_match", id="match-longer-than-max-match"),
    pytest.param([_replace("old", regex="yes")], {}, EditError, r"edit #1.*regex",
                 id="regex-not-a-bool"),
    pytest.param([{"op": "patch", "offset": 3, "data": 5}], {}, EditError,
                 r"edit #1.*data must be a string", id="data-not-text"),
    pytest.param([{"op": "patch", "offset": 3, "data_hex": "zz"}], {}, EditError,
                 r"edit #1.*data_hex is not valid hex", id="bad-hex"),
    pytest.param([{"op": "splice", "offset": 3}], {}, EditError, r"edit #1.*unknown op",
                 id="unknown-op"),
    pytest.param([{"op": "patch", "offset": 3}], {}, EditError,
                 r"edit #1.*missing field 'data'", id="missing-field"),
    pytest.param([{"op": "patch", "offset": 3, "data": "x", "colour": "red"}], {}, EditError,
                 r"edit #1.*unknown field.*colour", id="unknown-field"),
    pytest.param('[{"op": "patch", "offset": ', {}, EditError, r"not valid JSON",
                 id="bad-json-string"),
    pytest.param('{"op": "patch"}', {}, EditError, r"JSON list", id="json-not-a-list"),
    pytest.param(42, {}, EditError, r"edits must be a list", id="edits-not-a-list"),
    pytest.param(["patch 3 x"], {}, EditError, r"edit #1.*not an edit", id="edit-not-an-edit"),
    pytest.param([{"op": "truncate", "size": 2**64}, {"op": "append", "data": "x"}], {},
                 EditError, r"edit #1.*size must be at most 9,223,372,036,854,775,807",
                 id="size-past-off-t"),
    pytest.param([{"op": "truncate", "size": 2**63 - 1}, {"op": "append", "data": "x"}], {},
                 EditError, r"more than any file can be", id="grows-past-off-t"),
    pytest.param([_replace("o+", regex=True, max_match=10**20)], {}, EditError,
                 r"max_match must be at most", id="max-match-past-off-t"),
    pytest.param([_replace("o{4294967295}", regex=True)], {}, PatternError,
                 r"repetition number is too large", id="regex-repeat-overflow"),
    pytest.param([_replace("(" * 300 + "o" + ")" * 300, regex=True)], {},
                 PatternError, r"too deeply", id="regex-nested-too-deeply"),
    pytest.param("[" * 100_000 + "]" * 100_000, {}, EditError, r"nested too deeply",
                 id="json-nested-too-deeply"),
    # -- options ---------------------------------------------------------------------------
    pytest.param([Patch(3, b"x")], {"shard_size": "64XB"}, EditError, r"shard_size.*64XB",
                 id="shard-size-unknown-unit"),
    pytest.param([Patch(3, b"x")], {"shard_size": "lots"}, EditError, r"shard_size.*lots",
                 id="shard-size-words"),
    pytest.param([Patch(3, b"x")], {"shard_size": "-1MiB"}, EditError, r"shard_size",
                 id="shard-size-negative"),
    pytest.param([Patch(3, b"x")], {"shard_size": ""}, EditError, r"shard_size",
                 id="shard-size-empty"),
    pytest.param([Patch(3, b"x")], {"shard_size": 0}, EditError, r"shard_size",
                 id="shard-size-zero"),
    pytest.param([Patch(3, b"x")], {"shard_size": True}, EditError, r"shard_size",
                 id="shard-size-bool"),
    pytest.param([Insert(3, b"longer")], {"mode": "inplace"}, EditError,
                 r"inplace.*(rewrite|auto)", id="inplace-with-insert"),
    pytest.param([Replace(b"old.com", b"new.org.uk")], {"mode": "inplace"}, EditError,
                 r"inplace", id="inplace-with-longer-replace"),
    pytest.param([Delete(3, 4)], {"mode": "inplace", "dry_run": True}, EditError,
                 r"inplace", id="inplace-with-delete-dry-run"),
    pytest.param([Patch(3, b"x")], {"mode": "fast"}, EditError, r"mode.*fast",
                 id="unknown-mode"),
    pytest.param([Patch(3, b"x")], {"executor": "gpu"}, BigFileError, r"executor.*gpu",
                 id="unknown-executor"),
    pytest.param([Patch(3, b"x")], {"workers": 0}, BigFileError, r"workers.*0",
                 id="workers-zero"),
    pytest.param([Patch(3, b"x")], {"workers": -2}, BigFileError, r"workers",
                 id="workers-negative"),
    pytest.param([Patch(3, b"x")], {"writer": "dma"}, EditError, r"writer.*dma",
                 id="unknown-writer"),
    pytest.param([Patch(3, b"x")], {"delimiter": b""}, EditError, r"delimiter",
                 id="empty-delimiter"),
    pytest.param([Patch(3, b"x")], {"align": 0}, EditError, r"align", id="align-zero"),
    pytest.param([Patch(3, b"x")], {"wait": -1}, EditError, r"wait must be", id="wait-negative"),
    pytest.param([Patch(3, b"x")], {"wait": float("nan")}, EditError, r"wait must be",
                 id="wait-nan"),
    pytest.param([Patch(3, b"x")], {"dry_run": "no"}, EditError, r"dry_run must be true",
                 id="dry-run-not-a-bool"),
    pytest.param([Patch(3, b"x")], {"break_hardlinks": "yes"}, EditError,
                 r"break_hardlinks must be", id="break-hardlinks-not-a-bool"),
    pytest.param([{"offset": 3, "data": "x"}], {}, EditError, r"edit #1: missing field 'op'",
                 id="missing-op"),
    pytest.param([Patch(3, b"x")], {"storage_options": [1]}, EditError,
                 r"storage_options must be a dict", id="storage-options-not-a-dict"),
    pytest.param([Patch(3, b"x")], {"block_size": "0"}, EditError, r"block_size",
                 id="block-size-zero"),
]


@pytest.mark.parametrize(("edits", "options", "error", "match"), CASES)
def test_bad_input_leaves_target_alone(tmp_path: Path, edits: Any, options: dict[str, Any],
                                       error: type[BigFileError], match: str) -> None:
    path = _target(tmp_path)
    before = os.stat(path)
    with pytest.raises(error, match=match) as info:
        edit_file(str(path), edits, **{"workers": 1, "shard_size": "4KiB", **options})
    assert isinstance(info.value, BigFileError)
    assert path.read_bytes() == CONTENT
    after = os.stat(path)
    assert stat.S_IMODE(after.st_mode) == FILE_MODE
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert sorted(os.listdir(path.parent)) == [path.name]


@pytest.mark.parametrize("dry_run", [False, True], ids=["apply", "dry-run"])
def test_missing_file(tmp_path: Path, dry_run: bool) -> None:
    path = tmp_path / "nope.csv"
    with pytest.raises(TargetNotFoundError, match=r"nope\.csv.*no such file") as info:
        edit_file(str(path), [Patch(0, b"x")], dry_run=dry_run)
    assert isinstance(info.value, FileNotFoundError)
    assert os.listdir(tmp_path) == []


def test_folder(tmp_path: Path) -> None:
    folder = tmp_path / "a-folder"
    folder.mkdir()
    (folder / "inside").write_bytes(b"keep")
    with pytest.raises(TargetIsDirectoryError, match=r"a-folder.*folder"):
        edit_file(str(folder), [Patch(0, b"x")])
    assert sorted(os.listdir(tmp_path)) == ["a-folder"]
    assert os.listdir(folder) == ["inside"]


def test_root_writes_a_read_only_target(tmp_path: Path) -> None:
    """Root may write a 0444 file: the edit goes through and the mode bits stay."""
    require_root()
    path = _target(tmp_path)
    os.chmod(path, 0o444)
    edit_file(str(path), [Insert(0, b"#"), Patch(5, b"X")], workers=1)
    assert path.read_bytes()[:1] == b"#"
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    assert sorted(os.listdir(path.parent)) == [path.name]


@pytest.fixture
def shared() -> Iterator[Path]:
    """A folder that uid 65534 can reach."""
    yield from shared_folder()


def _edit_as_nobody(path: Path, edits: list[Any]) -> str:
    """``edit_file`` run as uid 65534: ``"ErrorClass: message"`` of what it raised."""
    def edit() -> None:
        edit_file(str(path), edits, workers=1)

    with pytest.raises(RuntimeError) as info:
        forked_as_nobody(edit)
    return str(info.value)


def test_read_only_target(shared: Path) -> None:
    path = shared / "data.csv"
    path.write_bytes(CONTENT)
    os.chmod(path, 0o444)
    error = _edit_as_nobody(path, [Patch(5, b"X")])
    refused = rf"{TargetPermissionError.__name__}: .*data\.csv.*read-only.*"
    assert re.fullmatch(refused, error), error
    assert path.read_bytes() == CONTENT
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    assert sorted(os.listdir(shared)) == [path.name]


def test_read_only_folder(shared: Path) -> None:
    folder = shared / "target"
    folder.mkdir()
    path = folder / "data.csv"
    path.write_bytes(CONTENT)
    os.chown(path, NOBODY, NOBODY)
    os.chmod(path, FILE_MODE)
    os.chmod(folder, 0o555)
    error = _edit_as_nobody(path, [Insert(0, b"#")])
    refused = rf"{TargetPermissionError.__name__}: .*folder.*read-only.*"
    assert re.fullmatch(refused, error), error
    assert path.read_bytes() == CONTENT
    assert stat.S_IMODE(path.stat().st_mode) == FILE_MODE
    assert os.listdir(folder) == [path.name]


def test_a_path_object_names_the_target_and_a_nul_byte_none(tmp_path: Path) -> None:
    path = _target(tmp_path)
    result = edit_file(path, [Patch(0, b"Z")], workers=1)
    assert result.target == str(path) and path.read_bytes() == b"Z" + CONTENT[1:]
    assert recover_target(path).clean
    with pytest.raises(EditError, match="NUL byte"):
        edit_file(str(path) + "\0x", [Patch(0, b"Y")])
    assert path.read_bytes() == b"Z" + CONTENT[1:]


def test_a_chosen_shard_size_that_makes_too_many_shards_is_refused(tmp_path: Path) -> None:
    """``--shard-size 1`` on a 600 KB file took 20 s and 627 MB; past 100,000 shards a
    chosen size is refused before the file is cut, naming the least size that would do."""
    path = tmp_path / "t.csv"
    path.write_bytes(b"a,b\n" * 150_001)
    before = os.stat(path)
    with pytest.raises(EditError, match=r"600,004 shards, more than 100,000 .* at least 7 B"):
        edit_file(str(path), [Replace(b"a", b"bb")], shard_size=1, workers=1)
    after = os.stat(path)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert sorted(os.listdir(tmp_path)) == ["t.csv"]
