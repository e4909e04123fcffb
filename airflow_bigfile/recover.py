"""Recovery: put a target back to a consistent state after a crashed or killed job.

Runs under the target's lock, first thing in every entry point that edits a target: leftover
temporary files of an unfinished rewrite and stale staging are removed.
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
from dataclasses import asdict, dataclass, field

log = logging.getLogger(__name__)


@dataclass
class RecoveryResult:
    """What recovery found and did."""

    target: str
    rolled_back: bool = False
    removed: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.rolled_back and not self.removed

    @property
    def message(self) -> str:
        if self.clean:
            return f"{self.target}: clean, nothing to recover"
        done = []
        if self.rolled_back:
            done.append("rolled back an unfinished in-place commit (the old file is back)")
        if self.removed:
            done.append(f"removed {len(self.removed)} stale file(s) or folder(s)")
        return f"{self.target}: " + "; ".join(done)

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "clean": self.clean, "message": self.message}


def staging_root(path: str) -> str:
    """The default local staging folder of a target."""
    folder, name = os.path.split(os.path.abspath(path))
    return os.path.join(folder, f".{name}.bigfile-staging")


def recover_local(path: str) -> RecoveryResult:
    """Recover a local target; the caller holds its lock."""
    result = RecoveryResult(target=path)
    folder, name = os.path.split(os.path.abspath(path))
    for leftover in sorted(glob.glob(os.path.join(glob.escape(folder),
                                                  f".{glob.escape(name)}.bigfile-*.new"))):
        os.unlink(leftover)
        result.removed.append(leftover)
    stale = staging_root(path)
    if os.path.isdir(stale):
        shutil.rmtree(stale, ignore_errors=True)
        result.removed.append(stale)
    if not result.clean:
        log.info("%s", result.message)
    return result
