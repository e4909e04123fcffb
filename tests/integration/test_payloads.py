"""Bounded memory for every input: file-backed payloads, staged payloads, and a lone
truncate that needs no journal (DESIGN.md, Safety contract)."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from airflow_bigfile import (
    Append,
    DataFile,
    Insert,
    Patch,
    PayloadError,
    ShardChecksumError,
    Truncate,
    commit_edit,
    edit_file,
    patch_batch,
    plan_edit,
)
from airflow_bigfile.commit import inplace as commit_module
from airflow_bigfile.io.storage import local_identity
from airflow_bigfile.plan.manifest import Manifest
from airflow_bigfile.run.tasks import JobSpec

MiB = 1 << 20
PATTERN = bytes(range(256)) * 4096  # 1 MiB of every byte value
RSS_LIMIT = 300 * MiB
# Runs a command and prints its peak RSS in KiB: a fresh launcher, so ru_maxrss of its
# children is that command's alone (not any earlier child of the test process).
LAUNCHER = ("import resource, subprocess, sys\n"
            "code = subprocess.run(sys.argv[1:]).returncode\n"
            "print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n")


def write_pattern(path: Path, size: int) -> None:
    with open(path, "wb") as f:
        for at in range(0, size, len(PATTERN)):
            f.write(PATTERN[:size - at])


def sha(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(8 * MiB):
            digest.update(chunk)
    return digest.hexdigest()


def model_sha(parts: list[tuple[Path, int, int]]) -> str:
    """SHA-256 of the concatenated ``(file, offset, length)`` parts (the expected output)."""
    digest = hashlib.sha256()
    for path, offset, length in parts:
        with open(path, "rb") as f:
            f.seek(offset)
            while length:
                chunk = f.read(min(8 * MiB, length))
                assert chunk
                digest.update(chunk)
                length -= len(chunk)
    return digest.hexdigest()


def run_measured(*args: str, cwd: Path) -> tuple[int, int, str]:
    """Run the CLI with ``args``: its exit code, peak RSS in bytes and stderr."""
    cmd = [sys.executable, "-m", "airflow_bigfile", *args, "--no-progress"]
    proc = subprocess.run([sys.executable, "-c", LAUNCHER, *cmd], cwd=cwd,
                          capture_output=True, text=True, timeout=240)
    code, rss_kib = proc.stdout.split()[-2:]
    return int(code), int(rss_kib) * 1024, proc.stderr


@pytest.fixture(scope="module")
def big_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("payload") / "data.bin"
    write_pattern(path, 512 * MiB)
    return path


@pytest.mark.parametrize("verb", ["patch", "insert", "append"])
def test_cli_data_file_of_512_mib_streams(tmp_path: Path, big_data: Path, verb: str) -> None:
    """``--data-file`` of 512 MiB: the exact output, and the CLI stays under 300 MB."""
    target = tmp_path / "target.bin"
    size = 520 * MiB if verb == "patch" else 16 * MiB
    with open(target, "wb") as f:  # sparse, with real bytes around the edit
        f.truncate(size)
        f.seek(4 * MiB)
        f.write(b"head" * 1024)
    expected_parts = {
        "patch": [(target, 0, 4 * MiB), (big_data, 0, 512 * MiB),
                  (target, 516 * MiB, 4 * MiB)],
        "insert": [(target, 0, 4 * MiB), (big_data, 0, 512 * MiB),
                   (target, 4 * MiB, 12 * MiB)],
        "append": [(target, 0, size), (big_data, 0, 512 * MiB)],
    }[verb]
    expected = model_sha(expected_parts)
    offset = [] if verb == "append" else ["--offset", str(4 * MiB)]
    code, rss, err = run_measured(verb, str(target), *offset, "--data-file", str(big_data),
                                  cwd=tmp_path)
    assert code == 0, err
    assert os.path.getsize(target) == (size if verb == "patch" else size + 512 * MiB)
    assert sha(target) == expected
    assert rss < RSS_LIMIT, f"peak RSS {rss / MiB:.0f} MiB"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["target.bin"]


def test_in_memory_payload_is_not_copied(tmp_path: Path) -> None:
    """A 256 MiB ``bytes`` insert: peak RSS grows by well under 1.5x the payload (no hex,
    JSON or per-worker copies)."""
    script = textwrap.dedent("""
        import resource, sys
        from airflow_bigfile import Insert, edit_file
        target = sys.argv[1]
        with open(target, "wb") as f:
            f.truncate(64 << 20)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        payload = bytes(range(256)) * (1 << 20)
        result = edit_file(target, [Insert(4096, payload)])
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(result.size_after, (peak - before) * 1024)
    """)
    target = tmp_path / "target.bin"
    proc = subprocess.run([sys.executable, "-c", script, str(target)], capture_output=True,
                          text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    size_after, grown = map(int, proc.stdout.split())
    assert size_after == (64 + 256) * MiB
    assert grown < 1.5 * 256 * MiB, f"grew {grown / MiB:.0f} MiB"
    assert model_sha([(target, 0, 4096)]) == hashlib.sha256(bytes(4096)).hexdigest()
    with open(target, "rb") as f:
        f.seek(4096)
        assert f.read(MiB) == PATTERN and f.read(MiB) == PATTERN


def small_target(tmp_path: Path, size: int = 3 * MiB) -> tuple[Path, bytes]:
    target = tmp_path / "target.bin"
    content = (b"0123456789abcdef" * (size // 16 + 1))[:size]
    target.write_bytes(content)
    return target, content


def test_process_executor_gets_a_reference(tmp_path: Path) -> None:
    """Worker processes read a staged payload; the manifest they are sent is small."""
    target, content = small_target(tmp_path)
    data = tmp_path / "data.bin"
    write_pattern(data, 5 * MiB + 3)
    result = edit_file(str(target), [Insert(MiB + 1, DataFile(data)),
                                     Append(DataFile(data))],
                       executor="process", workers=2, shard_size=MiB)
    payload = data.read_bytes()
    assert target.read_bytes() == content[:MiB + 1] + payload + content[MiB + 1:] + payload
    assert result.commit_mode == "rewrite"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.bin", "target.bin"]

    stage = JobSpec(target=str(target), staging=str(tmp_path / "stage")).open_staging()
    stage.create()
    manifest = Manifest(job_id="j", target=str(target), identity=local_identity(str(target)),
                        edits=[Insert(0, DataFile(data)), Append(b"tiny")], shards=[],
                        align=4096, delimiter=None)
    manifest.save(stage)
    assert sorted(os.listdir(tmp_path / "stage")) == ["manifest.json", "payload-0.bin"]
    assert (tmp_path / "stage" / "payload-0.bin").read_bytes() == payload
    assert len(pickle.dumps(manifest)) < 4096
    edits = json.loads((tmp_path / "stage" / "manifest.json").read_bytes())["edits"]
    assert edits[1] == {"op": "append", "data": "tiny"}
    assert edits[0]["data_staged"]["size"] == len(payload)


def test_json_data_file_form(tmp_path: Path) -> None:
    target, content = small_target(tmp_path, 1000)
    data = tmp_path / "data.bin"
    data.write_bytes(b"\x00\xffNEW")
    edits = tmp_path / "edits.json"
    edits.write_text(json.dumps([{"op": "patch", "offset": 10, "data_file": str(data)},
                                 {"op": "insert", "offset": 500, "data_file": str(data)}]))
    proc = subprocess.run([sys.executable, "-m", "airflow_bigfile", "apply", str(target),
                           "--edits", str(edits)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert target.read_bytes() == (content[:10] + b"\x00\xffNEW" + content[15:500]
                                   + b"\x00\xffNEW" + content[500:])


@pytest.mark.parametrize("change", ["shrinks", "vanishes"])
@pytest.mark.parametrize("edit", [Patch, Insert])
def test_data_file_that_changes_after_planning(tmp_path: Path, change: str, edit: type
                                               ) -> None:
    """The data file shrinks or is removed after the edit was made: a clear error and the
    target as it was (the in-place patch rolls back; the insert never renames)."""
    target, content = small_target(tmp_path)
    data = tmp_path / "data.bin"
    write_pattern(data, 2 * MiB)
    payload = DataFile(data)
    if change == "shrinks":
        os.truncate(data, MiB)
    else:
        data.unlink()
    with pytest.raises(PayloadError, match=f"data file {data}"):
        edit_file(str(target), [edit(4096, payload)])
    assert target.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == (
        ["data.bin", "target.bin"] if change == "shrinks" else ["target.bin"])


def test_damaged_staged_payload_is_refused(tmp_path: Path) -> None:
    """A staged payload that changed between planning and commit fails its CRC32C."""
    target, content = small_target(tmp_path)
    data = tmp_path / "data.bin"
    write_pattern(data, MiB)
    planned = plan_edit(str(target), [Append(DataFile(data))], staging=str(tmp_path / "st"))
    for batch in planned.batches:
        patch_batch(batch)
    staged = Path(planned.staging) / "payload-0.bin"
    with open(staged, "r+b") as f:
        f.seek(MiB - 1)
        f.write(b"X")
    with pytest.raises(ShardChecksumError, match="payload-0.bin is damaged"):
        commit_edit(planned.staging, batches=planned.batches)
    assert target.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.bin", "st", "target.bin"]
    assert os.listdir(tmp_path / "st") == []


def test_cli_missing_data_file_is_one_error_line(tmp_path: Path) -> None:
    target, content = small_target(tmp_path, 100)
    proc = subprocess.run([sys.executable, "-m", "airflow_bigfile", "append", str(target),
                           "--data-file", str(tmp_path / "nope")], capture_output=True,
                          text=True)
    assert proc.returncode == 1
    assert proc.stderr.startswith("bigfile: error: cannot read --data-file")
    assert target.read_bytes() == content


# -- a lone truncate ------------------------------------------------------------------------

def test_lone_truncate_needs_no_journal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                        ) -> None:
    target, content = small_target(tmp_path)

    def no_journal(*args: object, **kwargs: object) -> None:
        raise AssertionError("a lone truncate wrote a journal")

    monkeypatch.setattr(commit_module, "write_journal", no_journal)
    before = os.stat(target)
    result = edit_file(str(target), [Truncate(1000)])
    assert (result.commit_mode, result.bytes_written, result.size_after) == ("inplace", 0,
                                                                            1000)
    assert target.read_bytes() == content[:1000]
    assert os.stat(target).st_ino == before.st_ino
    result = edit_file(str(target), [Truncate(5000)])
    assert (result.commit_mode, result.bytes_written) == ("inplace", 0)
    assert target.read_bytes() == content[:1000] + bytes(4000)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["target.bin"]
    # with another edit the truncate is journaled (it must be able to roll back)
    with pytest.raises(AssertionError, match="wrote a journal"):
        edit_file(str(target), [Truncate(10), Patch(0, b"x")], mode="inplace")
    assert target.read_bytes() == content[:1000] + bytes(4000)


@pytest.fixture()
def full_tmpfs(tmp_path: Path):
    """A 4 MiB tmpfs with no free space left (mounting needs root, as the suite runs)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, f"cannot mount a small tmpfs: {proc.stderr.strip()}"
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_lone_truncate_on_a_full_disk(full_tmpfs: Path) -> None:
    target = full_tmpfs / "target.bin"
    write_pattern(target, 3 * MiB)
    fd = os.open(full_tmpfs / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        with pytest.raises(OSError, match="No space left"):
            while True:
                os.write(fd, b"\xff" * 4096)
    finally:
        os.close(fd)
    proc = subprocess.run([sys.executable, "-m", "airflow_bigfile", "truncate",
                           str(target), "--size", "1000", "--json"], capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert (result["commit_mode"], result["bytes_written"]) == ("inplace", 0)
    assert target.read_bytes() == PATTERN[:1000]
    assert sorted(os.listdir(full_tmpfs)) == ["filler", "target.bin"]


@pytest.mark.parametrize("verb", ["append", "patch", "insert"])
def test_the_target_as_its_own_data_file_is_refused(tmp_path: Path, verb: str) -> None:
    """An append in place would read its own growth (and never finish on a large file);
    a patch would read bytes it has already overwritten. Refused before any I/O, also
    through a link to the target."""
    path = tmp_path / "t.bin"
    path.write_bytes(bytes(range(256)) * 4096)
    (tmp_path / "alias").symlink_to(path)
    before = os.stat(path)
    offset = [] if verb == "append" else ["--offset", "0"]
    proc = subprocess.run(
        [sys.executable, "-m", "airflow_bigfile", verb, str(path), *offset, "--data-file",
         str(tmp_path / "alias"), "--json"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["type"] == "PayloadError"
    assert "is the file being edited" in proc.stderr
    after = os.stat(path)
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == \
        (before.st_ino, before.st_size, before.st_mtime_ns)
    assert sorted(os.listdir(tmp_path)) == ["alias", "t.bin"]
