"""Sidecar files in a shared folder, attacked by another user (``nobody``) who can write
next to the target: a link where the lock will be, a lock held open, a forged journal, a
staging folder that is a link. The victim runs as root; its bytes and the folder's
listing must come out as the contract says."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_bigfile import (
    Patch,
    RecoveryError,
    Replace,
    SourceChangedError,
    StagingError,
    edit_file,
    plan_edit,
    recover_target,
)
from airflow_bigfile.io.checksum import crc32c
from airflow_bigfile.io.sidecars import Sidecars
from tests.model import apply_model
from tests.neighbours import (
    SYSTEM_PYTHON,
    listing,
    nobody_python,
    shared_folder,
    switch_user,
)

DATA = b"".join(b"%05d,secret-%d\n" % (i, i) for i in range(2000))
EDIT = [Replace(b"secret", b"SECRET")]


@pytest.fixture
def shared() -> Iterator[Path]:
    yield from shared_folder()


def _victim(shared: Path) -> tuple[Path, Sidecars]:
    target = shared / "data.csv"
    target.write_bytes(DATA)
    target.chmod(0o644)
    return target, Sidecars.of(str(target))


def _precious(shared: Path) -> Path:
    """A root-only file the attacker would like to damage (in a folder it cannot write)."""
    vault = shared / "vault"
    vault.mkdir(mode=0o755)
    precious = vault / "precious"
    precious.write_bytes(b"root only\n")
    precious.chmod(0o600)
    return precious


def _cli(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "airflow_bigfile", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def test_a_link_planted_as_the_lock_is_never_followed(shared: Path) -> None:
    target, cars = _victim(shared)
    precious = _precious(shared)
    nobody_python("import os, sys; os.symlink(sys.argv[1], sys.argv[2])",
                  str(precious), cars.lock)
    result = edit_file(str(target), EDIT, shard_size="8KiB")
    assert result.commit_mode == "rewrite"
    assert target.read_bytes() == apply_model(DATA, EDIT)
    assert precious.read_bytes() == b"root only\n"
    assert not os.path.lexists(cars.lock)


def test_a_lock_held_open_by_another_user_does_not_block(shared: Path) -> None:
    target, cars = _victim(shared)
    holder = subprocess.Popen(  # nobody makes the lock file, flocks it and keeps it
        [*switch_user(), SYSTEM_PYTHON, "-c",
         "import fcntl, os, sys, time\n"
         "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o666)\n"
         "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('held', flush=True)\ntime.sleep(60)\n",
         cars.lock], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        started = time.monotonic()
        edit_file(str(target), [Patch(0, b"X")])
        assert time.monotonic() - started < 5
        assert target.read_bytes() == b"X" + DATA[1:]
    finally:
        holder.kill()
        holder.wait()


def test_the_lock_is_private_while_held(shared: Path) -> None:
    target, cars = _victim(shared)
    from airflow_bigfile.io.lock import TargetLock

    with TargetLock(str(target), job="x"):
        st = os.stat(cars.lock)
        assert (st.st_mode & 0o777, st.st_uid) == (0o600, 0)
        proc = nobody_python("import os, sys; os.open(sys.argv[1], os.O_RDONLY)", cars.lock,
                             check=False)
        assert proc.returncode != 0 and "Permission denied" in proc.stderr


def _forge_journal(cars: Sidecars, target: Path, *, inode: int | None = None) -> None:
    """A sealed journal as nobody writes it: 'restore' the first bytes to the attacker's."""
    st = target.stat()
    body = struct.pack("<8sHQQQQQ", b"BIGFJRNL", 2, st.st_dev, inode or st.st_ino,
                       st.st_size, st.st_size, 1)
    body += struct.pack("<QQ", 0, 9) + b"PWNED!!!\n"
    body += crc32c(body).to_bytes(4, "little")
    nobody_python("import sys; open(sys.argv[1], 'wb').write(bytes.fromhex(sys.argv[2]))",
                  cars.journal, body.hex())


