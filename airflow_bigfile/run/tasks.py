"""The units of work an executor runs: checksum source ranges, patch a batch of shards.

Each takes a :class:`JobSpec` (a few strings, picklable and JSON-able) and finds the manifest
in staging, so it runs the same in a thread, another process, a Dask worker or an Airflow
mapped task on another machine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from airflow_bigfile.io.sidecars import Sidecars
from airflow_bigfile.io.storage import Source, Staging, url_to_fs
from airflow_bigfile.patch.patcher import Patcher, ShardResult, apply_shards
from airflow_bigfile.plan.manifest import Manifest, source_crc


@dataclass(frozen=True)
class JobSpec:
    """Where a job's source and staging live, and how to reach them.

    ``checksums``: workers take the CRC32C of the source bytes they read (unless planning
    took it) and of the bytes they write into the new file. Only a full verify reads those
    bytes again to check them, so a job verified fast, whose workers are its own, skips
    that work; a planned CRC is checked either way."""

    target: str
    staging: str
    storage_options: dict[str, Any] = field(default_factory=dict)
    staging_options: dict[str, Any] = field(default_factory=dict)
    dry_run: bool = False
    checksums: bool = True

    def source(self, pin: tuple[int, int] | None = None) -> Source:
        """The target's bytes; locally only if it is still the file ``pin`` names."""
        fs, path = url_to_fs(self.target, self.storage_options)
        return Source(fs, path, pin)

    def open_staging(self) -> Staging:
        """The staging folder; a remote one uses ``staging_options``, or the target's
        options when it lives on the same kind of store."""
        options = self.staging_options
        protocol = self.staging.split("://", 1)[0] if "://" in self.staging else "file"
        if not options and protocol != "file":
            options = self.storage_options
        fs, path = url_to_fs(self.staging, options)
        return Staging(fs, path)


def checksum_ranges(spec: JobSpec, ranges: Sequence[tuple[int, int, int]],
                    pin: tuple[int, int] | None = None) -> list[tuple[int, int]]:
    """CRC32C of each ``(index, offset, length)`` source range: ``[(index, crc), ...]``
    (locally of the file ``pin`` names)."""
    with spec.source(pin) as source:
        return [(index, source_crc(source, offset, length)) for index, offset, length in ranges]


def patch_shards(spec: JobSpec, indices: Sequence[int], resume: Sequence[int] | None,
                 manifest: Manifest) -> list[ShardResult]:
    """Patch the contiguous shards ``indices`` of the job's manifest and stage their output
    (workers writing into the new file find it beside the target, by the job id)."""
    staging = spec.open_staging()
    with spec.source(manifest.identity.pin) as source:
        direct = (Sidecars.of(source.path).new_file(manifest.job_id)
                  if manifest.direct and source.fileno is not None else None)
        patcher = Patcher(manifest, source, staging, dry_run=spec.dry_run, direct=direct,
                          checksums=spec.checksums)
        try:
            return apply_shards(patcher, [manifest.shards[i] for i in indices], resume)
        finally:
            patcher.close()
