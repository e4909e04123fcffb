"""A signal cancels a job wherever the main thread is, and never wedges its worker pool;
holds taken outside the main thread (where no handler runs) hold nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from airflow_bigfile.cancel import (
    Cancelled,
    cancel_on_signals,
    commit_point,
    hold_signals,
    late_signal,
)

# A handler's exception raised just after ``threading.Condition.__enter__`` took its lock
# leaves that lock taken for good. The window is a few bytecodes wide in a real run (a
# future's lock, the pool's idle semaphore); here a sleep right after the acquire makes it
# where nearly every signal lands, so a pool that does not hold signals across its own
# calls hangs in its first round.
WIDE_WINDOW = """
import os, random, signal, threading, time
from airflow_bigfile.cancel import Cancelled, cancel_on_signals
from airflow_bigfile.run.executors import PoolExecutor

def take_lock(self):
    taken = self._lock.__enter__()
    time.sleep(0.0005)
    return taken

threading.Condition.__enter__ = take_lock

for round in range(ROUNDS):
    exe = PoolExecutor(2, processes=PROCESSES)
    timer = threading.Timer(0.05 + random.random() * 0.05, os.kill,
                            (os.getpid(), signal.SIGTERM))
    with cancel_on_signals():
        try:
            try:
                timer.start()
                for _ in exe.run(abs, ((i,) for i in range(10 ** 9))):
                    pass
            finally:
                exe.close()
        except Cancelled as exc:
            assert exc.signum == signal.SIGTERM
        else:
            raise AssertionError("not cancelled")
print("rounds", ROUNDS)
"""


@pytest.mark.parametrize(("processes", "rounds"), [(False, 40), (True, 4)],
                         ids=["threads", "processes"])
def test_a_signal_inside_the_pools_locks_cancels_and_closes(processes: bool, rounds: int
                                                            ) -> None:
    script = WIDE_WINDOW.replace("ROUNDS", str(rounds)).replace("PROCESSES", str(processes))
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(script)],
                          capture_output=True, text=True, timeout=120)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, f"rounds {rounds}\n", "")


def _in_thread(block: object, inside: threading.Event, leave: threading.Event
               ) -> threading.Thread:
    def hold() -> None:
        with block:  # type: ignore[attr-defined]
            inside.set()
            leave.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    assert inside.wait(10)
    return thread


@pytest.mark.parametrize("block", [hold_signals, commit_point])
def test_a_hold_in_another_thread_does_not_delay_the_main_threads_cancel(block: object
                                                                         ) -> None:
    inside, leave = threading.Event(), threading.Event()
    with cancel_on_signals():
        thread = _in_thread(block(), inside, leave)  # type: ignore[operator]
        try:
            with pytest.raises(Cancelled) as raised:
                os.kill(os.getpid(), signal.SIGTERM)
                deadline = time.monotonic() + 5
                while time.monotonic() < deadline:
                    time.sleep(0.01)
            assert raised.value.signum == signal.SIGTERM
        finally:
            leave.set()
            thread.join()


def test_a_hold_in_the_main_thread_delays_the_cancel_to_its_end() -> None:
    reached = False
    with cancel_on_signals(), pytest.raises(Cancelled):
        with hold_signals():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
            reached = True
        raise AssertionError("the held signal did not cancel at the end of the hold")
    assert reached


def test_after_the_commit_point_a_held_signal_is_reported_not_raised() -> None:
    with cancel_on_signals():
        with commit_point():
            pass
        with hold_signals():  # as closing the workers does after the commit
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
        assert late_signal() == signal.SIGTERM
