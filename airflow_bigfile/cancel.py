"""Cancelling a job: signals in the front end, stop events in the workers, commit points.

A cancelled job must leave the target exactly as it was and nothing beside it. Cancellation
is an exception (:class:`Cancelled`, a ``KeyboardInterrupt``, so ``except Exception`` in the
engine never swallows it) raised in the thread that runs the job, so every ``finally`` of
the engine runs: the lock is released, staging and the new file are removed, workers stop.

- :func:`cancel_on_signals` (the CLI only: the engine never installs handlers itself) turns
  SIGINT and SIGTERM into :class:`Cancelled` in the main thread. In Airflow the task
  runner's own SIGTERM handler raises in the main thread, and the same ``finally`` blocks run.
- :func:`commit_point` holds those signals across the step that makes an edit visible (the
  rename of a rewrite, the removal of an in-place journal): a signal inside it cannot tear
  the step, and once it is passed the edit is committed and the job is no longer cancelled;
  the front end reports the late signal instead (:func:`late_signal`).
- :func:`hold_signals` holds them across a step that must finish once begun (a rollback),
  and across every call into a worker pool's own machinery: an exception raised by a handler
  inside ``threading.Condition.__enter__`` (a future's, the pool's idle semaphore's) leaves
  its lock taken, the worker that next needs it waits forever, and so does the shutdown that
  joins that worker.
- Workers run under a stop event (:func:`run_with_stop`) and call :func:`check_stop` once a
  block, so a cancelled thread worker ends within a block instead of finishing its shard.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any, TypeVar

T = TypeVar("T")

CANCEL_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Cancelled(KeyboardInterrupt):
    """The job was cancelled (a signal, or its stop event); nothing was committed."""

    def __init__(self, signum: int | None = None, message: str = "") -> None:
        self.signum = signum
        super().__init__(message or (f"interrupted ({signal_name(signum)})" if signum
                                     else "cancelled"))


def signal_name(signum: int) -> str:
    """``SIGTERM`` for 15; the number for a signal Python has no name for."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class _State:
    """What the handler needs to know; touched by the main thread only (handlers run there,
    and holds taken in other threads are no-ops)."""

    def __init__(self) -> None:
        self.installed = False
        self.holding = 0           # depth of hold_signals/commit_point blocks
        self.committed = False     # a commit point was passed: signals no longer cancel
        self.raised = False        # a Cancelled was raised; later signals wait for cleanup
        self.pending: int | None = None  # a signal that arrived and did not raise


_state = _State()


def _on_signal(signum: int, frame: object) -> None:
    if _state.holding or _state.committed or _state.raised:
        _state.pending = _state.pending or signum
        return
    _state.raised = True
    raise Cancelled(signum)


@contextlib.contextmanager
def cancel_on_signals() -> Iterator[None]:
    """SIGINT and SIGTERM raise :class:`Cancelled` in the main thread inside the block
    (once: later ones wait for the cleanup it starts). Only front ends use this; the engine
    never installs handlers. Elsewhere than in the main thread it does nothing."""
    if not _in_main_thread():
        yield
        return
    previous = {signum: signal.getsignal(signum) for signum in CANCEL_SIGNALS}
    _state.__init__()  # type: ignore[misc]
    _state.installed = True
    try:
        for signum in CANCEL_SIGNALS:
            signal.signal(signum, _on_signal)
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _state.installed = False


def late_signal() -> int | None:
    """The signal that arrived after the job's commit point (too late to cancel), if any."""
    return _state.pending if _state.committed else None


@contextlib.contextmanager
def hold_signals() -> Iterator[None]:
    """Hold SIGINT/SIGTERM (under :func:`cancel_on_signals`) until the block ends, then
    cancel if one came: for steps that must not stop half-way. An error of the block's own
    wins over a held signal. Without the handlers, or outside the main thread (where they do
    not run), it holds nothing."""
    if not _handling():
        yield
        return
    _state.holding += 1
    try:
        yield
    finally:
        _state.holding -= 1
    _raise_pending()


@contextlib.contextmanager
def commit_point() -> Iterator[None]:
    """Hold SIGINT/SIGTERM across the step that commits an edit. If the block completes,
    the edit is committed: a signal held or arriving later no longer cancels the job (the
    front end warns instead). If it raises, a held signal cancels as usual. Without the
    handlers, or outside the main thread, it holds nothing and marks nothing committed."""
    if not _handling():
        yield
        return
    _state.holding += 1
    try:
        yield
        _state.committed = True
    finally:
        _state.holding -= 1
    _raise_pending()


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _handling() -> bool:
    """Our handlers are installed and this is the thread they run in."""
    return _state.installed and _in_main_thread()


def _raise_pending() -> None:
    if (_state.pending is not None and not _state.holding and not _state.raised
            and not _state.committed):
        signum, _state.pending = _state.pending, None
        _state.raised = True
        raise Cancelled(signum)


# ---------------------------------------------------------------------------- workers

_stop: ContextVar[threading.Event | None] = ContextVar("bigfile_stop", default=None)


def run_with_stop(stop: threading.Event, fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(*args)`` with ``stop`` as the event :func:`check_stop` looks at."""
    token = _stop.set(stop)
    try:
        return fn(*args)
    finally:
        _stop.reset(token)


def check_stop(stop: threading.Event | None = None) -> None:
    """Raise :class:`Cancelled` if ``stop`` is set (default: the event of the job this
    worker runs for, see :func:`run_with_stop`)."""
    stop = stop if stop is not None else _stop.get()
    if stop is not None and stop.is_set():
        raise Cancelled(message="cancelled: the job was stopped")
