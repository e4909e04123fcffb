"""Signals: SIGINT and SIGTERM cancel a ``bigfile`` run cleanly, workers die with the run.

The CLI runs as a subprocess on a file large enough to be mid-work when the signal comes.
After it, the target holds exactly the old bytes (exit 130/143) or, for a signal that came
after the commit point, exactly the new ones (exit 0 and a warning); the folder holds only
the target (no lock, journal, new file or staging), and no process the run started is left
(their pids are taken from /proc before the signal). Signals at exact points of a commit
come from the engine's test hook (``BIGFILE_CRASH=point:N:SIGTERM``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.procs import descendants, wait_until_gone

NAME = "big.csv"
BLOCK = b"x" * 4090 + b"NEEDLE"  # one match per 4 KiB
SIZE = 64 << 20
EDITS = {  # (arguments, the new bytes of one BLOCK)
    "rewrite": (["--find", "NEEDLE", "--replace", "NEEDLES"], b"x" * 4090 + b"NEEDLES"),
    "inplace": (["--find", "NEEDLE", "--replace", "needle", "--mode", "inplace"],
                b"x" * 4090 + b"needle"),
}
EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}
ENV = {k: v for k, v in os.environ.items() if k != "BIGFILE_CRASH"}


def make_file(folder: Path, size: int = SIZE) -> tuple[Path, bytes]:
    path = folder / NAME
    chunk = BLOCK * 256
    with open(path, "wb") as f:
        for _ in range(size // len(chunk)):
            f.write(chunk)
    return path, _hash(path)


def expected_hash(kind: str, size: int = SIZE) -> bytes:
    digest = hashlib.sha256()
    chunk = EDITS[kind][1] * 256
    for _ in range(size // (len(BLOCK) * 256)):
        digest.update(chunk)
    return digest.digest()


def _hash(path: Path) -> bytes:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(8 << 20):
            digest.update(chunk)
    return digest.digest()


def bigfile(path: Path, kind: str, executor: str, *extra: str,
            env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "airflow_bigfile", "replace", str(path), *EDITS[kind][0],
         "--shard-size", "256KiB", "--workers", "2", "--executor", executor, "--no-progress",
         *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env or ENV)


def wait_for_work(proc: subprocess.Popen[bytes], folder: Path, executor: str) -> dict[int, str]:
    """Wait until the run is patching (a staged shard exists; for processes, both workers
    run) and return its processes then."""
    staging = folder / f".{NAME}.bigfile-staging"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        procs = descendants(proc.pid)
        staged = staging.is_dir() and any(p.name.startswith("shards-")
                                          for job in staging.iterdir() for p in job.iterdir())
        if staged and (executor == "thread" or len(procs) >= 2):
            return procs
        time.sleep(0.005)
    raise AssertionError("the run never started patching")


def assert_clean(folder: Path) -> None:
    assert sorted(os.listdir(folder)) == [NAME]


# ---------------------------------------------------------------------------- tests


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    """One file to copy into each test's folder (writing it is most of a test's cost)."""
    return make_file(tmp_path_factory.mktemp("source"))


def _copy(big: tuple[Path, bytes], folder: Path) -> Path:
    path = folder / NAME
    shutil.copyfile(big[0], path)
    return path


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
@pytest.mark.parametrize("kind", ["rewrite", "inplace"])
@pytest.mark.parametrize("executor", ["thread", "process", "dask"])
def test_signal_while_patching(big: tuple[Path, bytes], tmp_path: Path, executor: str,
                               kind: str, signum: int) -> None:
    path = _copy(big, tmp_path)
    before = os.stat(path)
    proc = bigfile(path, kind, executor)
    procs = wait_for_work(proc, tmp_path, executor)
    proc.send_signal(signum)
    sent = time.monotonic()
    out, err = proc.communicate(timeout=30)
    took = time.monotonic() - sent
    name = signal.Signals(signum).name
    assert (proc.returncode, out, err) == (
        EXIT[signum], b"", f"bigfile: error: interrupted ({name}); nothing was changed\n"
        .encode())
    assert took < 3, f"cancelling took {took:.2f} s"
    assert _hash(path) == big[1]
    after = os.stat(path)
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == \
        (before.st_ino, before.st_size, before.st_mtime_ns)
    assert_clean(tmp_path)
    assert wait_until_gone(procs, 2) == []


SMALL = 4 << 20


@pytest.mark.parametrize(("kind", "point", "signum", "committed"), [
    ("rewrite", "rewrite-write:2", signal.SIGTERM, False),
    ("rewrite", "rewrite-synced:1", signal.SIGINT, False),
    ("rewrite", "renamed:1", signal.SIGTERM, True),
    ("inplace", "journal-write:1", signal.SIGTERM, False),
    ("inplace", "data-write:3", signal.SIGINT, False),
    ("inplace", "data-synced:1", signal.SIGTERM, False),
    ("inplace", "journal-removed:1", signal.SIGINT, True),
], ids=lambda v: v.name if isinstance(v, signal.Signals) else str(v))
def test_signal_during_commit(tmp_path: Path, kind: str, point: str, signum: int,
                              committed: bool) -> None:
    """Before the commit point the run is cancelled (an in-place commit rolls back); inside
    it the signal is held, and after it the edit stands: exit 0 and a warning."""
    path, old = make_file(tmp_path, SMALL)
    name = signal.Signals(signum).name
    proc = bigfile(path, kind, "thread", env={**ENV, "BIGFILE_CRASH": f"{point}:{name}"})
    out, err = proc.communicate(timeout=60)
    if committed:
        assert proc.returncode == 0, err
        assert out.startswith(b"replaced 1,024 matches")
        assert err.endswith(f"bigfile: warning: {name} arrived after the edit was committed; "
                            f"it was not cancelled\n".encode())
        assert _hash(path) == expected_hash(kind, SMALL)
    else:
        assert (proc.returncode, out) == (EXIT[signum], b"")
        assert err.endswith(f"bigfile: error: interrupted ({name}); nothing was changed\n"
                            .encode())
        assert _hash(path) == old
    assert_clean(tmp_path)


def test_sigkill_leaves_no_worker_and_a_free_lock(big: tuple[Path, bytes],
                                                  tmp_path: Path) -> None:
    """SIGKILL cannot be caught: the workers must still end with the run (they are told to
    die with their parent), and none of them keeps the target's lock."""
    path = _copy(big, tmp_path)
    proc = bigfile(path, "rewrite", "process")
    procs = wait_for_work(proc, tmp_path, "process")
    proc.kill()
    proc.communicate(timeout=30)
    assert wait_until_gone(procs, 2) == []
    again = subprocess.run(
        [sys.executable, "-m", "airflow_bigfile", "patch", str(path), "--offset", "0",
         "--data", "y"], capture_output=True, env=ENV, timeout=60)
    assert again.returncode == 0, again.stderr
    assert_clean(tmp_path)
    with open(path, "rb") as f:
        assert f.read(len(BLOCK)) == b"y" + BLOCK[1:]
    assert os.path.getsize(path) == SIZE


