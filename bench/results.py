"""The measurements of one benchmark run, by (benchmark, size, tool), saved as JSON so a
report can be written again without measuring (``--report-from``)."""

from __future__ import annotations

import contextlib
import json
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from bench.launcher import Run


@dataclass
class Series:
    """Every run of one tool on one benchmark at one size."""

    runs: list[Run] = field(default_factory=list)
    identical: list[bool] = field(default_factory=list)
    engine_seconds: list[float] = field(default_factory=list)
    commit_mode: str = ""

    @property
    def median(self) -> float:
        return statistics.median(r.seconds for r in self.runs)

    @property
    def peak_rss(self) -> int:
        return max(r.rss for r in self.runs)


class Results:
    """All series of a run."""

    def __init__(self) -> None:
        self.series: dict[tuple[str, int, str], Series] = defaultdict(Series)

    def add(self, bench: str, size: int, tool: str, run: Run, same: bool | None = None) -> None:
        """Record ``run``; ``same``: its output matched the reference; for ours, the time
        and commit mode the engine reported in its ``--json`` line."""
        s = self.series[(bench, size, tool)]
        s.runs.append(run)
        if same is not None:
            s.identical.append(same)
        if tool.startswith("bigfile"):
            with contextlib.suppress(ValueError, IndexError):
                info = json.loads(run.stdout.strip().splitlines()[-1])
                s.engine_seconds.append(float(info["seconds"]))
                s.commit_mode = info.get("commit_mode", "")

    def get(self, bench: str, size: int, tool: str) -> Series | None:
        return self.series.get((bench, size, tool))

    def to_json(self) -> list[dict[str, Any]]:
        return [{"bench": b, "size": n, "tool": t, "commit_mode": s.commit_mode,
                 "identical": s.identical, "engine_seconds": s.engine_seconds,
                 "runs": [{"seconds": r.seconds, "rss": r.rss} for r in s.runs]}
                for (b, n, t), s in self.series.items()]

    @classmethod
    def from_json(cls, items: list[dict[str, Any]]) -> Results:
        res = cls()
        for it in items:
            s = res.series[(it["bench"], it["size"], it["tool"])]
            s.runs = [Run(r["seconds"], r["rss"], 0, "", "") for r in it["runs"]]
            s.identical, s.engine_seconds = it["identical"], it["engine_seconds"]
            s.commit_mode = it["commit_mode"]
        return res
