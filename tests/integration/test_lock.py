"""Locking: two jobs on one target never interleave.

A job is held inside its lock by a progress callback (``set_size`` is called under the lock,
after planning and before the commit), so the tests know for sure that the lock is taken;
a second job then fails at once with :class:`TargetLockedError` naming the holder, or with
``wait=`` waits and runs after it. Races without a held job check that the final bytes are
the model's edits applied one job after another, in the order they ran.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fsspec.callbacks import Callback

from airflow_bigfile import (
    Append,
    Patch,
    Replace,
    TargetLockedError,
    edit_file,
    plan_edit,
    recover_target,
)
from airflow_bigfile.edits import edit_to_json
from airflow_bigfile.io.lock import lock_path
from tests.model import apply_model

ROOT = str(Path(__file__).resolve().parents[2])
ORIGINAL = b"".join(b"row %05d,a,b,c\n" % i for i in range(3000))
EDIT_A = [Replace(b",a,", b",AAA,"), Append(b"from A\n")]
EDIT_B = [Patch(0, b"ROW"), Append(b"from B\n")]


def _target(tmp_path: Path, data: bytes = ORIGINAL) -> Path:
    path = tmp_path / "data.csv"
    path.write_bytes(data)
    os.chmod(path, 0o640)
    return path


def _leftovers(path: Path) -> list[str]:
    return sorted(set(os.listdir(path.parent)) - {path.name})


class Hold(Callback):
    """A progress callback that keeps its job inside the lock until released."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def set_size(self, size: int) -> None:
        self.entered.set()
        assert self.release.wait(60), "never released"
        super().set_size(size)


class Holder:
    """Runs ``edit_file`` in a thread and keeps it inside the target's lock."""

    def __init__(self, path: Path, edits: list) -> None:
        self.hold = Hold()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(path, edits))
        self.thread.start()
        assert self.hold.entered.wait(30), "the holding job never took the lock"

    def _run(self, path: Path, edits: list) -> None:
        try:
            edit_file(str(path), edits, progress=self.hold, workers=1, shard_size="16KiB")
        except BaseException as exc:  # reported by finish()
            self.error = exc

    def finish(self) -> None:
        self.hold.release.set()
        self.thread.join(60)
        assert not self.thread.is_alive()
        if self.error is not None:
            raise self.error


# -- threads in one process ---------------------------------------------------------------

def test_second_job_fails_naming_the_holder(tmp_path: Path) -> None:
    path = _target(tmp_path)
    holder = Holder(path, EDIT_A)
    try:
        assert os.path.exists(lock_path(str(path)))
        started = time.monotonic()
        with pytest.raises(TargetLockedError) as info:
            edit_file(str(path), EDIT_B, workers=1)
        assert time.monotonic() - started < 5
        message = str(info.value)
        assert f"pid {os.getpid()}" in message
        assert re.search(r"job \d{8}T\d{6}-[0-9a-f]+", message), message
        assert "--wait" in message or "wait" in message
        assert path.read_bytes() == ORIGINAL  # the holder has not committed yet
    finally:
        holder.finish()
    assert path.read_bytes() == apply_model(ORIGINAL, EDIT_A)
    assert _leftovers(path) == []


def test_other_entry_points_respect_the_lock(tmp_path: Path) -> None:
    """Recovery must not touch a target a live job holds; planning must not start."""
    path = _target(tmp_path)
    holder = Holder(path, EDIT_A)
    try:
        with pytest.raises(TargetLockedError):
            recover_target(str(path))
        with pytest.raises(TargetLockedError):
            plan_edit(str(path), EDIT_B, staging=str(tmp_path / "staging"))
        with pytest.raises(TargetLockedError):
            edit_file(str(path), EDIT_B, dry_run=True, workers=1)
    finally:
        holder.finish()
    assert path.read_bytes() == apply_model(ORIGINAL, EDIT_A)
    assert _leftovers(path) == []


def test_second_job_waits_then_runs_after(tmp_path: Path) -> None:
    path = _target(tmp_path)
    holder = Holder(path, EDIT_A)
    done = threading.Event()
    errors: list[BaseException] = []

    def second() -> None:
        try:
            edit_file(str(path), EDIT_B, wait=30, workers=1)
        except BaseException as exc:
            errors.append(exc)
        done.set()

    waiter = threading.Thread(target=second)
    try:
        waiter.start()
        assert not done.wait(0.5), "the second job did not wait for the lock"
        assert path.read_bytes() == ORIGINAL
    finally:
        holder.finish()
    assert done.wait(30)
    waiter.join()
    assert not errors, errors
    assert path.read_bytes() == apply_model(apply_model(ORIGINAL, EDIT_A), EDIT_B)
    assert _leftovers(path) == []


def test_wait_runs_out(tmp_path: Path) -> None:
    path = _target(tmp_path)
    holder = Holder(path, EDIT_A)
    try:
        started = time.monotonic()
        with pytest.raises(TargetLockedError, match=f"pid {os.getpid()}"):
            edit_file(str(path), EDIT_B, wait=0.6, workers=1)
        assert 0.5 <= time.monotonic() - started < 10
    finally:
        holder.finish()
    assert path.read_bytes() == apply_model(ORIGINAL, EDIT_A)


# -- races: the result is the model's edits, one job after another ------------------------

RACE_ORIGINAL = b"".join(b"line %04d\n" % i for i in range(2000))


