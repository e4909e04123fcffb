"""A terminal progress bar for the ``bigfile`` command, and progress lines for logs.

The engine reports progress as to an fsspec callback (``set_size`` then ``relative_update``);
:class:`Meter` takes those calls as :class:`fsspec.callbacks.Callback` does, without
importing fsspec (a local edit never needs it), and this module is the one place that draws
them.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

_UNITS = ("B", "kB", "MB", "GB", "TB", "PB")


def format_bytes(n: float) -> str:
    """``1234567`` -> ``"1.2 MB"`` (decimal units; exact below 1 kB)."""
    if n < 1000:
        return f"{int(n)} B"
    for unit in _UNITS[1:]:
        n /= 1000
        if n < 1000 or unit == _UNITS[-1]:
            return f"{n:.1f} {unit}"
    raise AssertionError("unreachable")


def format_duration(seconds: float) -> str:
    """``75`` -> ``"1:15"``, ``3725`` -> ``"1:02:05"``."""
    seconds = int(seconds + 0.5)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Meter:
    """Work done (``value``) of its ``size``, counted as fsspec's ``Callback`` counts it;
    subclasses draw or log in :meth:`call`, which runs after each change."""

    def __init__(self, size: int | None = None, value: int = 0) -> None:
        self.size, self.value = size, value

    def set_size(self, size: int) -> None:
        self.size = size
        self.call()

    def relative_update(self, inc: int = 1) -> None:
        self.value += inc
        self.call()

    def call(self, hook_name: str | None = None, **kwargs: Any) -> None:
        """Show the change (nothing here)."""


class ProgressBar(Meter):
    """Draw ``[#####.....]  45%  1.2 GB/2.7 GB  120.0 MB/s  ETA 0:12`` on a terminal.

    Thread-safe (workers may report concurrently). Redraws at most every ``interval``
    seconds and draws nothing until ``delay`` seconds have passed, so quick edits print no
    bar at all. :meth:`close` finishes the line if a bar was drawn.
    """

    def __init__(self, stream: TextIO, *, label: str = "", interval: float = 0.1,
                 delay: float = 0.5, clock: Callable[[], float] = time.monotonic,
                 width: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.stream = stream
        self.label = label
        self.interval = interval
        self.delay = delay
        self.clock = clock
        self.width = width
        self.started = clock()
        self.drawn = False
        self._last = float("-inf")
        self._lock = threading.Lock()
        self._closed = False

    def set_size(self, size: int) -> None:
        """Start timing the rate when the work's size becomes known (planning is excluded)."""
        if not self.value:
            self.started = self.clock()
        super().set_size(size)

    def call(self, hook_name: str | None = None, **kwargs: Any) -> None:
        """Redraw if enough time has passed (called by ``set_size`` and the updates)."""
        super().call(hook_name, **kwargs)
        now = self.clock()
        if now - self.started < self.delay or now - self._last < self.interval:
            return
        with self._lock:
            if self._closed or now - self._last < self.interval:
                return
            self._last = now
            self._draw(now)

    def render(self, now: float | None = None) -> str:
        """The bar's text for the current state."""
        now = self.clock() if now is None else now
        done = max(0, self.value or 0)
        elapsed = max(now - self.started, 1e-9)
        rate = done / elapsed
        parts = [self.label] if self.label else []
        total = self.size or 0
        if total > 0:
            frac = min(done / total, 1.0)
            width = self.width or shutil.get_terminal_size((80, 24)).columns
            tail = f" {frac:4.0%}  {format_bytes(done)}/{format_bytes(total)}"
            tail += f"  {format_bytes(rate)}/s"
            if 0 < done < total and rate > 0:
                tail += f"  ETA {format_duration((total - done) / rate)}"
            elif done >= total:
                tail += f"  in {format_duration(elapsed)}"
            room = width - len(" ".join(parts)) - len(tail) - 4
            cells = max(10, min(40, room))
            filled = int(frac * cells)
            parts.append("[" + "#" * filled + "." * (cells - filled) + "]" + tail)
        else:
            parts.append(f"{format_bytes(done)}  {format_bytes(rate)}/s")
        return " ".join(parts)

    def _draw(self, now: float) -> None:
        self.stream.write("\r\x1b[K" + self.render(now))
        self.stream.flush()
        self.drawn = True

    def close(self) -> None:
        """Finish the bar's line (only if one was drawn); idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self.drawn:
                self._draw(self.clock())
                self.stream.write("\n")
                self.stream.flush()


class ProgressLog(Meter):
    """Log ``12.0 MB of 2.7 GB (0%), 3 shards, 40.0 MB/s, ETA 1:07`` every ``interval``
    seconds while work goes on (for Airflow task logs, where no bar can be drawn).

    The engine reports the bytes to patch once (``set_size``) and each finished shard's
    bytes (``relative_update``), so a shard is one update."""

    def __init__(self, log: Any, *, interval: float = 30.0,
                 clock: Callable[[], float] = time.monotonic, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.log, self.interval, self.clock = log, interval, clock
        self.started = self._last = clock()
        self.shards = 0
        self._lock = threading.Lock()

    def set_size(self, size: int) -> None:
        """Start timing when the work's size is known (planning is excluded)."""
        self.started = self._last = self.clock()
        super().set_size(size)

    def relative_update(self, inc: int = 1) -> None:
        with self._lock:
            self.shards += 1
        super().relative_update(inc)

    def call(self, hook_name: str | None = None, **kwargs: Any) -> None:
        """Log if ``interval`` has passed since the last line."""
        super().call(hook_name, **kwargs)
        now = self.clock()
        with self._lock:
            if now - self._last < self.interval:
                return
            self._last = now
        done, total = self.value or 0, self.size or 0
        rate = done / max(now - self.started, 1e-9)
        share = f" ({done / total:.0%})" if total else ""
        eta = (f", ETA {format_duration((total - done) / rate)}"
               if rate > 0 and 0 < done < total else "")
        self.log.info("Progress: %s of %s%s, %d shards, %s/s%s", format_bytes(done),
                      format_bytes(total), share, self.shards, format_bytes(rate), eta)
