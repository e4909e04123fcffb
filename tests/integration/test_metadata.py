"""Metadata and hard links across a commit that replaces the file (the Safety contract).

A rewrite (dense replace, insert, delete) and fsspec ``wb`` give the target a new inode; it
must carry the old one's owner, group, every mode bit, every extended attribute and its POSIX
ACL, or the edit is refused with the target byte-for-byte as it was. A file with other hard
links is rewritten only with ``break_hardlinks``; in ``auto`` it is committed in place where
the edits allow. ACLs are written as the kernel's binary ``posix_acl_xattr`` (Debian's acl
tools are not needed), so nothing here depends on optional packages.
"""

from __future__ import annotations

import os
import stat
import struct
import subprocess
import sys
from pathlib import Path

import fsspec
import pytest

from airflow_bigfile import Delete, HardLinkError, Insert, Replace, edit_file
from airflow_bigfile.io.lock import TargetLock
from tests.neighbours import (
    NOBODY,
    cli_as_nobody,
    forked_as_nobody,
    require_root,
    shared_folder,
)

CLI = [sys.executable, "-m", "airflow_bigfile"]
DATA = b"id,email\n" + b"".join(b"%04d,abc@old.com\n" % i for i in range(400))


@pytest.fixture
def as_root() -> None:
    """chown to other users and trusted.* xattrs need root: fail, never skip, without it."""
    require_root()


needs_root = pytest.mark.usefixtures("as_root")

# posix_acl_xattr: u32 version 2, then entries (u16 tag, u16 perm, u32 id), little-endian
ACL_USER_OBJ, ACL_USER, ACL_GROUP_OBJ, ACL_MASK, ACL_OTHER = 0x01, 0x02, 0x04, 0x10, 0x20
NO_ID = 0xFFFFFFFF


def acl(*entries: tuple[int, int, int]) -> bytes:
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in entries)


def xattrs(path: Path | str) -> dict[str, bytes]:
    return {name: os.getxattr(path, name) for name in sorted(os.listxattr(path))}


def snapshot(path: Path) -> tuple[bytes, tuple[int, ...]]:
    st = os.stat(path)
    return path.read_bytes(), (st.st_ino, st.st_size, st.st_mtime_ns, st.st_mode, st.st_uid,
                               st.st_gid, st.st_nlink)


def decorated(path: Path, mode: int) -> int:
    """Give ``path`` owner 1234:5678, ``mode``, xattrs in three namespaces and the ACL
    user:1234:rw-, group::r--, mask::rw-; return the mode the ACL leaves (group bits =
    the mask)."""
    os.chown(path, 1234, 5678)
    os.chmod(path, mode)
    os.setxattr(path, "user.origin", b"export-2024")
    os.setxattr(path, "user.binary", bytes(range(256)))
    os.setxattr(path, "trusted.checked", b"yes")
    os.setxattr(path, "security.label", b"internal")
    owner, other = (mode >> 6) & 7, mode & 7
    os.setxattr(path, "system.posix_acl_access", acl(
        (ACL_USER_OBJ, owner, NO_ID), (ACL_USER, 6, 1234), (ACL_GROUP_OBJ, 4, NO_ID),
        (ACL_MASK, 6, NO_ID), (ACL_OTHER, other, NO_ID)))
    expected = (mode & ~0o070) | 0o060
    assert stat.S_IMODE(os.stat(path).st_mode) == expected
    return expected


def write_wb(path: Path, data: bytes) -> str:
    with fsspec.open(f"bigfile::{path}", "wb") as f:
        f.write(data)
    return "rewrite"


REWRITES = {
    "dense-replace": (lambda p: edit_file(str(p), [Replace(b"abc", b"xyz")],
                                          mode="rewrite").commit_mode,
                      DATA.replace(b"abc", b"xyz")),
    "insert": (lambda p: edit_file(str(p), [Insert(9, b"0000,new@x.org\n")]).commit_mode,
               DATA[:9] + b"0000,new@x.org\n" + DATA[9:]),
    "delete": (lambda p: edit_file(str(p), [Delete(0, 9)]).commit_mode, DATA[9:]),
    "fsspec-wb": (lambda p: write_wb(p, b"brand new\n"), b"brand new\n"),
}


