"""The thread pool runs at most ``AHEAD`` calls per worker beyond the results its consumer
has taken, so a streamed commit's copy follows the workers' scan closely."""

from __future__ import annotations

import threading
import time

from airflow_bigfile.run.executors import PoolExecutor

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