def race_edits(tag: int) -> list:
    """Job ``tag`` appends ``<tag>`` and doubles every ``<`` already in the file, so the final
    tail shows the order the jobs ran in and any lost or interleaved update shows too."""
    return [Replace(b"<", b"<<"), Append(b"<%d>" % tag)]


def _order_from(data: bytes, tags: set[int]) -> list[int]:
    order = [int(m.group(1)) for m in re.finditer(rb"<+(\d+)>", data)]
    assert sorted(order) == sorted(tags), (order, tags)
    return order


def check_race(path: Path, succeeded: set[int]) -> list[int]:
    data = path.read_bytes()
    order = _order_from(data, succeeded)
    model = RACE_ORIGINAL
    for tag in order:
        model = apply_model(model, race_edits(tag))
    assert data == model
    assert _leftovers(path) == []
    return order


def test_threads_race_with_wait(tmp_path: Path) -> None:
    path = _target(tmp_path, RACE_ORIGINAL)
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda tag: edit_file(str(path), race_edits(tag), wait=60, workers=1,
                                            shard_size="4KiB"), range(6)))
    check_race(path, set(range(6)))


def test_threads_race_without_wait(tmp_path: Path) -> None:
    path = _target(tmp_path, RACE_ORIGINAL)
    barrier = threading.Barrier(4)

    def job(tag: int) -> bool:
        barrier.wait()
        try:
            edit_file(str(path), race_edits(tag), workers=1, shard_size="4KiB")
        except TargetLockedError:
            return False
        return True

    with ThreadPoolExecutor(4) as pool:
        ran = list(pool.map(job, range(4)))
    assert any(ran)
    check_race(path, {tag for tag, ok in enumerate(ran) if ok})


# -- separate processes -------------------------------------------------------------------

HOLDER_CHILD = textwrap.dedent(r"""
    import json, sys
    from fsspec.callbacks import Callback
    from airflow_bigfile import edit_file

    class Hold(Callback):
        def set_size(self, size):
            print("LOCKED", flush=True)
            sys.stdin.readline()
            super().set_size(size)

    cmd = json.loads(sys.argv[1])
    edit_file(cmd["path"], cmd["edits"], progress=Hold(), workers=1)
    print("DONE", flush=True)
""")

EDIT_CHILD = textwrap.dedent(r"""
    import json, sys
    from airflow_bigfile import BigFileError, edit_file

    cmd = json.loads(sys.argv[1])
    try:
        edit_file(cmd["path"], cmd["edits"], wait=cmd["wait"], workers=1,
                  shard_size=cmd.get("shard_size"))
    except BigFileError as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(1)
""")


def _child(script: str, path: Path, edits: list, **extra: object) -> subprocess.Popen:
    arg = json.dumps({"path": str(path), "edits": [edit_to_json(e) for e in edits], **extra})
    return subprocess.Popen([sys.executable, "-c", script, arg], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT)


def test_two_processes(tmp_path: Path) -> None:
    """Process A holds the lock; B (no wait) fails naming A's pid; the bigfile CLI fails
    with exit 1 and a one-line error; C (with wait) runs after A. Final: A then C."""
    path = _target(tmp_path)
    a = _child(HOLDER_CHILD, path, EDIT_A)
    try:
        assert a.stdout is not None and a.stdout.readline().strip() == "LOCKED"
        b = _child(EDIT_CHILD, path, EDIT_B, wait=0)
        c = _child(EDIT_CHILD, path, EDIT_B, wait=60)
        cli = subprocess.run([sys.executable, "-m", "airflow_bigfile", "append", str(path),
                              "--data", "cli"], capture_output=True, text=True, cwd=ROOT,
                             timeout=60)
        _, b_err = b.communicate(timeout=60)
        assert b.returncode == 1, b_err
        assert "TargetLockedError" in b_err and f"pid {a.pid}" in b_err, b_err
        assert cli.returncode == 1, cli.stderr
        assert cli.stderr.startswith("bigfile: error: ") and f"pid {a.pid}" in cli.stderr
        assert "Traceback" not in cli.stderr
        assert c.poll() is None, "C did not wait for the lock"
        assert path.read_bytes() == ORIGINAL
    finally:
        assert a.stdin is not None
        a.stdin.write("\n")
        a.stdin.flush()
    _, a_err = a.communicate(timeout=60)
    assert a.returncode == 0, a_err
    _, c_err = c.communicate(timeout=60)
    assert c.returncode == 0, c_err
    assert path.read_bytes() == apply_model(apply_model(ORIGINAL, EDIT_A), EDIT_B)
    assert _leftovers(path) == []


def test_processes_race(tmp_path: Path) -> None:
    """Five processes started together, some waiting and some not: each either runs whole or
    fails with TargetLockedError; the file is the model of those that ran, in their order."""
    path = _target(tmp_path, RACE_ORIGINAL)
    procs = [_child(EDIT_CHILD, path, race_edits(tag), wait=60 if tag % 2 == 0 else 0,
                    shard_size="4KiB") for tag in range(5)]
    succeeded = set()
    for tag, proc in enumerate(procs):
        _, err = proc.communicate(timeout=120)
        if proc.returncode == 0:
            succeeded.add(tag)
        else:
            assert proc.returncode == 1 and "TargetLockedError" in err, err
            assert tag % 2 == 1, f"job {tag} waited but failed: {err}"
    assert {0, 2, 4} <= succeeded
    check_race(path, succeeded)
