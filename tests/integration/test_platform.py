"""The paths other platforms take, simulated here: no ``os.pwrite`` (seek+write), ``mmap``
refused or failing (pwrite), no ``fcntl`` (an exclusively created lock file), no ``preadv``
(the rewrite's copies read with ``pread``), a target that cannot be replaced at once (Windows
while a reader holds it). Every commit must still give the model's bytes.
"""

from __future__ import annotations

import errno
import json
import mmap
import os
import sys
import threading
from pathlib import Path

import pytest
from fsspec.callbacks import Callback

import airflow_bigfile.io.lock as lock_module
from airflow_bigfile import (
    Append,
    BigFileError,
    Delete,
    Insert,
    Patch,
    Replace,
    TargetLockedError,
    Truncate,
    edit_file,
    recover_target,
)
from airflow_bigfile.io.lock import lock_path
from tests.model import apply_model

ORIGINAL = b"".join(b"%05d;user%d@old.com;%s\n" % (i, i % 50, b"z" * (i % 17))
                    for i in range(6000))
SAME_LENGTH = [Replace(b"@old.com", b"@OLD.com"), Patch(0, b"PATCH"),
               Patch(ORIGINAL.rindex(b"zzz"), b"end"), Truncate(len(ORIGINAL) - 1),
               Append(b"++")]
# leaves most shards unchanged, so a rewrite copies them from the source
LENGTH_CHANGING = [Insert(0, b"header\n"), Delete(100, 50), Insert(50_000, b"middle"),
                   Patch(120_000, b"PATCH"), Append(b"footer\n")]
OPTIONS = {"shard_size": "16KiB", "workers": 2}


def _target(tmp_path: Path) -> Path:
    path = tmp_path / "data.csv"
    path.write_bytes(ORIGINAL)
    os.chmod(path, 0o640)
    return path


def _leftovers(path: Path) -> list[str]:
    return sorted(set(os.listdir(path.parent)) - {path.name})


def check_result(path: Path, edits: list, result, mode: str) -> None:
    assert result.commit_mode == mode
    assert path.read_bytes() == apply_model(ORIGINAL, edits)
    assert os.stat(path).st_mode & 0o7777 == 0o640
    assert _leftovers(path) == []


# -- pwrite ---------------------------------------------------------------------------------

def test_no_pwrite_inplace_uses_seek_and_write(tmp_path: Path, monkeypatch) -> None:
    path = _target(tmp_path)
    lseeks = []
    real_lseek = os.lseek
    monkeypatch.delattr(os, "pwrite")
    monkeypatch.setattr(os, "lseek", lambda *a: lseeks.append(a) or real_lseek(*a))
    result = edit_file(str(path), SAME_LENGTH, mode="inplace", **OPTIONS)
    check_result(path, SAME_LENGTH, result, "inplace")
    assert lseeks, "seek+write was not used"


def test_no_pwrite_rewrite(tmp_path: Path, monkeypatch) -> None:
    path = _target(tmp_path)
    monkeypatch.delattr(os, "pwrite")
    result = edit_file(str(path), LENGTH_CHANGING, mode="rewrite", **OPTIONS)
    check_result(path, LENGTH_CHANGING, result, "rewrite")


def test_no_pwrite_recovery(tmp_path: Path, monkeypatch) -> None:
    """A journal left by a killed in-place commit rolls back without pwrite too."""
    path = _target(tmp_path)
    from airflow_bigfile.commit.journal import write_journal
    from airflow_bigfile.io.oscompat import fsync_file
    from airflow_bigfile.io.sidecars import Sidecars

    fd = os.open(path, os.O_RDWR)
    try:
        st = os.fstat(fd)
        write_journal(Sidecars.of(str(path)), fd, [(10, 20), (5000, 7)], st, st.st_size + 3,
                      fsync_file)
        os.pwrite(fd, b"X" * 20, 10)   # the killed commit had begun writing
        os.ftruncate(fd, st.st_size + 3)
    finally:
        os.close(fd)
    monkeypatch.delattr(os, "pwrite")
    assert recover_target(str(path)).rolled_back
    assert path.read_bytes() == ORIGINAL
    assert _leftovers(path) == []


