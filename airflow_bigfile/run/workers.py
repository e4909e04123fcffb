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

import os
import signal
import sys
import threading
import time
from typing import Any

from airflow_bigfile.io.oscompat import _libc
from airflow_bigfile.scan_clock import claim

PR_SET_PDEATHSIG = 1
WATCH_EVERY = 0.5  # seconds between the watcher's looks at the parent


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
