"""Whether a C call lets other threads run while it works."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable


def assert_releases_the_gil(call: Callable[[], object]) -> None:
    """While one thread is inside ``call`` (tens of milliseconds long), another runs Python
    code. With a switch interval of seconds, a call holding the GIL would let the other
    thread run only after it returned; here the other thread runs inside the call's span."""
    span: list[float] = []
    ready = threading.Event()

    def worker() -> None:
        ready.set()
        span.append(time.perf_counter())
        call()
        span.append(time.perf_counter())

    interval = sys.getswitchinterval()
    sys.setswitchinterval(5.0)
    try:
        thread = threading.Thread(target=worker)
        thread.start()
        ready.wait()
        ticks = [time.perf_counter() for _ in range(2000)]
        thread.join()
    finally:
        sys.setswitchinterval(interval)
    inside = [t for t in ticks if span[0] < t < span[1]]
    assert len(inside) > len(ticks) // 2, (span, ticks[0], ticks[-1])
