"""How a job shards, reads and commits: every knob the entry points take, checked once
before any I/O and carried as one value."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from airflow_bigfile.exceptions import EditError
from airflow_bigfile.plan.manifest import BLOCK
from airflow_bigfile.scan_clock import check_timeout
from airflow_bigfile.sizes import parse_size

DEFAULT_ALIGN = 4096
MIN_SPREAD_SHARD = 1 << 20
MODES = ("auto", "inplace", "rewrite")
WRITERS = ("pwrite", "mmap")
# fast: CRC32Cs taken as the bytes stream, the source's identity checked before the commit;
# full: also read the source and the bytes workers wrote into the new file again.
VERIFY_LEVELS = ("fast", "full")
#: the most shards a chosen shard size may cut a file into (each costs memory and a task)
MAX_SHARDS = 100_000


def default_align(shard_size: int) -> int:
    """4 KiB, or the largest power of two dividing ``shard_size`` when that is smaller, so
    an explicit shard size is honoured exactly."""
    return min(DEFAULT_ALIGN, shard_size & -shard_size)


@dataclass(frozen=True)
class Settings:
    """A job's settings. ``shard_size`` None means the target's default (and, for
    :meth:`for_target`, that the caller left it to us); ``taper`` > 1 is the number of
    workers whose finishing times the default shard layout evens out (see
    :func:`~airflow_bigfile.plan.manifest.boundaries`); ``chosen``: the caller chose the
    shard size."""

    shard_size: int | None = None
    align: int | None = None
    block_size: int = BLOCK
    delimiter: bytes | None = None
    mode: str = "auto"
    writer: str = "pwrite"
    wait: float = 0.0
    break_hardlinks: bool = False
    verify: str = "fast"
    regex_timeout: float | None = None
    taper: int = 1
    chosen: bool = False

    @classmethod
    def parse(cls, *, shard_size: int | str | None = None, align: int | None = None,
              block_size: int | str | None = None, delimiter: bytes | str | None = None,
              mode: str = "auto", writer: str = "pwrite", wait: float = 0.0,
              break_hardlinks: bool = False, verify: str = "fast",
              regex_timeout: float | None = None) -> Settings:
        """Check and normalise the entry points' arguments; raise :class:`EditError` naming
        the first bad one."""
        shard = None if shard_size is None else parse_size(shard_size, name="shard_size")
        if shard is not None and shard < 1:
            raise EditError(f"shard_size must be at least 1 byte, not {shard}")
        block = parse_size(BLOCK if block_size is None else block_size, name="block_size")
        if block < 1:
            raise EditError(f"block_size must be at least 1 byte, not {block}")
        if align is not None and (isinstance(align, bool) or not isinstance(align, int)
                                  or align < 1):
            raise EditError(f"align must be a positive integer, not {align!r}")
        if isinstance(delimiter, str):
            delimiter = delimiter.encode("utf-8")
        if delimiter is not None and not delimiter:
            raise EditError("delimiter must not be empty")
        if mode not in MODES:
            raise EditError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        if writer not in WRITERS:
            raise EditError(f"writer must be {' or '.join(WRITERS)}, not {writer!r}")
        if verify not in VERIFY_LEVELS:
            raise EditError(f"verify must be {' or '.join(VERIFY_LEVELS)}, not {verify!r}")
        if (isinstance(wait, bool) or not isinstance(wait, int | float)
                or not (0 <= wait <= math.inf)):
            raise EditError(f"wait must be a number of seconds >= 0 (inf: no limit), "
                            f"not {wait!r}")
        if not isinstance(break_hardlinks, bool):
            raise EditError(f"break_hardlinks must be true or false, not {break_hardlinks!r}")
        return cls(shard, align, block, delimiter, mode, writer, wait, break_hardlinks,
                   verify, check_timeout(regex_timeout))

    def for_target(self, default_shard_size: int, *, size: int | None = None,
                   workers: int | None = None) -> Settings:
        """Shard size and alignment filled in with the target's defaults. Given the file's
        ``size`` and the ``workers``, a default shard is small enough that every worker gets
        a few (a 16 MiB file on two workers is eight 2 MiB shards, not one), but not below
        1 MiB, and with more than one worker the shards shrink toward the end of the file
        (to an eighth of that at least) so the workers finish together; a shard size the
        caller chose is kept, and all its shards are that size."""
        shard, taper = self.shard_size, 1
        if shard is None:
            shard = default_shard_size
            if size is not None and workers:
                per = -(-size // (4 * workers))
                per = max(MIN_SPREAD_SHARD, -(-per // MIN_SPREAD_SHARD) * MIN_SPREAD_SHARD)
                shard, taper = min(shard, per), workers
        return replace(self, shard_size=shard, align=self.align or default_align(shard),
                       taper=taper, chosen=self.shard_size is not None)

    def check_shard_count(self, size: int) -> None:
        """Refuse, before the file is cut, a chosen shard size that would cut its ``size``
        bytes into more than :data:`MAX_SHARDS` shards (``--shard-size 1`` on a file of a
        few MB would take GBs of memory)."""
        assert self.shard_size is not None
        count = -(-size // self.shard_size)
        if self.chosen and count > MAX_SHARDS:
            raise EditError(
                f"shard_size {self.shard_size:,} B would cut this {size:,}-byte file into "
                f"{count:,} shards, more than {MAX_SHARDS:,} (each costs memory and a "
                f"task); use a shard size of at least {-(-size // MAX_SHARDS):,} B")
