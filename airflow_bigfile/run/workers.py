"""The start of a worker process: it must end with the process that started it.

A worker outliving its job would keep reading the target and writing the new file after the
job removed it, so each worker asks the kernel to kill it when its parent dies (Linux
``PR_SET_PDEATHSIG``) and, everywhere, a watcher thread ends it once its parent is gone.
Workers ignore SIGINT and SIGTERM: a Ctrl-C or a SIGTERM sent to the whole process group
reaches the parent, which cancels the job and ends its workers itself. Each worker also
takes a slot of its parent's :class:`~airflow_bigfile.scan_clock.ScanClock`, through which
the parent times its ``re`` scans.
"""

from __future__ import annotations

import io
import os
import signal
import sys
import threading
import time
from multiprocessing import context as mp_context
from multiprocessing import popen_spawn_posix, spawn, util
from typing import Any

from airflow_bigfile.io.oscompat import _libc
from airflow_bigfile.scan_clock import claim

PR_SET_PDEATHSIG = 1
WATCH_EVERY = 0.5  # seconds between the watcher's looks at the parent


class _Popen(popen_spawn_posix.Popen):
    """Starts a worker like ``spawn`` does, but without the parent's ``__main__``: workers
    run only this package's functions, and importing the parent's main module again would
    run a user's unguarded script a second time in every worker (and import Airflow's
    command line in every worker of a task). The body is ``popen_spawn_posix.Popen._launch``
    with the ``init_main_*`` entries left out of the preparation data."""

    def _launch(self, process_obj: Any) -> None:
        from multiprocessing import resource_tracker

        tracker_fd = resource_tracker.getfd()
        self._fds.append(tracker_fd)
        prep_data = {key: value for key, value in
                     spawn.get_preparation_data(process_obj._name).items()
                     if not key.startswith("init_main")}
        fp = io.BytesIO()
        mp_context.set_spawning_popen(self)
        try:
            mp_context.reduction.dump(prep_data, fp)
            mp_context.reduction.dump(process_obj, fp)
        finally:
            mp_context.set_spawning_popen(None)
        parent_r = child_w = child_r = parent_w = None
        try:
            parent_r, child_w = os.pipe()
            child_r, parent_w = os.pipe()
            cmd = spawn.get_command_line(tracker_fd=tracker_fd, pipe_handle=child_r)
            self._fds.extend([child_r, child_w])
            self.pid = util.spawnv_passfds(spawn.get_executable(), cmd, self._fds)
            self.sentinel = parent_r
            with open(parent_w, "wb", closefd=False) as f:
                f.write(fp.getbuffer())
        finally:
            self.finalizer = util.Finalize(self, util.close_fds,
                                           [fd for fd in (parent_r, parent_w) if fd is not None])
            for fd in (child_r, child_w):
                if fd is not None:
                    os.close(fd)


class _Process(mp_context.SpawnProcess):
    @staticmethod
    def _Popen(process_obj: Any) -> _Popen:
        return _Popen(process_obj)


class _Context(mp_context.SpawnContext):
    Process = _Process


def worker_context() -> mp_context.BaseContext:
    """The multiprocessing context bigfile's worker processes start from: ``spawn``
    without the parent's main module."""
    return _Context()


def start_worker(parent: int, slots: Any = None) -> None:
    """Pool initializer: tie this worker's life to ``parent`` (the pool's owner) and take
    a slot of its scan clock's ``slots``."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        _die_with_parent()
    if os.getppid() != parent:  # the parent died before the kernel was told
        os._exit(1)
    threading.Thread(target=_watch, args=(parent,), name="bigfile-parent-watch",
                     daemon=True).start()
    if slots is not None:
        claim(slots)


def _die_with_parent() -> None:
    """Ask the kernel for SIGKILL when the parent dies (where libc refuses, the watcher
    thread still ends the worker)."""
    prctl = _libc("prctl", "c_int", "c_int", "c_ulong", "c_ulong", "c_ulong", "c_ulong")
    if prctl:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _watch(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(WATCH_EVERY)
    os._exit(1)
