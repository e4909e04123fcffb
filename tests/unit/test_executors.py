"""The thread pool runs at most ``AHEAD`` calls per worker beyond the results its consumer
has taken, so a streamed commit's copy follows the workers' scan closely; which jobs get
worker processes."""

from __future__ import annotations

import threading
import time

import pytest

from airflow_bigfile.edits import Replace
from airflow_bigfile.run.executors import InlineExecutor, PoolExecutor, make_executor

started: list[int] = []
lock = threading.Lock()


def _task(i: int) -> int:
    with lock:
        started.append(i)
    return i


def test_workers_wait_for_a_slow_consumer() -> None:
    started.clear()
    exe = PoolExecutor(2)
    try:
        results = exe.run(_task, [(i,) for i in range(40)])
        seen = [next(results)]
        time.sleep(0.3)  # a slow consumer: the pool must not run through the 40 calls
        assert len(started) <= PoolExecutor.AHEAD * 2 + 1, started
        seen += list(results)
    finally:
        exe.close()
    assert sorted(seen) == list(range(40))
    assert sorted(started) == list(range(40))


LITERAL = [Replace(b"@old.com", b"@new.com")]
RE2 = [Replace(rb"(\d+)@old\.com", rb"\1@new.org", regex=True)]
BACKREFERENCE = [Replace(rb"(\w)\1", b"", regex=True)]
LOOKAHEAD_AND_LITERAL = [Replace(b"x", b"y"), Replace(rb"a(?=b)", b"", regex=True)]
NESTED = [Replace(rb"(a+)+$", b"X", regex=True)]  # RE2, but re's block-end scans backtrack


@pytest.mark.parametrize(("edits", "workers", "timeout", "small", "kind"), [
    pytest.param(LITERAL, 2, 5, False, "threads", id="literal"),
    pytest.param(RE2, 2, None, False, "threads", id="re2"),
    pytest.param(RE2, 1, None, False, "inline", id="re2-one-worker"),
    pytest.param(RE2, 2, 5, True, "processes", id="re2-timed"),
    pytest.param(BACKREFERENCE, 2, None, False, "processes", id="re-two-workers"),
    pytest.param(BACKREFERENCE, 1, None, False, "inline", id="re-one-worker"),
    pytest.param(BACKREFERENCE, 2, None, True, "inline", id="re-small-file"),
    pytest.param(BACKREFERENCE, 1, 5, True, "processes", id="re-timed"),
    pytest.param(LOOKAHEAD_AND_LITERAL, 2, None, False, "processes", id="re-and-literal"),
    pytest.param(NESTED, 2, None, False, "processes", id="re2-nested-repeat"),
    pytest.param(NESTED, 2, None, True, "inline", id="re2-nested-repeat-small-file"),
])
def test_only_regexes_on_re_get_worker_processes(edits: list[Replace], workers: int,
                                                 timeout: float | None, small: bool,
                                                 kind: str) -> None:
    """Literal jobs and untimed RE2 jobs keep threads (no process start); a regex on ``re``
    gets worker processes from the thread executor when it has work to spread, and any
    regex does when it must be timed."""
    exe = make_executor("thread", workers, edits=edits, regex_timeout=timeout, small=small)
    try:
        found = ("inline" if isinstance(exe, InlineExecutor)
                 else "processes" if exe.processes else "threads")  # type: ignore[attr-defined]
        assert found == kind
    finally:
        exe.close()