def test_on_kill_stops_workers(big: tuple[Path, bytes], tmp_path: Path) -> None:
    """The operator's on_kill (Airflow calls it from its SIGTERM handler) stops a running
    edit's workers promptly; the task fails retryably and leaves the target as it was."""
    import threading

    from airflow.exceptions import AirflowException
    from airflow_bigfile.operators import BigFileEditOperator

    path = _copy(big, tmp_path)
    op = BigFileEditOperator(task_id="e", path=str(path), shard_size="256KiB", workers=2,
                             edits=[{"op": "replace", "find": "NEEDLE", "replace": "NEEDLES"}])
    staging = tmp_path / f".{NAME}.bigfile-staging"
    killed: list[float] = []

    def kill_when_patching() -> None:
        while not (staging.is_dir() and any(staging.iterdir())):
            time.sleep(0.005)
        killed.append(time.monotonic())
        op.on_kill()

    killer = threading.Thread(target=kill_when_patching)
    killer.start()
    with pytest.raises(AirflowException, match="the task was killed"):
        op.execute({})
    took = time.monotonic() - killed[0]
    killer.join()
    assert took < 2, f"stopping took {took:.2f} s"
    assert _hash(path) == big[1]
    assert_clean(tmp_path)


RUNAWAY = b"a" * 40 + b"b\n"  # (a+)+(?=c) backtracks on it for hours


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
@pytest.mark.parametrize(("executor", "size"), [
    pytest.param([], len(RUNAWAY), id="default-one-shard"),   # re in the main thread
    pytest.param([], 4 << 20, id="default-many-shards"),      # in worker processes
    pytest.param(["--executor", "process"], len(RUNAWAY), id="process"),
])
def test_signal_stops_a_runaway_regex(tmp_path: Path, executor: list[str], size: int,
                                      signum: int) -> None:
    """A pattern only ``re`` runs, backtracking for hours: the thread executor runs it in
    the main thread (one shard) or in worker processes (more), never in a thread that holds
    the GIL, so a signal stops it at once, target unchanged, nothing left running."""
    path = tmp_path / NAME
    data = RUNAWAY + b"x" * (size - len(RUNAWAY))
    path.write_bytes(data)
    proc = subprocess.Popen(
        [sys.executable, "-m", "airflow_bigfile", "replace", str(path), "--regex",
         "--find", "(a+)+(?=c)", "--replace", "X", "--workers", "2", *executor,
         "--no-progress"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)
    staging = tmp_path / f".{NAME}.bigfile-staging"
    deadline = time.monotonic() + 30
    while not staging.is_dir() and time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.01)
    time.sleep(2)  # deep in re's backtracking now
    workers = descendants(proc.pid)
    assert proc.poll() is None
    assert bool(workers) == (size > len(RUNAWAY) or bool(executor))
    proc.send_signal(signum)
    sent = time.monotonic()
    _, err = proc.communicate(timeout=10)
    took = time.monotonic() - sent
    assert proc.returncode == EXIT[signum], err
    assert took < 2, f"stopping took {took:.2f} s"
    assert b"nothing was changed" in err and b"Traceback" not in err
    assert path.read_bytes() == data
    assert_clean(tmp_path)
    assert wait_until_gone(workers, 5) == []


