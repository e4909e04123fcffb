"""Verification before commit: nothing unverified reaches the target.

The three-step pipeline (``plan_edit`` -> ``patch_batch`` per batch -> ``commit_edit``) with
the staging tampered with in between: one flipped bit anywhere in a staged shard (header,
header CRC, record tags and lengths, payload), a missing or truncated shard, a missing batch
result, a shard from another job; and the source changed under the plan. Every time the
commit must refuse with a :class:`BigFileError` and leave the target byte-for-byte and
mode-for-mode as it was (or as the other writer left it).
"""

from __future__ import annotations

import collections
import os
import random
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

import pytest

from airflow_bigfile import (
    Append,
    BigFileError,
    Delete,
    Insert,
    Patch,
    Replace,
    ShardChecksumError,
    SourceChangedError,
    StagingError,
    commit_edit,
    patch_batch,
    plan_edit,
)
from airflow_bigfile.patch.shardfile import HEADER_SIZE
from tests.model import apply_model

SHARD = "8KiB"
FILE_MODE = 0o640
ORIGINAL = b"".join(b"%06d,user%d@old.com,payload-%s\n" % (i, i % 97, b"x" * (i % 13))
                    for i in range(4000))
# three shards changed, the rest untouched; inplace-able or not
SAME_LENGTH = [Patch(100, b"PATCHED"), Patch(40_000, b"#" * 20),
               Patch(90_000 - 3, b"straddle!")]
LENGTH_CHANGING = [Insert(100, b"INSERTED"), Delete(40_000, 20),
                   Patch(90_000 - 3, b"straddle!"), Append(b"the end\n")]
CASES = [pytest.param(SAME_LENGTH, "inplace", id="inplace"),
         pytest.param(SAME_LENGTH, "auto", id="auto-same-length"),
         pytest.param(SAME_LENGTH, "rewrite", id="rewrite-same-length"),
         pytest.param(LENGTH_CHANGING, "rewrite", id="rewrite")]


def _target(tmp_path: Path, data: bytes = ORIGINAL) -> Path:
    folder = tmp_path / "target"
    folder.mkdir(exist_ok=True)
    path = folder / "data.csv"
    path.write_bytes(data)
    os.chmod(path, FILE_MODE)
    return path


def _unchanged(path: Path, data: bytes = ORIGINAL) -> None:
    assert path.read_bytes() == data
    assert stat.S_IMODE(path.stat().st_mode) == FILE_MODE


def _leftovers(path: Path) -> list[str]:
    return sorted(set(os.listdir(path.parent)) - {path.name})


@dataclass
class Staged:
    """A planned and patched edit, with a pristine copy of its staging to restore."""

    path: Path
    staging: Path
    backup: Path
    shards: list[Path]
    manifest_sha256: str

    def restore(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)
        shutil.copytree(self.backup, self.staging)


def stage(tmp_path: Path, edits: list, path: Path | None = None) -> Staged:
    path = path or _target(tmp_path)
    planned = plan_edit(str(path), edits, shard_size=SHARD, max_batches=3)
    for batch in planned.batches:
        summary = patch_batch(batch)
        assert not summary["errors"], summary
    staging = Path(planned.staging)
    shards = sorted(staging.glob("shards-*.bin"))
    assert shards, "nothing was staged"
    backup = tmp_path / f"backup-{planned.job_id}"
    shutil.copytree(staging, backup)
    return Staged(path, staging, backup, shards, planned.manifest_sha256)


def _refused(staged: Staged, mode: str, label: str = "", *, clean: bool = True
             ) -> BigFileError:
    """Commit, expecting a refusal; the target must be untouched and, when ``clean``, the
    staging removed and nothing else left beside the target."""
    with pytest.raises(BigFileError) as info:
        commit_edit(str(staged.staging), mode=mode, manifest_sha256=staged.manifest_sha256)
    _unchanged(staged.path)
    if clean:
        assert _leftovers(staged.path) == [], f"{label}: {info.value}"
    else:
        assert [n for n in _leftovers(staged.path) if n.endswith((".new", "journal"))] == []
    return info.value


