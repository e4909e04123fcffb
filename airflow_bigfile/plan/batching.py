"""How many batches (mapped tasks) a planned edit is split into.

Every mapped task pays a fixed start-up under a real scheduler (queueing, a new process, the
DAG file parsed again, the task API calls) before it patches a byte, even a task that does
nothing. A plan therefore hands each task at least :data:`DEFAULT_BATCH_BYTES` of shards to
patch, so the work outweighs the start-up, and never more tasks than ``ceiling`` (the
operators pass ``core.max_map_length``).

The rule, for ``B`` bytes of shards to patch:

* neither given: ``ceil(B / DEFAULT_BATCH_BYTES)`` batches;
* ``batch_bytes`` given: ``ceil(B / batch_bytes)``;
* ``max_batches`` given: at most ``max_batches`` (alone, exactly the number the caller chose,
  however few bytes each then gets);

always at least one, never more than ``ceiling`` nor than there are shards.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from airflow_bigfile.exceptions import EditError
from airflow_bigfile.sizes import parse_size

if TYPE_CHECKING:
    from airflow_bigfile.plan.manifest import Shard

#: bytes of shards one mapped task gets at least, unless told otherwise (see module doc)
DEFAULT_BATCH_BYTES = 256 * 2**20


#: the most batches a plan makes unless the caller gives another ceiling (Airflow's default
#: ``core.max_map_length``)
MAX_BATCHES = 1024


def check_batching(max_batches: int | None, batch_bytes: int | str | None,
                   ceiling: int = MAX_BATCHES) -> int | None:
    """Validate the overrides before any I/O; returns ``batch_bytes`` in bytes (or ``None``)."""
    for name, value in (("max_batches", max_batches), ("ceiling", ceiling)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < 1):
            raise EditError(f"{name} must be a positive integer, not {value!r}")
    if batch_bytes is None:
        return None
    size = parse_size(batch_bytes, name="batch_bytes")
    if size < 1:
        raise EditError(f"batch_bytes must be at least 1 byte, not {batch_bytes!r}")
    return size


def batch_count(patch_bytes: int, shards: int, *, max_batches: int | None = None,
                batch_bytes: int | str | None = None, ceiling: int = MAX_BATCHES) -> int:
    """The number of batches for ``shards`` shards holding ``patch_bytes`` bytes to patch.

    Parameters
    ----------
    patch_bytes, shards
        What the plan found to patch.
    max_batches, batch_bytes
        The caller's overrides (see the module docstring); ``None`` for the default rule.
    ceiling
        The most batches there may ever be (Airflow's ``core.max_map_length``).

    Examples
    --------
    >>> batch_count(8 * 2**20, 2048)
    1
    >>> batch_count(8 * 2**20, 2048, batch_bytes="1MiB")
    8
    >>> batch_count(8 * 2**20, 2048, max_batches=16)
    16
    """
    size = check_batching(max_batches, batch_bytes, ceiling)
    if size is None and max_batches is None:
        size = DEFAULT_BATCH_BYTES
    count = ceiling if size is None else math.ceil(patch_bytes / size)
    if max_batches is not None:
        count = min(count, max_batches)
    return max(1, min(count, ceiling, max(shards, 1)))


def contiguous_runs(items: list[Shard], count: int) -> list[list[Shard]]:
    """Split ``items`` into at most ``count`` contiguous runs of similar byte size."""
    if not items:
        return []
    total = sum(s.length for s in items) or 1
    per = total / max(1, count)
    out: list[list[Shard]] = [[]]
    acc = 0
    for shard in items:
        if out[-1] and acc >= per * len(out) and len(out) < count:
            out.append([])
        out[-1].append(shard)
        acc += shard.length
    return out
