"""Turning shard results into one verified assembly plan.

Walks the shards in order, carrying each replace's scan position across boundaries. A
shard whose worker guessed that position wrongly, in a way that changes its output, is
patched again here with the true one; a worker error stands only if the worker's guess was
right. The outcome is a list of :class:`Piece` s that together are the new file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from airflow_bigfile import exceptions
from airflow_bigfile.exceptions import BigFileError, StagingError
from airflow_bigfile.patch.patcher import ShardResult
from airflow_bigfile.plan.manifest import Manifest, Shard


@dataclass(frozen=True)
class Piece:
    """Output bytes of one shard: the source's ``[start, end)`` when ``staged`` is None,
    else the staged shard's output after skipping its first ``skip`` bytes."""

    shard: Shard
    start: int
    end: int
    staged: str | None = None
    skip: int = 0
    result: ShardResult | None = None

    @property
    def changed(self) -> bool:
        return self.result is not None and self.result.changed

    @property
    def length(self) -> int:
        if self.result is not None and self.result.changed:
            return self.result.output_length - self.skip
        return self.end - self.start


def raise_result_error(result: ShardResult) -> None:
    """Re-raise the error a worker recorded, as its own exception class."""
    cls = getattr(exceptions, result.error_type or "", None)
    if not (isinstance(cls, type) and issubclass(cls, BigFileError)):
        cls = BigFileError
    raise cls(result.error)


def resolve_pieces(manifest: Manifest, results: Mapping[int, ShardResult],
                   repatch: Callable[[Shard, list[int]], ShardResult],
                   replaces: int) -> list[Piece]:
    """The shards' output in order, re-patching any shard whose guess of the incoming scan
    positions was wrong. Raises the first edit error that stands."""
    return list(iter_pieces(manifest, results.get, repatch, replaces))


def iter_pieces(manifest: Manifest, result_of: Callable[[int], ShardResult | None],
                repatch: Callable[[Shard, list[int]], ShardResult],
                replaces: int) -> Iterator[Piece]:
    """:func:`resolve_pieces` one piece at a time: ``result_of`` may wait for a shard's
    worker, so a commit can write the first pieces while later shards are still patched."""
    resume = [0] * replaces
    for shard in manifest.shards:
        start, end = shard.offset, shard.end
        if not shard.patch:
            yield Piece(shard, start, end)
            continue
        true_in = [max(start, r) for r in resume]
        cover = min(max(true_in, default=start), end)
        result = result_of(shard.index)
        if result is None:
            raise StagingError(f"no result for shard {shard.index}: its worker did not finish")
        if result.resume_in != true_in:
            guessed = all(r == start for r in result.resume_in)
            holds = (guessed and result.error is None
                     and (result.first_event is None or cover <= result.first_event))
            if not holds:
                result = repatch(shard, true_in)
        if result.error is not None:
            raise_result_error(result)
        skip = cover - result.output_start
        if result.changed or cover < end:
            yield Piece(shard, cover, end, result.staged, skip, result)
        resume = [max(a, b) for a, b in zip(result.resume_out, true_in, strict=False)]
