"""The thread pool runs at most ``AHEAD`` calls per worker beyond the results its consumer
has taken, so a streamed commit's copy follows the workers' scan closely; which jobs get
worker processes; a thread's patchers share one block buffer."""

from __future__ import annotations

import threading
import time

import pytest

from airflow_bigfile import edit_file
from airflow_bigfile.edits import Replace
from airflow_bigfile.patch import patcher
from airflow_bigfile.patch.patcher import take_block_buffer
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


def test_shards_in_one_thread_share_a_block_buffer_dropped_with_the_job(
        tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each shard gets its own patcher; a thread's next one takes the buffer the last gave
    back instead of zero-filling a new one, and a job run in the caller's thread
    (``workers=1``) does not leave it behind."""
    taken: list[bytearray] = []

    def take(size: int) -> bytearray:
        taken.append(take_block_buffer(size))
        return taken[-1]

    monkeypatch.setattr(patcher, "take_block_buffer", take)
    data = b"".join(b"%06d,a@old.com\n" % i for i in range(4000))
    path = tmp_path / "data.csv"
    path.write_bytes(data)
    result = edit_file(str(path), [Replace(rb"(\w)@old\.com", rb"\1@new.org", regex=True)],
                       workers=1, shard_size=8192)
    assert result.shards > 4
    assert len(taken) >= result.shards and len({id(b) for b in taken}) == 1
    assert getattr(patcher._spare, "buf", None) is None
    assert path.read_bytes() == data.replace(b"@old.com", b"@new.org")
