"""A test hook for the crash tests: ``BIGFILE_CRASH=name:N`` SIGKILLs the process the N-th
time it passes the point called ``name`` (journal-write, journal-synced, data-write,
data-synced, journal-removed, rewrite-write, rewrite-synced, renamed, parts-uploaded,
completed, stream-written); ``name:N:SIGTERM`` (or another signal's name) sends that signal
instead, for the signal tests. Unset, it costs one environment lookup per call, and calls
sit outside the per-byte loops."""

from __future__ import annotations

import os
import signal

_counts: dict[str, int] = {}


def crashpoint(name: str) -> None:
    spec = os.environ.get("BIGFILE_CRASH")
    if not spec or not spec.startswith(name + ":"):
        return
    _counts[name] = _counts.get(name, 0) + 1
    _, n, *sig = spec.split(":")
    if _counts[name] == int(n):
        os.kill(os.getpid(), getattr(signal, sig[0]) if sig else signal.SIGKILL)