def _bit_positions(rng: random.Random, size: int) -> list[int]:
    """Every bit of the header CRC, a bit of every other header byte, and bits spread over
    the payload (among them every fifth bit of the first record: tag, length, offset)."""
    crc = range((HEADER_SIZE - 4) * 8, HEADER_SIZE * 8)
    header = [byte * 8 + rng.randrange(8) for byte in range(0, HEADER_SIZE - 4, 2)]
    record = [HEADER_SIZE * 8 + k for k in range(0, 17 * 8, 5)]
    payload = [rng.randrange(HEADER_SIZE * 8, size * 8) for _ in range(20)]
    return [*crc, *header, *record, *payload, size * 8 - 1]


@pytest.mark.parametrize(("edits", "mode"), CASES)
def test_three_steps_round_trip(tmp_path: Path, edits: list, mode: str) -> None:
    """The pipeline untampered, with local staging: the model's bytes, nothing left over."""
    path = _target(tmp_path)
    planned = plan_edit(str(path), edits, shard_size=SHARD, max_batches=3)
    summaries = [patch_batch(batch) for batch in planned.batches]
    assert not [e for s in summaries for e in s["errors"]]
    result = commit_edit(planned.staging, mode=mode, batches=summaries)
    assert path.read_bytes() == apply_model(ORIGINAL, edits)
    assert result.size_after == len(apply_model(ORIGINAL, edits))
    assert stat.S_IMODE(path.stat().st_mode) == FILE_MODE
    assert _leftovers(path) == []