# -- mmap -----------------------------------------------------------------------------------

def test_mmap_refused_falls_back_to_pwrite(tmp_path: Path, monkeypatch) -> None:
    path = _target(tmp_path)
    tried = []

    def refuse(*args, **kwargs):
        tried.append(args)
        raise OSError(errno.ENODEV, "mmap not supported here")

    monkeypatch.setattr(mmap, "mmap", refuse)
    result = edit_file(str(path), SAME_LENGTH, mode="inplace", writer="mmap", **OPTIONS)
    check_result(path, SAME_LENGTH, result, "inplace")
    assert tried, "mmap was never tried"


class FailingMap:
    """A real mapping that fails after ``ok`` writes (as a mapping past a shrunk file or on a
    full disk would)."""

    def __init__(self, real: mmap.mmap, ok: int) -> None:
        self.real, self.ok = real, ok
        self.writes = 0

    def __setitem__(self, key, value) -> None:
        self.writes += 1
        if self.writes > self.ok:
            raise OSError(errno.EIO, "mapped write failed")
        self.real[key] = value

    def __getitem__(self, key):
        return self.real[key]

    def __len__(self) -> int:
        return len(self.real)

    def flush(self, *args) -> None:
        self.real.flush(*args)

    def close(self) -> None:
        self.real.close()


@pytest.mark.parametrize("ok", [0, 1, 3])
def test_mmap_failing_midway_falls_back_to_pwrite(tmp_path: Path, monkeypatch, ok: int) -> None:
    path = _target(tmp_path)
    real_mmap = mmap.mmap
    maps: list[FailingMap] = []

    def failing(*args, **kwargs):
        maps.append(FailingMap(real_mmap(*args, **kwargs), ok))
        return maps[-1]

    monkeypatch.setattr(mmap, "mmap", failing)
    result = edit_file(str(path), SAME_LENGTH, mode="inplace", writer="mmap", **OPTIONS)
    check_result(path, SAME_LENGTH, result, "inplace")
    assert maps and any(m.writes > ok for m in maps), "the failing mapping was not used"


def test_mmap_refused_and_no_pwrite(tmp_path: Path, monkeypatch) -> None:
    path = _target(tmp_path)
    monkeypatch.setattr(mmap, "mmap", lambda *a, **k: (_ for _ in ()).throw(
        OSError(errno.ENODEV, "no mmap")))
    monkeypatch.delattr(os, "pwrite")
    result = edit_file(str(path), SAME_LENGTH, mode="inplace", writer="mmap", **OPTIONS)
    check_result(path, SAME_LENGTH, result, "inplace")


# -- locking without fcntl ------------------------------------------------------------------

class Hold(Callback):
    """Keeps its job inside the target's lock until released."""

    def __init__(self) -> None:
        super().__init__()
        self.entered, self.release = threading.Event(), threading.Event()

    def set_size(self, size: int) -> None:
        self.entered.set()
        assert self.release.wait(60)
        super().set_size(size)


def test_lock_without_fcntl_excludes_a_second_job(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(lock_module, "fcntl", None)
    path = _target(tmp_path)
    hold, errors = Hold(), []

    def first() -> None:
        try:
            edit_file(str(path), SAME_LENGTH, progress=hold, **OPTIONS)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=first)
    thread.start()
    try:
        assert hold.entered.wait(30)
        assert os.path.exists(lock_path(str(path)))
        with pytest.raises(TargetLockedError, match=f"pid {os.getpid()}"):
            edit_file(str(path), [Patch(0, b"B")], **OPTIONS)
        with pytest.raises(TargetLockedError):
            recover_target(str(path))
        assert path.read_bytes() == ORIGINAL
    finally:
        hold.release.set()
        thread.join(60)
    assert not errors, errors
    assert path.read_bytes() == apply_model(ORIGINAL, SAME_LENGTH)
    assert not os.path.exists(lock_path(str(path)))
    # and the next job gets the lock
    edit_file(str(path), [Patch(0, b"B")], **OPTIONS)
    assert path.read_bytes() == apply_model(apply_model(ORIGINAL, SAME_LENGTH), [Patch(0, b"B")])
    assert _leftovers(path) == []


