"""``regex_timeout``: a regex that Python's ``re`` backtracks on for ever stops the edit with
an error naming it, the target as it was and nothing left beside it (no lock, staging or
worker process); a regex that keeps within the bound gives exactly ``re.sub``'s bytes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from airflow_bigfile import EditError, RegexTimeoutError, Replace, edit_file
from tests.procs import descendants, wait_until_gone

# Only re can run it (a lookahead); on a run of 40 "a"s it backtracks for hours.
RUNAWAY = rb"(a+)+(?=c)"
RUNAWAY_DATA = b"x,1\n" * 1000 + b"a" * 40 + b"\n" + b"y,2\n" * 1000


def _runaway(tmp_path: Path) -> Path:
    path = tmp_path / "data.csv"
    path.write_bytes(RUNAWAY_DATA)
    return path


def _assert_untouched(path: Path) -> None:
    assert path.read_bytes() == RUNAWAY_DATA
    assert os.listdir(path.parent) == [path.name]
    assert wait_until_gone(_workers(), 5) == []


_EARLIER: set[int] = set()


@pytest.fixture(autouse=True)
def _earlier_children() -> None:
    """Remember the processes this one had before the test (servers that other modules'
    fixtures started for the session): they are not the test's workers."""
    _EARLIER.clear()
    _EARLIER.update(descendants(os.getpid()))


def _workers() -> dict[int, str]:
    """This process's descendants the test started, but multiprocessing's resource tracker
    (one per process, started with the first worker process and living as long as this
    one)."""
    def tracker(pid: int) -> bool:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                return b"resource_tracker" in f.read()
        except OSError:
            return False

    return {pid: start for pid, start in descendants(os.getpid()).items()
            if pid not in _EARLIER and not tracker(pid)}


@pytest.mark.parametrize("executor", [None, "process"], ids=["default", "process"])
@pytest.mark.parametrize("workers", [1, 2])
def test_a_runaway_regex_stops_at_the_timeout(tmp_path: Path, executor: str | None,
                                              workers: int) -> None:
    path = _runaway(tmp_path)
    started = time.monotonic()
    with pytest.raises(RegexTimeoutError) as caught:
        edit_file(str(path), [Replace(RUNAWAY, b"X", regex=True)], regex_timeout=1,
                  executor=executor, workers=workers, shard_size="4KiB")
    took = time.monotonic() - started
    assert took < 5, f"stopping took {took:.2f} s"
    message = str(caught.value)
    assert "(a+)+(?=c)" in message and "regex_timeout=1 s" in message
    assert "from offset 0 " in message  # the block holding the run of "a"s starts there
    _assert_untouched(path)


def test_the_operator_fails_the_task_and_changes_nothing(tmp_path: Path) -> None:
    pytest.importorskip("airflow")
    from airflow.sdk.exceptions import AirflowFailException
    from airflow_bigfile.operators import BigFileEditOperator

    path = _runaway(tmp_path)
    op = BigFileEditOperator(task_id="edit", path=str(path), regex_timeout=1, edits=[
        {"op": "replace", "find": RUNAWAY.decode(), "replace": "X", "regex": True}])
    started = time.monotonic()
    with pytest.raises(AirflowFailException, match=re.escape("(a+)+(?=c)")):
        op.execute({})
    assert time.monotonic() - started < 5
    _assert_untouched(path)


@pytest.mark.parametrize("timeout", [None, 30], ids=["untimed", "timed"])
@pytest.mark.parametrize("executor", [None, "process"], ids=["default", "process"])
def test_a_regex_within_the_timeout_gives_re_sub_bytes(tmp_path: Path, executor: str | None,
                                                       timeout: float | None) -> None:
    """A backreference (re only) over many shards and blocks, matches across their cuts,
    in worker processes (the file is over 1 MiB)."""
    rows = b"".join(b"%d,%s,%s\n" % (i, b"ab" * (i % 5), b"ab" * (i % 3))
                    for i in range(80000))
    assert len(rows) > 1 << 20
    path = tmp_path / "data.csv"
    path.write_bytes(rows)
    pattern, template = rb"(\w{1,20}),\1\b", rb"<\1>"
    result = edit_file(str(path), [Replace(pattern, template, regex=True)],
                       regex_timeout=timeout, executor=executor, workers=2,
                       shard_size="64KiB", block_size="16KiB")
    assert path.read_bytes() == re.sub(pattern, template, rows)
    assert result.matches == len(re.findall(pattern, rows)) > 1000
    assert os.listdir(tmp_path) == ["data.csv"]