@pytest.mark.parametrize(("edits", "mode"), [c for c in CASES if c.id != "auto-same-length"])
def test_flipped_bit_is_refused(tmp_path: Path, edits: list, mode: str) -> None:
    """Every single-bit corruption of a staged shard is refused with a StagingError (or its
    ShardChecksumError), target untouched. Problems are collected, then reported together."""
    staged = stage(tmp_path, edits)
    rng = random.Random(mode + str(len(edits)))
    kinds: collections.Counter[str] = collections.Counter()
    problems: dict[str, list[str]] = collections.defaultdict(list)
    unnamed: set[str] = set()
    for k, shard in enumerate(staged.shards):
        raw = (staged.backup / shard.name).read_bytes()
        positions = _bit_positions(rng, len(raw))
        if k:  # the full set on the first shard, a sample on the others
            positions = rng.sample(positions, 10)
        for bit in positions:
            staged.restore()
            flipped = bytearray(raw)
            flipped[bit // 8] ^= 1 << (bit % 8)
            (staged.staging / shard.name).write_bytes(flipped)
            where = (f"{shard.name} bit {bit} (" +
                     ("header" if bit < HEADER_SIZE * 8 else
                      f"payload byte {bit // 8 - HEADER_SIZE}") + ")")
            try:
                commit_edit(str(staged.staging), mode=mode, manifest_sha256=staged.manifest_sha256)
            except (ShardChecksumError, StagingError) as exc:
                kinds[type(exc).__name__] += 1
                if shard.name not in str(exc):
                    unnamed.add(str(exc).split(" at offset")[0])
            except Exception as exc:  # noqa: BLE001 - collected and reported below
                problems[f"{type(exc).__name__}: {exc}"].append(where)
            else:
                problems["committed"].append(where)
            if staged.path.read_bytes() != ORIGINAL:
                problems["target changed"].append(where)
                staged.path.write_bytes(ORIGINAL)
            assert stat.S_IMODE(staged.path.stat().st_mode) == FILE_MODE
            assert _leftovers(staged.path) == [], where
    print(f"\n{mode}: flipped bits refused: {dict(kinds)}")
    if unnamed:
        print(f"  messages that do not name the shard: {sorted(unnamed)}")
    assert not problems, "\n".join(f"{what} <- {len(where)} flips, e.g. {where[:3]}"
                                    for what, where in problems.items())
    staged.restore()  # untouched staging still commits
    commit_edit(str(staged.staging), mode=mode, manifest_sha256=staged.manifest_sha256)
    assert staged.path.read_bytes() == apply_model(ORIGINAL, edits)
    assert _leftovers(staged.path) == []


@pytest.mark.parametrize(("edits", "mode"), CASES)
def test_missing_or_truncated_staging_is_refused(tmp_path: Path, edits: list,
                                                 mode: str) -> None:
    staged = stage(tmp_path, edits)
    shard = staged.shards[len(staged.shards) // 2]
    results = sorted((staged.staging / "results").glob("batch-*.json"))
    assert results

    def tamper_cases():
        yield "missing shard", lambda: (staged.staging / shard.name).unlink(), StagingError
        raw = (staged.backup / shard.name).read_bytes()
        yield "truncated payload", lambda: (staged.staging / shard.name).write_bytes(
            raw[:-1]), StagingError
        yield "truncated header", lambda: (staged.staging / shard.name).write_bytes(
            raw[:HEADER_SIZE // 2]), StagingError
        yield "empty shard", lambda: (staged.staging / shard.name).write_bytes(b""), \
            StagingError
        other = staged.shards[0] if shard != staged.shards[0] else staged.shards[-1]
        yield "another shard's file", lambda: shutil.copy(
            staged.backup / other.name, staged.staging / shard.name), StagingError
        yield "missing batch result", lambda: (
            staged.staging / "results" / results[-1].name).unlink(), StagingError
        yield "missing manifest", lambda: (staged.staging / "manifest.json").unlink(), \
            StagingError
        yield "corrupt manifest", lambda: (staged.staging / "manifest.json").write_text(
            "{not json"), StagingError

    for name, tamper, expected in tamper_cases():
        staged.restore()
        tamper()
        # without a readable manifest the commit cannot tell whose staging it is: kept
        error = _refused(staged, mode, name, clean="manifest" not in name)
        assert isinstance(error, expected), f"{name}: {type(error).__name__}: {error}"
    # a batch list naming a batch whose results are missing
    staged.restore()
    (staged.staging / "results" / results[0].name).unlink()
    first = int(results[0].name.split("-")[1].split(".")[0])
    with pytest.raises(StagingError):
        commit_edit(str(staged.staging), mode=mode,
                    batches=[{"staging": str(staged.staging), "first": first,
                              "last": first, "job_id": staged.staging.name,
                              "manifest_sha256": staged.manifest_sha256}])
    _unchanged(staged.path)


def test_shard_from_another_job_is_refused(tmp_path: Path) -> None:
    """Two plans of different edits with the same shard geometry: job A's staged shard
    copied over job B's must not be committed as B's."""
    path = _target(tmp_path)
    a = stage(tmp_path, [Patch(40_000, b"AAAA")], path)
    b = stage(tmp_path, [Patch(40_000, b"BBBB")], path)
    assert len(a.shards) == len(b.shards)
    for shard_a, shard_b in zip(a.shards, b.shards, strict=True):
        shutil.copy(a.backup / shard_a.name, shard_b)
    with pytest.raises(BigFileError):
        commit_edit(str(b.staging), manifest_sha256=b.manifest_sha256)
    _unchanged(path)


# -- the source changed between plan and commit --------------------------------------------

def _append_byte(path: Path) -> None:
    with open(path, "ab") as f:
        f.write(b"!")


def _same_size_new_mtime(path: Path) -> None:
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[50_000] ^= 0xFF
    with open(path, "r+b") as f:
        f.write(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))


def _new_inode(path: Path) -> None:
    tmp = path.with_name("other-writer.tmp")
    tmp.write_bytes(path.read_bytes().replace(b"old.com", b"OLD.com"))
    os.chmod(tmp, FILE_MODE)
    os.replace(tmp, path)


def _same_size_same_mtime(path: Path) -> None:
    """A writer that keeps size, inode and mtime (as ``touch -r``, ``rsync -t`` or a write
    within the filesystem's timestamp granularity do): only the shards' CRCs can tell."""
    st = path.stat()
    data = bytearray(path.read_bytes())
    for offset in (60, 40_010, 90_000 + 5, 120_000):  # changed shards and untouched ones
        data[offset] ^= 0xFF
    with open(path, "r+b") as f:
        f.write(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


WRITERS = [pytest.param(_append_byte, id="append-a-byte"),
           pytest.param(_same_size_new_mtime, id="same-size-new-mtime"),
           pytest.param(_new_inode, id="new-inode"),
           pytest.param(_same_size_same_mtime, id="same-size-same-mtime")]


@pytest.mark.parametrize("other_writer", WRITERS)
@pytest.mark.parametrize(("edits", "mode"), CASES)
def test_source_changed_before_commit(tmp_path: Path, edits: list, mode: str,
                                      other_writer) -> None:
    staged = stage(tmp_path, edits)
    other_writer(staged.path)
    theirs = staged.path.read_bytes()
    assert theirs != ORIGINAL
    with pytest.raises((SourceChangedError, ShardChecksumError)):
        commit_edit(str(staged.staging), mode=mode, manifest_sha256=staged.manifest_sha256)
    assert staged.path.read_bytes() == theirs, "the other writer's file was changed"
    assert stat.S_IMODE(staged.path.stat().st_mode) == FILE_MODE
    assert [n for n in _leftovers(staged.path) if "journal" in n or n.endswith(".new")] == []


@pytest.mark.parametrize("other_writer", WRITERS[:3])
def test_source_changed_before_patch(tmp_path: Path, other_writer) -> None:
    """Changed between plan and patch: the worker's source check or the commit refuses."""
    path = _target(tmp_path)
    planned = plan_edit(str(path), [Replace(b"@old.com", b"@new.com")], shard_size=SHARD)
    other_writer(path)
    theirs = path.read_bytes()
    errors = [e for batch in planned.batches for e in patch_batch(batch)["errors"]]
    with pytest.raises((SourceChangedError, ShardChecksumError)):
        commit_edit(planned.staging, batches=planned.batches)
    assert path.read_bytes() == theirs
    if other_writer is not _append_byte:  # an append leaves the planned ranges as they were
        assert errors, "the workers read a changed source without noticing"


# -- I/O failing during the commit ----------------------------------------------------------

def _fd_path(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return ""


FAULTS = [
    # (id, mode, edits, function, errno, which call on the matching file fails)
    pytest.param("inplace", SAME_LENGTH, "pwrite", 5, "target", 2, id="inplace-pwrite-EIO"),
    pytest.param("inplace", [*SAME_LENGTH, Append(b"more\n" * 1000)], "pwrite", 28, "tail",
                 1, id="inplace-append-ENOSPC"),
    pytest.param("inplace", SAME_LENGTH, "fsync", 5, "target", 1, id="inplace-fsync-EIO"),
    pytest.param("rewrite", LENGTH_CHANGING, "pwrite", 28, "new", 1, id="rewrite-pwrite-ENOSPC"),
    pytest.param("rewrite", LENGTH_CHANGING, "fsync", 5, "new", 1, id="rewrite-fsync-EIO"),
]


@pytest.mark.parametrize(("mode", "edits", "call", "err", "where", "nth"), FAULTS)
def test_io_error_during_commit_leaves_the_old_file(tmp_path: Path, monkeypatch, mode: str,
                                                     edits: list, call: str, err: int,
                                                     where: str, nth: int) -> None:
    """A permanent I/O error while the commit writes: a BigFileError, and when the call
    returns the target is the old file (an in-place commit rolls its journal back at once,
    not only at the next job's recovery), with no journal or new file left."""
    path = _target(tmp_path)
    real = getattr(os, call)
    seen = []

    def matches(fd: int, args: tuple) -> bool:
        name = _fd_path(fd)
        if where == "new":
            return name.endswith(".new")
        if name != str(path):
            return False
        return where != "tail" or (call == "pwrite" and args[1] >= len(ORIGINAL))

    def faulty(fd: int, *args):
        if matches(fd, args):
            seen.append(fd)
            if len(seen) == nth:
                raise OSError(err, os.strerror(err))
        return real(fd, *args)

    monkeypatch.setattr(os, call, faulty)
    with pytest.raises(BigFileError) as info:
        from airflow_bigfile import edit_file
        edit_file(str(path), edits, mode=mode, shard_size=SHARD, workers=1)
    monkeypatch.undo()
    assert len(seen) >= nth, "the fault was never injected"
    assert os.strerror(err) in str(info.value) or str(err) in str(info.value)
    _unchanged(path)
    assert _leftovers(path) == []