@needs_root
@pytest.mark.parametrize("mode", [0o6755, 0o2775, 0o1644], ids=oct)
@pytest.mark.parametrize("how", list(REWRITES))
def test_rewrite_keeps_owner_mode_xattrs_and_acl(tmp_path: Path, how: str, mode: int) -> None:
    path = tmp_path / "data.csv"
    path.write_bytes(DATA)
    expected_mode = decorated(path, mode)
    before = xattrs(path)
    old_ino = os.stat(path).st_ino
    run, result = REWRITES[how]

    assert run(path) == "rewrite"

    st = os.stat(path)
    assert path.read_bytes() == result
    assert st.st_ino != old_ino  # really a new file
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1234, 5678, expected_mode)
    assert (st.st_mode >> 3) & 7 == 6  # group bits = the ACL mask, not widened
    assert xattrs(path) == before
    assert sorted(os.listdir(tmp_path)) == ["data.csv"]


@needs_root
def test_an_acl_inherited_from_the_folder_is_not_added(tmp_path: Path) -> None:
    """The new file would inherit the folder's default ACL; the original had none."""
    path = tmp_path / "plain.txt"
    path.write_bytes(DATA)
    os.chmod(path, 0o640)
    os.setxattr(tmp_path, "system.posix_acl_default", acl(
        (ACL_USER_OBJ, 7, NO_ID), (ACL_USER, 7, NOBODY), (ACL_GROUP_OBJ, 7, NO_ID),
        (ACL_MASK, 7, NO_ID), (ACL_OTHER, 7, NO_ID)))

    assert edit_file(str(path), [Insert(0, b"#\n")]).commit_mode == "rewrite"

    assert path.read_bytes() == b"#\n" + DATA
    assert xattrs(path) == {}
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640


# ---------------------------------------------------------------- another user


@pytest.mark.parametrize(("uid", "gid", "mode", "named"), [
    pytest.param(0, 0, 0o666, "the owner uid 0", id="root-owned"),
    pytest.param(NOBODY, 5678, 0o2666, "the group gid 5678", id="foreign-group-setgid"),
])
@needs_root
def test_nobody_cannot_rewrite_what_it_cannot_keep(uid: int, gid: int, mode: int,
                                                   named: str) -> None:
    import airflow_bigfile.fs.filesystem  # noqa: F401 - imported before the child drops root

    for folder in shared_folder():
        path = folder / "data.csv"
        path.write_bytes(DATA)
        os.chown(path, uid, gid)
        os.chmod(path, mode)
        before = snapshot(path)

        status, _, err = cli_as_nobody("insert", path, "--offset", "9", "--data", "x")
        assert status == 1, err
        assert err == (f"bigfile: error: cannot keep {named} of {path} (not permitted); "
                       f"nothing was changed. Run the edit as the file's owner or as "
                       f"root\n")
        assert snapshot(path) == before
        assert os.listdir(folder) == ["data.csv"]

        def write(path: Path = path) -> str:
            try:
                with fsspec.open(f"bigfile::{path}", "wb") as f:
                    f.write(b"replaced")
            except Exception as exc:
                return f"{type(exc).__name__} {exc}"
            return "written"

        assert forked_as_nobody(write).startswith(  # type: ignore[union-attr]
            f"TargetPermissionError cannot keep {named} of {path}")
        assert snapshot(path) == before
        assert os.listdir(folder) == ["data.csv"]


# ---------------------------------------------------------------- hard links


@pytest.fixture
def linked(tmp_path: Path) -> tuple[Path, Path]:
    path, other = tmp_path / "data.csv", tmp_path / "other-name.csv"
    path.write_bytes(DATA)
    os.link(path, other)
    return path, other


def test_insert_into_a_linked_file_is_refused(linked: tuple[Path, Path],
                                             tmp_path: Path) -> None:
    path, other = linked
    before, listing = snapshot(path), sorted(os.listdir(tmp_path))

    with pytest.raises(HardLinkError, match=f"^{path} has 2 links "):
        edit_file(str(path), [Insert(9, b"new\n")])
    done = subprocess.run([*CLI, "insert", str(path), "--offset", "9", "--data", "x"],
                          capture_output=True, text=True, timeout=120, check=False)

    assert done.returncode == 1
    assert done.stderr.startswith(f"bigfile: error: {path} has 2 links ")
    assert snapshot(path) == snapshot(other) == before
    assert sorted(os.listdir(tmp_path)) == listing


