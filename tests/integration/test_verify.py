"""Verify levels: ``fast`` (the default) reads every source byte once and checks the file's
identity before the commit; ``full`` also reads the source and the bytes workers wrote
again. Both refuse a file another writer changed while it was being edited, including a
writer that keeps its size, mtime and inode (its ctime moves)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from fsspec.callbacks import Callback

from airflow_bigfile import EditError, Insert, Replace, SourceChangedError, edit_file
from tests.model import apply_model

DATA = b"".join(b"%08d,user%d@old.com\n" % (i, i % 97) for i in range(200_000))
SAME_LENGTH = [Replace(b"@old.com", b"@new.com")]
LENGTH_CHANGING = [Replace(b"@old.com", b"@newer.com")]
EDITS = [pytest.param(SAME_LENGTH, id="same-length"),
         pytest.param(LENGTH_CHANGING, id="length-changing"),
         pytest.param([Insert(10, b"INSERTED")], id="insert")]


def _read_bytes() -> int:
    """Bytes this process has read through read/pread so far (all its threads)."""
    with open("/proc/self/io") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("rchar:"))


@pytest.mark.parametrize(("edits", "fast_reads", "full_reads"), [
    pytest.param(SAME_LENGTH, 1, 3, id="same-length"),  # + the source and the new file again
    pytest.param(LENGTH_CHANGING, 2, 4, id="length-changing"),  # + staged output, once more
])
def test_fast_reads_each_byte_once(tmp_path: Path, edits: list, fast_reads: int,
                                   full_reads: int) -> None:
    """Counted in file lengths: fast reads the source once (and, when lengths change, the
    staged output once); full reads the source, the new bytes and the staged output again."""
    path = tmp_path / "data.csv"
    path.write_bytes(DATA[:4096])
    edit_file(str(path), edits)  # modules the engine imports lazily are read now, not below
    for verify, expected in (("fast", fast_reads), ("full", full_reads)):
        path.write_bytes(DATA)
        before = _read_bytes()
        result = edit_file(str(path), edits, verify=verify, workers=2)
        reads = (_read_bytes() - before) / len(DATA)
        assert result.commit_mode == "rewrite"
        assert path.read_bytes() == apply_model(DATA, edits)
        assert expected <= reads < expected + 0.2, f"{verify}: {reads:.2f} file lengths read"


@pytest.mark.parametrize(("edits", "fast"), [
    pytest.param(SAME_LENGTH, 0.0, id="same-length"),
    pytest.param(LENGTH_CHANGING, 2.0, id="length-changing"),  # staged: as written, as read
])
def test_only_full_takes_crcs_of_the_whole_file(tmp_path: Path, edits: list, fast: float,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Counted in file lengths. A fast job checks no CRC32C of the source or of the bytes
    workers write into the new file, so its workers take none (only a staged payload's,
    checked as the commit reads it); a full one takes them, and again to check them."""
    import airflow_bigfile.io.checksum as checksum

    crc = checksum._crc32c
    counted = [0]

    def counting(data, value=0):  # the real CRC32C, counting the bytes it covers
        counted[0] += len(data)
        return crc(data, value)

    monkeypatch.setattr(checksum, "_crc32c", counting)
    path = tmp_path / "data.csv"
    shares = {}
    for verify in ("fast", "full"):
        path.write_bytes(DATA)
        counted[0] = 0
        edit_file(str(path), edits, verify=verify, workers=2, shard_size="256KiB")
        assert path.read_bytes() == apply_model(DATA, edits)
        shares[verify] = counted[0] / len(DATA)
    assert fast <= shares["fast"] < fast + 0.25 and shares["full"] >= fast + 2, shares


class _OtherWriter(Callback):
    """Progress callback that, at the first shard done, changes bytes of the file being
    edited and puts its mtime back, as ``rsync -t`` or ``touch -r`` would."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path, self.theirs = path, b""

    def relative_update(self, inc: int = 1) -> None:
        if not self.theirs:
            st = self.path.stat()
            data = bytearray(self.path.read_bytes())
            for offset in (5, len(data) // 2, len(data) - 5):
                data[offset] ^= 0x20
            with open(self.path, "r+b") as f:
                f.write(data)
            os.utime(self.path, ns=(st.st_atime_ns, st.st_mtime_ns))
            self.theirs = bytes(data)
            assert self.path.stat().st_size == st.st_size
        super().relative_update(inc)


@pytest.mark.parametrize("verify", ["fast", "full"])
@pytest.mark.parametrize("edits", EDITS)
def test_writer_that_keeps_size_mtime_inode_is_refused(tmp_path: Path, edits: list,
                                                       verify: str) -> None:
    path = tmp_path / "data.csv"
    path.write_bytes(DATA)
    inode = path.stat().st_ino
    writer = _OtherWriter(path)
    with pytest.raises(SourceChangedError, match="changed since it was planned"):
        edit_file(str(path), edits, verify=verify, progress=writer, shard_size="256KiB",
                  workers=2)
    assert writer.theirs and path.read_bytes() == writer.theirs
    assert path.stat().st_ino == inode
    assert sorted(os.listdir(tmp_path)) == ["data.csv"]


def test_bad_verify_level_is_refused_before_any_io(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_bytes(DATA)
    with pytest.raises(EditError, match="verify must be fast or full, not 'some'"):
        edit_file(str(path), SAME_LENGTH, verify="some")
    assert path.read_bytes() == DATA
    assert sorted(os.listdir(tmp_path)) == ["data.csv"]
