"""How long each worker process has been in its current ``re`` scan, read by its parent.

``re`` can backtrack for minutes and holds the GIL meanwhile; a thread cannot be stopped
inside it. So a job whose regex runs on ``re``, or any regex job with a timeout, scans in
worker processes (:func:`~airflow_bigfile.run.executors.make_executor`), each with a slot
of shared memory: it writes there when it starts one replace's ``re`` scan of a block and
clears the slot when the scan returns. The parent, which polls its workers anyway, stops
the job when a scan has run longer than ``regex_timeout`` seconds, and its usual cleanup
kills the workers.
``time.monotonic`` is one clock for every process of a machine, so the parent compares a
worker's start with its own now.

What a scan is: one replace's ``re`` work on one block of a shard (``block_size``, 8 MiB by
default, less at a shard's end), reading at most ``max_match`` + 2 bytes past the block,
and the short scan that guesses where a batch's first shard resumes. RE2's work in a block
is linear and is not timed.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator, Mapping
from typing import Any

from airflow_bigfile.exceptions import EditError, RegexTimeoutError

# a slot: claimed (1.0), start of the running scan (0.0: none), edit index, scan offset
FIELDS = 4

_slot: tuple[Any, int] | None = None  # in a worker process: (the shared array, its slot)


def check_timeout(seconds: float | None) -> float | None:
    """``regex_timeout``: None (no bound) or a positive, finite number of seconds."""
    if seconds is None:
        return None
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) \
            or not 0 < seconds < math.inf:
        raise EditError(f"regex_timeout must be a positive number of seconds, "
                        f"not {seconds!r}")
    return float(seconds)


class ScanClock:
    """The slots of ``workers`` worker processes, and the parent's look at them."""

    def __init__(self, context: Any, workers: int, timeout: float | None,
                 labels: Mapping[int, str]) -> None:
        self.slots = context.Array("d", FIELDS * workers)
        self.timeout = timeout
        self.labels = labels

    def check(self) -> None:
        """Raise :class:`RegexTimeoutError` if a worker's scan has run past the timeout."""
        if self.timeout is None:
            return
        with self.slots.get_lock():
            values = self.slots[:]
        now = time.monotonic()
        for k in range(0, len(values), FIELDS):
            _, started, index, offset = values[k:k + FIELDS]
            if started and now - started > self.timeout:
                label = self.labels.get(int(index), f"edit #{int(index) + 1}")
                raise RegexTimeoutError(
                    f"{label}: re scanned from offset {int(offset)} for more than "
                    f"regex_timeout={self.timeout:g} s (it backtracks); nothing was changed: "
                    f"bound the pattern or raise regex_timeout")


def claim(slots: Any) -> None:
    """In a new worker process: take the first free slot of ``slots``."""
    global _slot
    with slots.get_lock():
        for k in range(0, len(slots), FIELDS):
            if not slots[k]:
                slots[k] = 1.0
                _slot = (slots, k)
                return


@contextlib.contextmanager
def timed_scan(index: int, offset: int) -> Iterator[None]:
    """Mark this worker as scanning for edit ``index`` from ``offset`` (nothing
    outside a worker process: no one could stop a thread's scan)."""
    if _slot is None:
        yield
        return
    slots, k = _slot
    with slots.get_lock():
        slots[k + 1:k + FIELDS] = [time.monotonic(), float(index), float(offset)]
    try:
        yield
    finally:
        slots[k + 1] = 0.0