def test_regex_timeout_stops_a_runaway_regex(tmp_path: Path) -> None:
    """``--regex-timeout 1``: exit 1 soon after a second, the pattern named, nothing left."""
    path = tmp_path / NAME
    data = b"x,1\n" * 5000 + b"a" * 40 + b"\n"
    path.write_bytes(data)
    cli = [sys.executable, "-m", "airflow_bigfile", "replace", str(path), "--regex",
           "--find", "(a+)+(?=c)", "--replace", "X", "--no-progress"]
    started = time.monotonic()
    run = subprocess.run([*cli, "--regex-timeout", "1"], capture_output=True, env=ENV,
                         timeout=30)
    took = time.monotonic() - started
    assert run.returncode == 1, run.stderr
    assert took < 5, f"stopping took {took:.2f} s"
    assert run.stderr.startswith(b"bigfile: error: edit #1 regex(b'(a+)+(?=c)'")
    assert b"regex_timeout=1 s" in run.stderr and b"Traceback" not in run.stderr
    assert path.read_bytes() == data
    assert_clean(tmp_path)
    dry = subprocess.run([*cli, "--regex-timeout", "1", "--dry-run"], capture_output=True,
                         env=ENV, timeout=30)
    assert dry.returncode == 1 and b"regex_timeout=1 s" in dry.stderr, dry.stderr
    bad_values = {value: f"--regex-timeout: expected a positive number of seconds, got "
                         f"'{value}'" for value in ("0", "-1", "abc")}
    for value, message in [*bad_values.items(),
                           ("1 --preview 3", "--regex-timeout does not apply to --preview")]:
        bad = subprocess.run([*cli, "--regex-timeout", *value.split()], capture_output=True,
                             env=ENV)
        assert bad.returncode == 2
        assert message in bad.stderr.decode()
        assert path.read_bytes() == data
        assert_clean(tmp_path)
