"""The Safety contract against a careless user: staging is a parent folder, symlinks are
followed in every mode, dry runs write nothing, an empty edit list is a no-op, bytes other
writers append are never overwritten or cut, and an exit status of 1 means unchanged."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from airflow_bigfile import (
    Append,
    Insert,
    Patch,
    RecoveryError,
    Replace,
    StagingError,
    TargetLockedError,
    commit_edit,
    edit_file,
    patch_batch,
    plan_edit,
    recover_target,
)
from airflow_bigfile.commit.journal import write_journal
from airflow_bigfile.io.lock import TargetLock
from airflow_bigfile.io.oscompat import fsync_file
from airflow_bigfile.io.sidecars import Sidecars
from tests.model import apply_model
from tests.neighbours import NOBODY, cli_as_nobody, shared_folder

ROWS = b"".join(b"%06d,alice@old.com,%d\n" % (i, i * 7) for i in range(4000))
DENSE = [Replace(b"@old.com", b"@example.net")]   # length-changing: a rewrite
SAME = [Replace(b"alice", b"ALICE")]               # same length, dense: auto rewrites
SPARSE = [Patch(7, b"BOB  ")]                      # a patch: in place


def _cli(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "airflow_bigfile", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def _folder(tmp_path: Path) -> tuple[Path, Path]:
    folder = tmp_path / "sb"
    folder.mkdir()
    (folder / "other.csv").write_bytes(b"keep me\n")
    (folder / "sub").mkdir()
    (folder / "sub" / "deep.txt").write_bytes(b"deep\n")
    target = folder / "t.csv"
    target.write_bytes(ROWS)
    return folder, target


def _names(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# -- staging is a parent folder --------------------------------------------------------------

@pytest.mark.parametrize("dry_run", [False, True], ids=["edit", "dry-run"])
@pytest.mark.parametrize("edits", [DENSE, SAME, SPARSE], ids=["rewrite", "same-length", "patch"])
def test_staging_in_the_targets_own_folder(tmp_path: Path, edits: list, dry_run: bool) -> None:
    folder, target = _folder(tmp_path)
    before = _names(folder)
    result = edit_file(str(target), edits, staging=str(folder), dry_run=dry_run,
                       shard_size="16KiB")
    assert target.read_bytes() == (ROWS if dry_run else apply_model(ROWS, edits))
    assert result.dry_run is dry_run
    assert _names(folder) == before
    assert (folder / "other.csv").read_bytes() == b"keep me\n"
    assert (folder / "sub" / "deep.txt").read_bytes() == b"deep\n"


def test_cli_staging_dot_and_the_folder(tmp_path: Path) -> None:
    folder, target = _folder(tmp_path)
    before = _names(folder)
    proc = subprocess.run([sys.executable, "-m", "airflow_bigfile", "replace", "t.csv",
                           "--find", "@old.com", "--replace", "@new.org", "--staging", ".",
                           "--shard-size", "8KiB"], cwd=folder, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert _names(folder) == before
    proc = _cli("replace", target, "--find", "@new.org", "--replace", "@x.io", "--staging",
                folder, "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert _names(folder) == before
    assert target.read_bytes() == ROWS.replace(b"@old.com", b"@new.org")


def test_staging_that_is_a_file_or_the_target_is_refused(tmp_path: Path) -> None:
    folder, target = _folder(tmp_path)
    before = {name: (folder / name).read_bytes() if (folder / name).is_file() else None
              for name in _names(folder)}
    for staging in (folder / "other.csv", target):
        proc = _cli("replace", target, "--find", "a", "--replace", "b", "--staging", staging)
        assert proc.returncode == 1
        assert proc.stderr.startswith("bigfile: error: --staging ")
        assert "Traceback" not in proc.stderr
        with pytest.raises(StagingError):
            edit_file(str(target), DENSE, staging=str(staging))
        with pytest.raises(StagingError):
            plan_edit(str(target), DENSE, staging=str(staging))
    assert {name: (folder / name).read_bytes() if (folder / name).is_file() else None
            for name in _names(folder)} == before


def test_world_writable_staging_needs_the_sticky_bit(tmp_path: Path) -> None:
    folder, target = _folder(tmp_path)
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(StagingError, match="sticky"):
        edit_file(str(target), DENSE, staging=str(shared))
    assert target.read_bytes() == ROWS
    shared.chmod(0o1777)
    edit_file(str(target), DENSE, staging=str(shared))
    assert target.read_bytes() == apply_model(ROWS, DENSE)
    assert list(shared.iterdir()) == []


def test_a_missing_staging_parent_is_made_and_kept(tmp_path: Path) -> None:
    _, target = _folder(tmp_path)
    parent = tmp_path / "new" / "staging"
    edit_file(str(target), DENSE, staging=str(parent), shard_size="8KiB")
    assert parent.is_dir() and list(parent.iterdir()) == []


def test_plan_makes_a_private_job_folder_with_a_marker(tmp_path: Path) -> None:
    folder, target = _folder(tmp_path)
    plan = plan_edit(str(target), DENSE, staging=str(folder), shard_size="16KiB")
    job = folder / plan.job_id
    assert plan.staging == str(job)
    assert job.stat().st_mode & 0o777 == 0o700
    marker = json.loads((job / "job.json").read_text())
    assert marker["job_id"] == plan.job_id and marker["distributed"] is True
    for batch in plan.batches:
        patch_batch(batch)
    commit_edit(plan.staging, batches=plan.batches)
    assert target.read_bytes() == apply_model(ROWS, DENSE)
    assert sorted(p.name for p in folder.iterdir()) == ["other.csv", "sub", "t.csv"]


# -- symbolic links --------------------------------------------------------------------------

@pytest.mark.parametrize("edits", [DENSE, SAME, SPARSE, [Insert(0, b"# head\n")]],
                         ids=["rewrite", "same-length", "patch", "insert"])
def test_a_symlinked_target_stays_a_link(tmp_path: Path, edits: list) -> None:
    real_dir = tmp_path / "real"
    real_dir.mkdir()
    real = real_dir / "data.csv"
    real.write_bytes(ROWS)
    real.chmod(0o640)
    link = tmp_path / "link.csv"
    link.symlink_to(real)
    inode = real.stat().st_ino
    result = edit_file(str(link), edits, shard_size="16KiB")
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert real.read_bytes() == apply_model(ROWS, edits)
    assert real.stat().st_mode & 0o777 == 0o640
    assert (real.stat().st_ino == inode) == (result.commit_mode == "inplace")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.csv", "real"]
    assert [p.name for p in real_dir.iterdir()] == ["data.csv"]


def test_two_paths_to_one_file_share_one_lock(tmp_path: Path) -> None:
    real = tmp_path / "data.csv"
    real.write_bytes(ROWS)
    link = tmp_path / "alias.csv"
    link.symlink_to(real.name)
    with TargetLock(str(real), job="holder"), pytest.raises(TargetLockedError):
        edit_file(str(link), SPARSE)
    assert Sidecars.of(str(link)) == Sidecars.of(str(real))
    assert real.read_bytes() == ROWS


def test_a_journal_left_through_a_link_is_rolled_back_through_the_real_path(
        tmp_path: Path) -> None:
    real = tmp_path / "data.csv"
    real.write_bytes(ROWS)
    link = tmp_path / "alias.csv"
    link.symlink_to(real.name)
    cars = Sidecars.of(str(link))
    fd = os.open(real, os.O_RDWR)
    try:
        st = os.fstat(fd)
        write_journal(cars, fd, [(0, 10)], st, st.st_size, fsync_file)
        os.pwrite(fd, b"X" * 10, 0)  # the killed commit had begun writing
    finally:
        os.close(fd)
    assert cars.journal == str(tmp_path / ".data.csv.bigfile-journal")
    assert recover_target(str(real)).rolled_back
    assert real.read_bytes() == ROWS
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alias.csv", "data.csv"]


# -- dry runs write nothing; empty edit lists change nothing ----------------------------------

@pytest.mark.parametrize("edits", [DENSE, SPARSE, [Append(b"x\n")]], ids=["rewrite", "patch",
                                                                        "append"])
def test_a_dry_run_writes_nothing_not_even_a_lock(tmp_path: Path, edits: list) -> None:
    target = tmp_path / "data.csv"
    target.write_bytes(ROWS)
    folder_mtime = tmp_path.stat().st_mtime_ns
    result = edit_file(str(target), edits, dry_run=True, shard_size="16KiB")
    assert result.dry_run and result.size_after == len(apply_model(ROWS, edits))
    assert [p.name for p in tmp_path.iterdir()] == ["data.csv"]
    assert tmp_path.stat().st_mtime_ns == folder_mtime  # nothing created, even briefly
    assert target.read_bytes() == ROWS


def test_a_dry_run_refuses_a_target_with_an_unfinished_commit(tmp_path: Path) -> None:
    target = tmp_path / "data.csv"
    target.write_bytes(ROWS)
    fd = os.open(target, os.O_RDWR)
    try:
        st = os.fstat(fd)
        write_journal(Sidecars.of(str(target)), fd, [(0, 10)], st, st.st_size, fsync_file)
        os.pwrite(fd, b"X" * 10, 0)
    finally:
        os.close(fd)
    half = target.read_bytes()
    proc = _cli("patch", target, "--offset", 0, "--data", "Y", "--dry-run")
    assert proc.returncode == 1 and "bigfile recover" in proc.stderr
    assert target.read_bytes() == half  # the dry run did not even roll back
    assert sorted(p.name for p in tmp_path.iterdir()) == [".data.csv.bigfile-journal",
                                                          "data.csv"]


@pytest.mark.parametrize("executor", ["thread", "process"])
def test_an_empty_edit_list_changes_nothing(tmp_path: Path, executor: str) -> None:
    target = tmp_path / "data.csv"
    target.write_bytes(ROWS)
    mtime = target.stat().st_mtime_ns
    result = edit_file(str(target), [], executor=executor)
    assert (result.commit_mode, result.bytes_written, result.size_after) == ("none", 0,
                                                                             len(ROWS))
    assert target.stat().st_mtime_ns == mtime
    plan = plan_edit(str(target), [], staging=str(tmp_path / "stage"))
    for batch in plan.batches:
        patch_batch(batch)
    assert commit_edit(plan.staging, batches=plan.batches).commit_mode == "none"
    assert target.read_bytes() == ROWS and target.stat().st_mtime_ns == mtime
    edits = tmp_path / "edits.json"
    edits.write_text("[]")
    proc = _cli("apply", target, "--edits", edits, "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["commit_mode"] == "none"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.csv", "edits.json", "stage"]


# -- other writers ----------------------------------------------------------------------------

def test_appends_never_overwrite_another_writers_appends(tmp_path: Path) -> None:
    target = tmp_path / "log.txt"
    target.write_bytes(b"start\n")
    stop = threading.Event()
    theirs = 0

    def writer() -> None:  # like `echo line >> log.txt` in a loop, taking no lock
        nonlocal theirs
        while not stop.is_set():
            fd = os.open(target, os.O_WRONLY | os.O_APPEND)
            os.write(fd, b"theirs %06d\n" % theirs)
            os.close(fd)
            theirs += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        for i in range(60):
            edit_file(str(target), [Append(b"ours %06d\n" % i)])
    finally:
        stop.set()
        thread.join()
    lines = target.read_bytes().splitlines()
    assert lines[0] == b"start"
    assert [x for x in lines if x.startswith(b"ours")] == [b"ours %06d" % i for i in range(60)]
    assert [x for x in lines if x.startswith(b"theirs")] == [b"theirs %06d" % i
                                                            for i in range(theirs)]
    assert len(lines) == 1 + 60 + theirs


def test_recovery_never_cuts_bytes_appended_after_a_crash(tmp_path: Path) -> None:
    target = tmp_path / "log.txt"
    target.write_bytes(ROWS)
    cars = Sidecars.of(str(target))
    fd = os.open(target, os.O_RDWR | os.O_APPEND)
    try:  # an append of 6 bytes was interrupted after its journal was sealed
        st = os.fstat(fd)
        write_journal(cars, fd, [], st, st.st_size + 6, fsync_file)
        os.write(fd, b"ours\n!")
        os.write(fd, b"theirs, written after the crash\n")
    finally:
        os.close(fd)
    after = target.read_bytes()
    with pytest.raises(RecoveryError, match="another program wrote to it"):
        recover_target(str(target))
    proc = _cli("recover", target)
    assert proc.returncode == 1 and "journal" in proc.stderr
    assert target.read_bytes() == after
    assert os.path.exists(cars.journal)


def test_other_edits_of_a_changed_file_are_refused(tmp_path: Path) -> None:
    target = tmp_path / "data.csv"
    target.write_bytes(ROWS)
    plan = plan_edit(str(target), DENSE, staging=str(tmp_path / "stage"), shard_size="16KiB")
    for batch in plan.batches:
        patch_batch(batch)
    with open(target, "ab") as f:
        f.write(b"late line\n")
    from airflow_bigfile import SourceChangedError

    with pytest.raises(SourceChangedError):
        commit_edit(plan.staging, batches=plan.batches)
    assert target.read_bytes() == ROWS + b"late line\n"


# -- failures are reported as what they are -------------------------------------------------

def test_a_cleanup_failure_after_the_commit_is_not_an_error(tmp_path: Path, monkeypatch,
                                                            caplog) -> None:
    from airflow_bigfile.io.storage import Staging

    target = tmp_path / "data.csv"
    target.write_bytes(ROWS)

    def refuse(self: Staging) -> None:
        raise PermissionError(13, "Permission denied", self.root)

    monkeypatch.setattr(Staging, "destroy", refuse)
    result = edit_file(str(target), DENSE, shard_size="16KiB")
    assert result.commit_mode == "rewrite"
    assert target.read_bytes() == apply_model(ROWS, DENSE)
    assert "recover" in caplog.text
    monkeypatch.undo()
    recover_target(str(target))
    assert [p.name for p in tmp_path.iterdir()] == ["data.csv"]


def test_an_unreadable_file_is_reported_as_unreadable() -> None:
    for folder in shared_folder():
        target = folder / "data.csv"
        target.write_bytes(ROWS)
        os.chown(target, NOBODY, NOBODY)
        target.chmod(0o200)
        status, out, err = cli_as_nobody("patch", target, "--offset", 0, "--data", "x")
        assert (status, out) == (1, "")
        assert err == f"bigfile: error: {target} is not readable (permission denied); " \
                      f"nothing was changed\n"
        target.chmod(0o644)
        assert target.read_bytes() == ROWS
        assert sorted(p.name for p in folder.iterdir()) == ["data.csv"]
