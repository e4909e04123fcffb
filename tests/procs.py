"""The processes a test started, found through /proc (Linux): to check none is left."""

from __future__ import annotations

import os
import time


def _stat(pid: int) -> tuple[int, str, str] | None:
    """(parent pid, state, start time) of a live process, None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return int(fields[1]), fields[0], fields[19]


def descendants(pid: int) -> dict[int, str]:
    """Every process below ``pid``: pid -> start time (so a reused pid is not mistaken)."""
    children: dict[int, list[tuple[int, str]]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (info := _stat(int(entry))) is not None:
            children.setdefault(info[0], []).append((int(entry), info[2]))
    found: dict[int, str] = {}
    todo = [pid]
    while todo:
        for child, start in children.get(todo.pop(), []):
            found[child] = start
            todo.append(child)
    return found


def running(procs: dict[int, str]) -> list[int]:
    """The processes among ``procs`` still running (zombies count as ended)."""
    return [pid for pid, start in procs.items()
            if (info := _stat(pid)) is not None and info[1] != "Z" and info[2] == start]


def wait_until_gone(procs: dict[int, str], seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while (left := running(procs)) and time.monotonic() < deadline:
        time.sleep(0.02)
    return left