@pytest.mark.parametrize("value", [0, -1, "abc", float("nan"), float("inf"), True])
def test_a_bad_timeout_is_refused_before_any_io(tmp_path: Path, value: object) -> None:
    path = _runaway(tmp_path)
    with pytest.raises(EditError, match="regex_timeout must be a positive number"):
        edit_file(str(path), [Replace(RUNAWAY, b"X", regex=True)],
                  regex_timeout=value)  # type: ignore[arg-type]
    _assert_untouched(path)


def test_a_timeout_is_refused_where_it_cannot_be_kept(tmp_path: Path) -> None:
    """Dask's workers are not this process's to time and stop: refused, not ignored."""
    path = _runaway(tmp_path)
    with pytest.raises(EditError, match="regex_timeout needs executor 'thread' or 'process'"):
        edit_file(str(path), [Replace(RUNAWAY, b"X", regex=True)], regex_timeout=1,
                  executor="dask")
    _assert_untouched(path)


def test_workers_elsewhere_keep_the_timeout_from_the_plan(tmp_path: Path) -> None:
    """plan_edit puts regex_timeout in the manifest; patch_batch stops its runaway scan and
    records the error; commit_edit raises it and removes the job's staging."""
    from airflow_bigfile import commit_edit, patch_batch, plan_edit

    (tmp_path / "target").mkdir()
    path = _runaway(tmp_path / "target")
    staging = tmp_path / "staging"
    staging.mkdir()
    planned = plan_edit(str(path), [Replace(RUNAWAY, b"X", regex=True)], staging=str(staging),
                        regex_timeout=1, shard_size="4KiB", align=4096)
    started = time.monotonic()
    summaries = [patch_batch(batch) for batch in planned.batches]
    assert time.monotonic() - started < 5 * len(planned.batches)
    assert any("regex_timeout=1 s" in e for s in summaries for e in s["errors"])
    with pytest.raises(RegexTimeoutError, match=re.escape("(a+)+(?=c)")):
        commit_edit(planned.staging, batches=summaries, target=str(path))
    _assert_untouched(path)
    assert os.listdir(staging) == []


def test_the_re_scans_a_regex_on_re2_leaves_are_timed_too(tmp_path: Path) -> None:
    """RE2 runs this pattern, but finds no clean cut in a long run of "a" and leaves each
    block to re, which backtracks on it: the timeout still stops the edit."""
    from airflow_bigfile.patch.re2 import translate

    pattern = rb"(?:a|a){1,40}b"
    assert translate(re.compile(pattern), b"X").engine == "re2"
    path = tmp_path / "data.csv"
    data = b"a" * 300_000 + b"\n"
    path.write_bytes(data)
    started = time.monotonic()
    with pytest.raises(RegexTimeoutError, match=re.escape("(?:a|a){1,40}b")):
        edit_file(str(path), [Replace(pattern, b"X", regex=True)], regex_timeout=1,
                  shard_size="128KiB", block_size="64KiB")
    assert time.monotonic() - started < 5
    assert path.read_bytes() == data
    assert os.listdir(tmp_path) == ["data.csv"]
    assert wait_until_gone(_workers(), 5) == []


def test_a_script_without_a_main_guard_runs_once(tmp_path: Path) -> None:
    """Worker processes do not import the caller's main module again: a script that calls
    ``edit_file`` at its top level (no ``if __name__ == "__main__":``) runs once, and its
    regex on re is scanned in worker processes with exactly ``re.sub``'s result."""
    data = b"".join(b"%d,%d,x%d\n" % (i % 97, i % 89, i) for i in range(300_000))
    assert len(data) > 2 << 20
    target = tmp_path / "data.csv"
    target.write_bytes(data)
    script = tmp_path / "fix.py"
    script.write_text(
        "import sys\n"
        "from airflow_bigfile import Replace, edit_file\n"
        "print('top level', flush=True)\n"
        "result = edit_file(sys.argv[1], [Replace(rb'(\\d{1,8}),\\1,', rb'\\1,', regex=True)],\n"
        "                   workers=2, regex_timeout=60)\n"
        "print('edited', result.matches, result.regex_engines[0]['engine'], flush=True)\n")
    run = subprocess.run([sys.executable, str(script), str(target)], capture_output=True,
                         text=True, timeout=120, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    expected, count = re.subn(rb"(\d{1,8}),\1,", rb"\1,", data)
    assert run.stdout.splitlines() == ["top level", f"edited {count} re"], run.stdout
    assert target.read_bytes() == expected
    assert sorted(os.listdir(tmp_path)) == ["data.csv", "fix.py"]