def test_break_hardlinks_gives_the_name_its_own_file(linked: tuple[Path, Path]) -> None:
    path, other = linked

    result = edit_file(str(path), [Insert(9, b"new\n")], break_hardlinks=True)
    done = subprocess.run([*CLI, "delete", str(path), "--offset", "0", "--length", "9",
                           "--break-hardlinks"], capture_output=True, text=True,
                          timeout=120, check=False)

    assert result.commit_mode == "rewrite"
    assert done.returncode == 0, done.stderr
    assert path.read_bytes() == b"new\n" + DATA[9:]
    assert other.read_bytes() == DATA
    assert os.stat(path).st_nlink == os.stat(other).st_nlink == 1


def test_same_length_edit_of_a_linked_file_commits_in_place(linked: tuple[Path, Path]
                                                             ) -> None:
    """A dense replace that auto would rewrite goes in place: the links stay."""
    path, other = linked
    ino = os.stat(path).st_ino

    result = edit_file(str(path), [Replace(b"abc", b"xyz")])

    assert result.commit_mode == "inplace"
    assert path.read_bytes() == other.read_bytes() == DATA.replace(b"abc", b"xyz")
    st = os.stat(path)
    assert (st.st_nlink, st.st_ino) == (2, ino)


def test_forced_rewrite_of_a_linked_file_is_refused_before_any_io(
        linked: tuple[Path, Path], tmp_path: Path) -> None:
    """Refused before the lock is even tried: another job holding it does not matter."""
    path, other = linked
    before = snapshot(path)
    staging = tmp_path / "staging"

    with TargetLock(str(path), job="other-job"):
        listing = sorted(os.listdir(tmp_path))
        done = subprocess.run([*CLI, "replace", str(path), "--find", "abc", "--replace",
                               "xyz", "--mode", "rewrite", "--staging", str(staging)],
                              capture_output=True, text=True, timeout=120, check=False)
        assert sorted(os.listdir(tmp_path)) == listing

    assert done.returncode == 1
    assert done.stderr.startswith(f"bigfile: error: {path} has 2 links ")
    assert snapshot(path) == snapshot(other) == before


def test_fsspec_wb_on_a_linked_file(linked: tuple[Path, Path], tmp_path: Path) -> None:
    path, other = linked
    before = snapshot(path)

    with pytest.raises(HardLinkError, match="has 2 links"):
        write_wb(path, b"replaced\n")
    assert snapshot(path) == snapshot(other) == before
    assert sorted(os.listdir(tmp_path)) == ["data.csv", "other-name.csv"]

    with fsspec.open(f"bigfile::{path}", "wb", bigfile={"break_hardlinks": True}) as f:
        f.write(b"replaced\n")
    assert path.read_bytes() == b"replaced\n"
    assert other.read_bytes() == DATA


def test_operators_take_break_hardlinks(linked: tuple[Path, Path], tmp_path: Path) -> None:
    from airflow.sdk import DAG
    from airflow.sdk.exceptions import AirflowFailException
    from airflow_bigfile.operators import (
        BigFileCommitOperator,
        BigFileEditOperator,
        BigFilePatchShardsOperator,
        BigFilePlanOperator,
        bigfile_edit_group,
    )

    path, other = linked
    edits = [{"op": "insert", "offset": 0, "data": "# masked\n"}]
    with pytest.raises(AirflowFailException, match="has 2 links"):
        BigFileEditOperator(task_id="edit", path=str(path), edits=edits).execute({})
    plan = BigFilePlanOperator(task_id="plan", path=str(path), edits=edits,
                               staging=str(tmp_path / "staging"))
    summaries = [BigFilePatchShardsOperator(task_id="patch", batch=b).execute({})
                 for b in plan.execute({})]
    with pytest.raises(AirflowFailException, match="has 2 links"):
        BigFileCommitOperator(task_id="commit", results=summaries).execute({})
    assert path.read_bytes() == other.read_bytes() == DATA

    result = BigFileEditOperator(task_id="edit", path=str(path), edits=edits,
                                 break_hardlinks=True).execute({})
    assert result["commit_mode"] == "rewrite"
    assert path.read_bytes() == b"# masked\n" + DATA
    assert other.read_bytes() == DATA

    with DAG("meta", schedule=None):
        group = bigfile_edit_group("mask", path=str(path), edits=edits,
                                   staging=str(tmp_path / "staging"), break_hardlinks=True)
    assert group.children["mask.commit"].break_hardlinks is True
