"""Where shard work runs: a small interface with a thread pool, a process pool and Dask
behind it. Tasks are module-level functions with small picklable arguments, so the same
call works in a thread, another process, or on another machine."""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from concurrent.futures import Executor as _PoolExecutor
from typing import Any, Protocol, TypeVar

from airflow_bigfile.cancel import check_stop, hold_signals, run_with_stop
from airflow_bigfile.edits import Edit, Replace, label
from airflow_bigfile.exceptions import BigFileError, EditError
from airflow_bigfile.io.errors import call_translated
from airflow_bigfile.patch.patcher import release_block_buffer
from airflow_bigfile.patch.re2 import translate
from airflow_bigfile.scan_clock import ScanClock

T = TypeVar("T")


class Executor(Protocol):
    """Runs ``fn(*args)`` for each args tuple, yielding results as they complete."""

    workers: int

    def run(self, fn: Callable[..., T], calls: Iterable[tuple[Any, ...]]) -> Iterator[T]: ...

    def close(self) -> None: ...


class PoolExecutor:
    """A ``concurrent.futures`` pool: threads by default, processes on request.

    ``stop`` (an event; one is made when not given) cancels the job: setting it makes
    :meth:`run` raise :class:`Cancelled` and thread workers stop within a block. With
    processes, a worker's ``re`` scan of one block running past ``regex_timeout`` seconds
    makes :meth:`run` raise :class:`RegexTimeoutError` naming the edit (``labels``: edit
    index -> its name; see :mod:`~airflow_bigfile.scan_clock`). Closing the
    pool before its work is done (an error, a cancellation) stops thread workers the same
    way and terminates worker processes, so it never waits for shards nobody will use.
    Worker processes are spawned (they inherit none of this process's descriptors, so
    never the target's lock) and die with this process (see :mod:`.workers`). Signals are
    held across every call into the pool (see :func:`~airflow_bigfile.cancel.hold_signals`)
    and act when it returns, at most ``POLL`` seconds later."""

    POLL = 0.2  # seconds between looks at ``stop`` while waiting for results
    AHEAD = 2  # calls in flight per worker

    def __init__(self, workers: int, *, processes: bool = False,
                 stop: threading.Event | None = None, regex_timeout: float | None = None,
                 labels: Mapping[int, str] | None = None) -> None:
        self.workers = workers
        self.stop = stop or threading.Event()
        self.processes = processes
        self._clock: ScanClock | None = None
        self._pool: _PoolExecutor
        if processes:
            # imported here: multiprocessing is a visible share of a thread job's start-up
            from concurrent.futures import ProcessPoolExecutor

            from airflow_bigfile.run.workers import start_worker, worker_context

            context = worker_context()
            self._clock = ScanClock(context, workers, regex_timeout, labels or {})
            self._pool = ProcessPoolExecutor(workers, mp_context=context,
                                             initializer=start_worker,
                                             initargs=(os.getpid(), self._clock.slots))
        else:
            self._pool = ThreadPoolExecutor(workers, "bigfile")
        self._futures: list[Any] = []

    def run(self, fn: Callable[..., T], calls: Iterable[tuple[Any, ...]]) -> Iterator[T]:
        """Yield results as calls complete, with at most ``AHEAD`` per worker submitted and
        not yet yielded: workers never run far ahead of the consumer (a streamed commit
        copies a shard's unchanged bytes right behind its scan, while they are cached)."""
        call = (functools.partial(call_translated, fn) if self.processes
                else functools.partial(run_with_stop, self.stop, fn))
        todo = iter(calls)
        futures: list[Any] = []
        pending: set[Any] = set()
        try:
            while True:
                while len(pending) < self.AHEAD * self.workers:
                    args = next(todo, None)
                    if args is None:
                        break
                    with hold_signals():
                        futures.append(self._pool.submit(call, *args))
                    self._futures.append(futures[-1])
                    pending.add(futures[-1])
                if not pending:
                    return
                check_stop(self.stop)
                with hold_signals():  # at most POLL seconds
                    done, pending = wait(pending, self.POLL, FIRST_COMPLETED)
                if self._clock is not None:
                    self._clock.check()
                for future in done:
                    with hold_signals():
                        result = future.result()
                    yield result
        finally:
            if not self.processes:
                with hold_signals():
                    for future in futures:
                        future.cancel()

    def close(self) -> None:
        with hold_signals():  # a future's done() takes its lock too
            self._close()

    def _close(self) -> None:
        unfinished = any(not f.done() for f in self._futures)
        if unfinished:
            self.stop.set()
        if unfinished and self.processes:
            # concurrent.futures has no public way to end running workers (3.14 adds
            # terminate_workers); the pool then reports itself broken and fails every
            # pending future itself. None of them is cancelled first: on Python 3.11 the
            # pool's manager thread dies with a traceback setting an error on a cancelled one.
            for process in list(getattr(self._pool, "_processes", {}).values()):
                process.kill()
            self._pool.shutdown(wait=True, cancel_futures=False)
            return
        self._pool.shutdown(wait=True, cancel_futures=True)


class InlineExecutor:
    """Runs every call in the calling thread (``workers=1``): no pool to start."""

    workers = 1

    def __init__(self, stop: threading.Event | None = None) -> None:
        self.stop = stop or threading.Event()

    def run(self, fn: Callable[..., T], calls: Iterable[tuple[Any, ...]]) -> Iterator[T]:
        for args in calls:
            check_stop(self.stop)
            yield run_with_stop(self.stop, fn, *args)

    def close(self) -> None:
        release_block_buffer()