@pytest.mark.parametrize("dry_run", [False, True], ids=["edit", "dry-run"])
def test_a_journal_forged_by_another_user_is_not_rolled_back(shared: Path,
                                                             dry_run: bool) -> None:
    target, cars = _victim(shared)
    _forge_journal(cars, target)
    before = listing(shared)
    with pytest.raises(RecoveryError, match="not a journal bigfile can trust"):
        edit_file(str(target), EDIT, dry_run=dry_run)
    proc = _cli("recover", target)
    assert proc.returncode == 1 and "uid 65534" in proc.stderr
    assert listing(shared) == before
    assert target.read_bytes() == DATA


def test_a_journal_naming_another_file_is_not_rolled_back(shared: Path) -> None:
    target, cars = _victim(shared)
    st = target.stat()
    body = struct.pack("<8sHQQQQQ", b"BIGFJRNL", 2, st.st_dev, st.st_ino + 1, st.st_size,
                       st.st_size, 1) + struct.pack("<QQ", 0, 4) + b"XXXX"
    cars_fd = os.open(cars.journal, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(cars_fd, body + crc32c(body).to_bytes(4, "little"))
    os.close(cars_fd)
    with pytest.raises(RecoveryError, match="belongs to another file"):
        recover_target(str(target))
    assert target.read_bytes() == DATA and os.path.exists(cars.journal)


def test_a_journal_link_is_not_followed(shared: Path) -> None:
    target, cars = _victim(shared)
    precious = _precious(shared)
    nobody_python("import os, sys; os.symlink(sys.argv[1], sys.argv[2])",
                  str(precious), cars.journal)
    with pytest.raises(RecoveryError):
        edit_file(str(target), [Patch(0, b"X")])
    assert precious.read_bytes() == b"root only\n" and target.read_bytes() == DATA


def test_a_staging_folder_link_does_not_make_recovery_delete_elsewhere(shared: Path,
                                                                       tmp_path: Path) -> None:
    target, cars = _victim(shared)
    elsewhere = shared / "elsewhere"
    elsewhere.mkdir()
    for name in ("20260101T000000-deadbeef", "keep", "20260101T000000-cafebabe"):
        (elsewhere / name).mkdir()
        (elsewhere / name / "file").write_bytes(b"mine\n")
    os.chown(elsewhere, 65534, 65534)
    nobody_python("import os, sys; os.symlink(sys.argv[1], sys.argv[2])", str(elsewhere),
                  cars.staging_root)
    before = listing(elsewhere)
    result = recover_target(str(target))
    assert result.removed == []
    assert listing(elsewhere) == before
    with pytest.raises(StagingError, match="is a link or not a folder"):
        edit_file(str(target), EDIT, shard_size="8KiB")
    assert listing(elsewhere) == before and target.read_bytes() == DATA
    with pytest.raises(StagingError, match="other users can write"):  # they could swap it
        edit_file(str(target), EDIT, shard_size="8KiB", staging=str(shared / "mine"))
    edit_file(str(target), EDIT, shard_size="8KiB", staging=str(tmp_path / "mine"))
    assert listing(elsewhere) == before and target.read_bytes() == apply_model(DATA, EDIT)


def test_recovery_removes_only_job_folders_bigfile_made(shared: Path) -> None:
    target, cars = _victim(shared)
    root = Path(cars.staging_root)
    root.mkdir(mode=0o700)
    planted = root / "20260101T000000-00000000"  # named like a job, but no marker
    planted.mkdir()
    (planted / "notes.txt").write_bytes(b"not bigfile's\n")
    foreign = root / "20260101T000000-11111111"
    foreign.mkdir()
    (foreign / "job.json").write_text('{"job_id": "20260101T000000-11111111"}')
    os.chown(foreign, 65534, 65534)
    stale = root / "20260101T000000-22222222"
    stale.mkdir()
    (stale / "job.json").write_text(json.dumps(
        {"job_id": stale.name, "target": cars.path, "distributed": False}))
    outside = shared / "outside"
    outside.mkdir()
    (outside / "f").write_bytes(b"keep\n")
    (stale / "sub").mkdir()
    (stale / "sub" / "link").symlink_to(outside)  # removed as links, never followed
    (stale / "link").symlink_to(outside / "f")
    result = recover_target(str(target))
    assert result.removed == [str(stale)] and not stale.exists()
    assert (outside / "f").read_bytes() == b"keep\n"
    assert sorted(p.name for p in root.iterdir()) == [planted.name, foreign.name]
    assert (planted / "notes.txt").read_bytes() == b"not bigfile's\n"


def test_a_staging_parent_another_user_owns_is_refused(shared: Path) -> None:
    target, _ = _victim(shared)
    theirs = shared / "theirs"
    nobody_python("import os, sys; os.mkdir(sys.argv[1], 0o755)", str(theirs))
    with pytest.raises(StagingError, match="belongs to uid 65534"):
        edit_file(str(target), EDIT, staging=str(theirs))
    proc = _cli("replace", target, "--find", "secret", "--replace", "x", "--staging", theirs)
    assert proc.returncode == 1 and "belongs to uid 65534" in proc.stderr
    assert list(theirs.iterdir()) == [] and target.read_bytes() == DATA


# -- the target's name swapped between two steps of an edit ---------------------------
# ``nobody`` owns the target in the shared folder and puts a link to (or a hard link of)
# root's file in its place at the worst moment: while root's edit waits for the lock, after
# its journal was read, before its commit. Each moment is reached through the engine's own
# call, so the swap lands exactly there.


def _nobodys_target(shared: Path) -> Path:
    target = shared / "x.csv"
    target.write_bytes(DATA)
    os.chown(target, 65534, 65534)
    return target


def _swap(target: Path, precious: Path, how: str) -> None:
    """What the neighbour does: move its file away and put root's in its place."""
    os.rename(target, target.with_suffix(".old"))
    if how == "symlink":
        os.symlink(precious, target)
    else:
        os.link(precious, target)  # fs.protected_hardlinks=0 lets anyone do this


@pytest.mark.parametrize("how", ["symlink", "hardlink"])
@pytest.mark.parametrize("edits", [[Patch(0, b"PWN")], EDIT], ids=["inplace", "rewrite"])
def test_a_target_swapped_while_waiting_for_the_lock_is_refused(
        shared: Path, monkeypatch: pytest.MonkeyPatch, how: str, edits: list) -> None:
    from airflow_bigfile.targets import local

    target, precious = _nobodys_target(shared), _precious(shared)
    real_lock = local.TargetLock

    class SwappedWhileWaiting(real_lock):  # type: ignore[misc, valid-type]
        def __enter__(self):  # the holder swaps, then lets go of the lock
            _swap(target, precious, how)
            return super().__enter__()

    monkeypatch.setattr(local, "TargetLock", SwappedWhileWaiting)
    with pytest.raises(SourceChangedError, match="symbolic link|another owner"):
        edit_file(str(target), edits, wait=5)
    assert precious.read_bytes() == b"root only\n"
    assert oct(precious.stat().st_mode & 0o7777) == "0o600"
    assert target.with_suffix(".old").read_bytes() == DATA


def test_a_forged_journal_cannot_roll_back_a_swapped_in_file(
        shared: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The journal names root's file (its device and inode are anyone's to read) and is
    owned by the target's owner, so it is trusted; the name is swapped for a link once
    the journal has been read. The replay opens the file the edit began with, or nothing."""
    from airflow_bigfile.commit import journal, recover

    target, precious = _nobodys_target(shared), _precious(shared)
    cars = Sidecars.of(str(target))
    bait = shared / "bait"
    bait.write_bytes(b"PWNED:::::\n")
    fd = os.open(bait, os.O_RDONLY)
    try:
        journal.write_journal(cars, fd, [(0, 10)], os.stat(precious), 10, lambda fd: None)
    finally:
        os.close(fd)
    os.chown(cars.journal, 65534, 65534)
    real_read = recover.read_journal

    def read_then_swap(*args: object) -> object:
        found = real_read(*args)
        _swap(target, precious, "symlink")
        return found

    monkeypatch.setattr(recover, "read_journal", read_then_swap)
    with pytest.raises(SourceChangedError, match="symbolic link"):
        recover_target(str(target))
    assert precious.read_bytes() == b"root only\n"


@pytest.mark.parametrize("how", ["symlink", "hardlink"])
def test_an_append_after_a_swap_is_refused(shared: Path, monkeypatch: pytest.MonkeyPatch,
                                           how: str) -> None:
    """Appends write at the end as it is at commit time, with no planned size to compare;
    the file they open must still be the one the edit began with."""
    from airflow_bigfile import Append
    from airflow_bigfile.targets import local

    target, precious = _nobodys_target(shared), _precious(shared)
    real_commit = local.commit_inplace

    def swap_then_commit(*args: object, **kwargs: object) -> object:
        _swap(target, precious, how)
        return real_commit(*args, **kwargs)

    monkeypatch.setattr(local, "commit_inplace", swap_then_commit)
    with pytest.raises(SourceChangedError, match="symbolic link|no longer the file"):
        edit_file(str(target), [Append(b"APPENDED-BY-ROOT")])
    assert precious.read_bytes() == b"root only\n"


def test_fsspec_wb_keeps_metadata_only_from_the_file_it_opened(shared: Path) -> None:
    """A setuid root file swapped in while ``wb`` is open: the commit refuses instead of
    giving the new file root's owner and setuid bit."""
    import fsspec

    target, precious = _nobodys_target(shared), _precious(shared)
    precious.chmod(0o4755)
    with pytest.raises(SourceChangedError), \
            fsspec.open(f"bigfile::{target}", "wb") as f:
        f.write(b"#!PAYLOAD\n")
        _swap(target, precious, "symlink")
    assert precious.read_bytes() == b"root only\n"
    assert os.path.islink(target)
    assert not [p for p in os.listdir(shared) if p.endswith(".bigfile-tmp")]


def test_a_target_replaced_by_its_owner_while_waiting_is_edited(
        shared: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The other side: the same owner replacing the file (sed -i, another edit's rewrite)
    while the edit waits is no attack; the new file is edited."""
    from airflow_bigfile.targets import local

    target = _nobodys_target(shared)
    real_lock = local.TargetLock

    class ReplacedWhileWaiting(real_lock):  # type: ignore[misc, valid-type]
        def __enter__(self):
            fresh = target.with_suffix(".new")
            fresh.write_bytes(b"0,secret\n")
            os.chown(fresh, 65534, 65534)
            os.replace(fresh, target)
            return super().__enter__()

    monkeypatch.setattr(local, "TargetLock", ReplacedWhileWaiting)
    edit_file(str(target), EDIT, wait=5)
    assert target.read_bytes() == b"0,SECRET\n"


@pytest.mark.parametrize("made", [True, False], ids=["existing", "to-be-made"])
def test_a_staging_parent_inside_another_users_folder_is_refused(
        shared: Path, tmp_path: Path, made: bool) -> None:
    """``nobody`` owns a folder above the staging parent: it could move root's parent away
    and put its own (with the job's folder in it) in its place, then read or forge the
    staged shards. Refused before anything is written, as OpenSSH refuses such paths."""
    target, _ = _victim(shared)
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    os.chown(theirs, 65534, 65534)
    parent = theirs / "stage"
    if made:
        parent.mkdir(mode=0o755)
    before = listing(theirs)
    with pytest.raises(StagingError, match="inside .*theirs, which belongs to uid 65534"):
        edit_file(str(target), EDIT, staging=str(parent / "deeper"))
    assert listing(theirs) == before and target.read_bytes() == DATA


def test_a_staging_parent_given_as_a_link_is_resolved_once(shared: Path,
                                                           tmp_path: Path) -> None:
    """A link named as ``--staging`` is followed when the edit starts; the job never goes
    through it again, so pointing it elsewhere meanwhile changes nothing."""
    target, _ = _victim(shared)
    mine = tmp_path / "mine"
    mine.mkdir()
    link = tmp_path / "link"
    link.symlink_to(mine)
    planned = plan_edit(str(target), EDIT, staging=str(link))
    assert planned.staging.startswith(str(mine) + os.sep)
