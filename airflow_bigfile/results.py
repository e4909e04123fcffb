"""What the entry points return."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class EditResult:
    """The figures of one edit (or of what a dry run would do)."""

    target: str
    size_before: int
    size_after: int
    matches: int
    shards: int
    shards_changed: int
    bytes_written: int
    commit_mode: str
    dry_run: bool
    job_id: str
    seconds: float
    commit_reason: str = ""  # why commit_mode was chosen (``auto`` weighs the bytes written)
    # per regex replace: {"edit", "engine": "re2" | "re", "reason": why re runs it}
    regex_engines: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class PlannedEdit:
    """What :func:`~airflow_bigfile.api.plan_edit` returns: where the manifest is and the
    shard batches to patch. Each batch is a small JSON-able dict naming its staging, so a
    worker needs nothing else."""

    target: str
    staging: str
    job_id: str
    shards: int
    batches: list[dict[str, Any]]
    manifest_sha256: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