class DaskExecutor:
    """Shard tasks on a ``distributed.Client`` (one passed in, or one connected to
    ``scheduler``, or a LocalCluster started for the job).

    The calling thread never blocks inside distributed's own locks: it takes finished
    futures without waiting and sleeps ``POLL`` seconds between looks, all with signals
    held (see :class:`PoolExecutor`), so a signal cancels within ``POLL`` seconds and never
    leaves a lock the client's event loop needs. Closing cancels the job's unfinished
    futures; a cluster started for the job is shut down with its scheduler."""

    POLL = 0.05

    def __init__(self, workers: int, *, client: Any = None, scheduler: str | None = None
                 ) -> None:
        try:
            from distributed import Client, LocalCluster
        except ImportError as exc:
            raise BigFileError("executor 'dask' needs the dask extra: "
                               "pip install 'airflow-bigfile[dask]'") from exc
        self._own: list[Any] = []
        self._futures: list[Any] = []
        if client is None:
            if scheduler:
                client = Client(scheduler)
            else:
                # its warnings (a task cancelled with the job) are not the user's business
                cluster = LocalCluster(n_workers=workers, threads_per_worker=1,
                                       processes=True, dashboard_address=None,
                                       silence_logs=logging.ERROR)
                client = Client(cluster)
                self._own.append(cluster)
            self._own.insert(0, client)
        self.client = client
        self.workers = max(1, len(client.scheduler_info().get("workers", {})) or workers)

    def run(self, fn: Callable[..., T], calls: Iterable[tuple[Any, ...]]) -> Iterator[T]:
        from distributed import as_completed as dask_completed

        with hold_signals():
            futures = [self.client.submit(call_translated, fn, *args, pure=False)
                       for args in calls]
            self._futures.extend(futures)
            done = dask_completed(futures)
        while True:
            with hold_signals():
                if done.is_empty():
                    return
                batch = done.next_batch(block=False)
                if not batch:
                    time.sleep(self.POLL)
            for future in batch:
                with hold_signals():
                    result = future.result()
                yield result

    def close(self) -> None:
        with hold_signals():
            unfinished = [f for f in self._futures if not f.done()]
            if unfinished and self.client.status == "running":
                self.client.cancel(unfinished)
            for resource in reversed(self._own):  # the cluster, then its client
                resource.close()


def make_executor(executor: str | Executor | None, workers: int | None,
                  stop: threading.Event | None = None, *, edits: Sequence[Edit] = (),
                  regex_timeout: float | None = None, small: bool = False,
                  **options: Any) -> Executor:
    """An executor by name (``thread``, ``process``, ``dask``) or the one given; ``stop``
    cancels the job's thread and process workers when set.

    A regex in ``edits`` that only Python's ``re`` can run (see :mod:`..patch.re2`) holds
    the GIL while it backtracks: a thread inside it can be stopped by nothing (neither
    ``regex_timeout`` nor ``stop``) and starves the main thread, where signals are handled.
    So ``thread`` gives such a job worker processes, which its timeout and signals can end
    (:mod:`~airflow_bigfile.scan_clock`), unless it has no timeout and one worker or a
    ``small`` file (too little to gain from spreading it): then it runs in the calling
    thread, where a signal still interrupts ``re`` (in the main thread), and pays no
    process start (about 0.4 s of CPU each). A regex on RE2 also leaves some scans to
    ``re`` (block ends, other edits near, long runs with no clean cut), so with a timeout
    every regex job gets processes; without one, RE2 and literal jobs keep threads, except
    an RE2 pattern whose ``re`` scans can backtrack badly (``Translation.backtracks``, as
    for ``(a+)+$``): it is treated as one on ``re``."""
    labels = regex_labels(edits)
    timed = regex_timeout is not None and bool(labels)
    if executor is not None and not isinstance(executor, str):
        if timed:
            raise EditError(_UNTIMED)
        return executor
    name, count = check_executor(executor, workers, timed=timed)
    if name == "thread":
        on_re = any((t := translate(pattern, e.replace)).engine == "re" or t.backtracks
                    for e in edits if isinstance(e, Replace)
                    and (pattern := e.pattern) is not None)
        if on_re and not timed and small:
            count = 1
        if not timed and (not on_re or count == 1):
            return InlineExecutor(stop) if count == 1 else PoolExecutor(count, stop=stop)
    if name in ("thread", "process"):
        return PoolExecutor(count, processes=True, stop=stop, regex_timeout=regex_timeout,
                            labels=labels)
    return DaskExecutor(count, **options)


def regex_labels(edits: Sequence[Edit]) -> dict[int, str]:
    """The names of the regex replaces in ``edits``, by their index."""
    return {i: label(i, e) for i, e in enumerate(edits) if isinstance(e, Replace) and e.regex}


_UNTIMED = ("regex_timeout needs executor 'thread' or 'process': a regex scan in another "
            "executor's workers cannot be timed and stopped from here")


def check_executor(executor: str | None, workers: int | None, *, timed: bool = False
                   ) -> tuple[str, int]:
    """The executor's name and worker count, refused before any work if either is wrong
    (``timed``: a regex is to be timed, which only this machine's workers can be)."""
    count = workers if workers is not None else (os.cpu_count() or 1)
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise BigFileError(f"workers must be a positive integer, not {workers!r}")
    name = executor or "thread"
    if name not in ("thread", "process", "dask"):
        raise BigFileError(f"unknown executor {name!r}; expected thread, process or dask")
    if timed and name == "dask":
        raise EditError(_UNTIMED)
    return name, count
