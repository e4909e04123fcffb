"""Where shard work runs: a small interface with a thread pool, a process pool and Dask
behind it. Tasks are module-level functions with small picklable arguments, so the same
call works in a thread, another process, or on another machine."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor as _PoolExecutor
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from typing import Any, Protocol, TypeVar

from .exceptions import BigFileError

T = TypeVar("T")


class Executor(Protocol):
    """Runs ``fn(*args)`` for each args tuple, yielding results as they complete."""

    workers: int

    def run(self, fn: Callable[..., T], calls: Iterable[tuple[Any, ...]]) -> Iterator[T]: ...

    def close(self) -> None: ...


class PoolExecutor:
    """A ``concurrent.futures`` pool: threads by default, processes on request."""

    def __init__(self, workers: int, *, processes: bool = False) -> None:
        self.workers = workers
        self._pool: _PoolExecutor = (ProcessPoolExecutor(workers) if processes
                                     else ThreadPoolExecutor(workers, "bigfile"))

    def run(self, fn: Callable[..., T], calls: Iterable[tuple[Any, ...]]) -> Iterator[T]:
        futures = [self._pool.submit(fn, *args) for args in calls]
        try:
            for future in as_completed(futures):
                yield future.result()
        finally:
            for future in futures:
                future.cancel()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class InlineExecutor:
    """Runs every call in the calling thread (``workers=1``): no pool to start."""

    workers = 1

    def run(self, fn: Callable[..., T], calls: Iterable[tuple[Any, ...]]) -> Iterator[T]:
        for args in calls:
            yield fn(*args)

    def close(self) -> None:
        pass


class DaskExecutor:
    """Shard tasks on a ``distributed.Client`` (one passed in, or one connected to
    ``scheduler``, or a LocalCluster started for the job)."""

    def __init__(self, workers: int, *, client: Any = None, scheduler: str | None = None
                 ) -> None:
        try:
            from distributed import Client, LocalCluster
        except ImportError as exc:
            raise BigFileError("executor 'dask' needs the dask extra: "
                               "pip install 'airflow-bigfile[dask]'") from exc
        self._own: list[Any] = []
        if client is None:
            if scheduler:
                client = Client(scheduler)
            else:
                cluster = LocalCluster(n_workers=workers, threads_per_worker=1,
                                       processes=True, dashboard_address=None)
                client = Client(cluster)
                self._own.append(cluster)
            self._own.insert(0, client)
        self.client = client
        self.workers = max(1, len(client.scheduler_info().get("workers", {})) or workers)

    def run(self, fn: Callable[..., T], calls: Iterable[tuple[Any, ...]]) -> Iterator[T]:
        from distributed import as_completed as dask_completed

        futures = [self.client.submit(fn, *args, pure=False) for args in calls]
        try:
            for future in dask_completed(futures):
                yield future.result()
        finally:
            self.client.cancel(futures)

    def close(self) -> None:
        for resource in self._own:
            resource.close()


def make_executor(executor: str | Executor | None, workers: int | None,
                  **options: Any) -> Executor:
    """An executor by name (``thread``, ``process``, ``dask``) or the one given."""
    if executor is not None and not isinstance(executor, str):
        return executor
    name, count = check_executor(executor, workers)
    if name == "thread":
        return InlineExecutor() if count == 1 else PoolExecutor(count)
    if name == "process":
        return PoolExecutor(count, processes=True)
    return DaskExecutor(count, **options)


def check_executor(executor: str | None, workers: int | None) -> tuple[str, int]:
    """The executor's name and worker count, refused before any work if either is wrong."""
    count = workers if workers is not None else (os.cpu_count() or 1)
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise BigFileError(f"workers must be a positive integer, not {workers!r}")
    name = executor or "thread"
    if name not in ("thread", "process", "dask"):
        raise BigFileError(f"unknown executor {name!r}; expected thread, process or dask")
    return name, count