def test_lock_without_fcntl_waits(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(lock_module, "fcntl", None)
    path = _target(tmp_path)
    hold = Hold()
    thread = threading.Thread(target=edit_file, args=(str(path), SAME_LENGTH),
                              kwargs={"progress": hold, **OPTIONS})
    thread.start()
    assert hold.entered.wait(30)
    threading.Timer(0.5, hold.release.set).start()
    edit_file(str(path), [Patch(0, b"B")], wait=30, **OPTIONS)
    thread.join(60)
    assert path.read_bytes() == apply_model(apply_model(ORIGINAL, SAME_LENGTH), [Patch(0, b"B")])


def test_lock_without_fcntl_after_a_crash(tmp_path: Path, monkeypatch) -> None:
    """A lock file left by a job that died (its pid gone, on this host) must not lock the
    target forever: the next job (or recovery) takes it over."""
    monkeypatch.setattr(lock_module, "fcntl", None)
    path = _target(tmp_path)
    dead = os.fork()
    if dead == 0:
        os._exit(0)
    os.waitpid(dead, 0)
    with open(lock_path(str(path)), "w", encoding="utf-8") as f:
        json.dump({"pid": dead, "host": os.uname().nodename, "job": "killed",
                   "since": "2020-01-01T00:00:00"}, f)
    recover_target(str(path))
    edit_file(str(path), [Patch(0, b"B")], **OPTIONS)
    assert path.read_bytes()[:1] == b"B"
    assert _leftovers(path) == []


def test_no_fcntl_module_at_all(tmp_path: Path, monkeypatch) -> None:
    """As on Windows: ``import fcntl`` fails everywhere, not just in the lock."""
    monkeypatch.setattr(lock_module, "fcntl", None)
    monkeypatch.setitem(sys.modules, "fcntl", None)  # makes `import fcntl` raise ImportError
    path = _target(tmp_path)
    result = edit_file(str(path), SAME_LENGTH, mode="inplace", **OPTIONS)
    check_result(path, SAME_LENGTH, result, "inplace")
    result = edit_file(str(path), [Insert(0, b"x")], mode="rewrite", **OPTIONS)
    assert path.read_bytes() == b"x" + apply_model(ORIGINAL, SAME_LENGTH)


# -- the rewrite's copies ------------------------------------------------------------------

def test_copies_write_whole_buffers_at_aligned_offsets(tmp_path: Path, monkeypatch) -> None:
    """Bytes shifted by an insert are copied in chunks that end on a multiple of the copy
    buffer in the new file, so no page is written by two calls (only the runs' own ends)."""
    import airflow_bigfile.commit.rewrite as rewrite

    monkeypatch.setattr(rewrite, "COPY_BUFFER", 8192)
    data = bytes(range(256)) * 4096  # 1 MiB
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    writes: list[tuple[int, int]] = []
    real = os.pwrite

    def record(fd: int, buf, offset: int) -> int:
        writes.append((offset, len(buf)))
        return real(fd, buf, offset)

    monkeypatch.setattr(os, "pwrite", record)
    edit_file(str(path), [Insert(3, b"abc")], shard_size="64KiB", mode="rewrite")
    assert path.read_bytes() == data[:3] + b"abc" + data[3:]
    ends = sorted(offset + length for offset, length in writes)
    unaligned = [end for end in ends if end % 8192]
    assert len(writes) > 100
    assert len(unaligned) <= 5, unaligned  # the patched shard's own writes, the end


def test_a_read_error_while_copying_is_reported(tmp_path: Path, monkeypatch) -> None:
    """EIO from a read of the source while copying is not papered over: a clear error, the
    old file kept, nothing left beside it."""
    import airflow_bigfile.commit.rewrite as rewrite

    path = _target(tmp_path)

    def broken(*args, **kwargs):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(rewrite, "readinto", broken)
    with pytest.raises(BigFileError, match="Input/output error|EIO"):
        edit_file(str(path), LENGTH_CHANGING, mode="rewrite", **OPTIONS)
    assert path.read_bytes() == ORIGINAL
    assert _leftovers(path) == []


@pytest.mark.parametrize("platform", ["linux", "win32"])
def test_writeback_hint_where_there_is_one_and_where_not(tmp_path: Path, monkeypatch,
                                                         platform: str) -> None:
    """``sync_file_range`` starts writeback early on Linux; elsewhere the hint is skipped and
    the commit's fsync alone makes the file durable."""
    import airflow_bigfile.io.oscompat as oscompat

    monkeypatch.setattr(oscompat, "_sync_file_range", None)
    monkeypatch.setattr(sys, "platform", platform)
    path = _target(tmp_path)
    with open(path, "rb+") as f:
        oscompat.start_writeback(f.fileno(), 0, 4096)
    assert bool(oscompat._sync_file_range) == (platform == "linux")
    result = edit_file(str(path), LENGTH_CHANGING, mode="rewrite",
                       **{**OPTIONS, "block_size": "4KiB"})
    check_result(path, LENGTH_CHANGING, result, "rewrite")


# -- replacing a target that is held open (Windows) -----------------------------------------

def test_replace_retried_while_target_is_held(tmp_path: Path, monkeypatch) -> None:
    path = _target(tmp_path)
    real_replace = os.replace
    refusals = []

    def held(src, dst, *args, **kwargs):
        if os.path.abspath(dst) == os.path.abspath(path) and len(refusals) < 2:
            refusals.append(src)
            raise PermissionError(errno.EACCES, "The process cannot access the file because "
                                                "it is being used by another process", str(dst))
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", held)
    result = edit_file(str(path), LENGTH_CHANGING, mode="rewrite", **OPTIONS)
    check_result(path, LENGTH_CHANGING, result, "rewrite")
    assert len(refusals) == 2


def test_replace_refused_for_good_keeps_the_old_file(tmp_path: Path, monkeypatch) -> None:
    path = _target(tmp_path)
    real_replace = os.replace

    def held(src, dst, *args, **kwargs):
        if os.path.abspath(dst) == os.path.abspath(path):
            raise PermissionError(errno.EACCES, "held by another process", str(dst))
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", held)
    with pytest.raises(BigFileError):
        edit_file(str(path), LENGTH_CHANGING, mode="rewrite", **OPTIONS)
    assert path.read_bytes() == ORIGINAL
    assert _leftovers(path) == []


# -- all of it at once ----------------------------------------------------------------------

@pytest.mark.parametrize(("edits", "mode"), [(SAME_LENGTH, "inplace"),
                                             (LENGTH_CHANGING, "rewrite")],
                         ids=["inplace", "rewrite"])
def test_windows_like(tmp_path: Path, monkeypatch, edits: list, mode: str) -> None:
    """No fcntl, pwrite, pread or preadv, and mmap refused."""
    monkeypatch.setattr(lock_module, "fcntl", None)
    monkeypatch.setitem(sys.modules, "fcntl", None)
    for name in ("pwrite", "pread", "preadv"):
        monkeypatch.delattr(os, name, raising=False)
    monkeypatch.setattr(mmap, "mmap", lambda *a, **k: (_ for _ in ()).throw(
        OSError(errno.EINVAL, "no mmap")))
    path = _target(tmp_path)
    result = edit_file(str(path), edits, mode=mode, writer="mmap", **OPTIONS)
    check_result(path, edits, result, mode)
