"""Planning: split the source at aligned offsets into shards and write the manifest.

A shard boundary is a multiple of ``align``; with a ``delimiter`` it moves forward past the
next delimiter at or after that offset (record alignment, like ``fsspec.utils.read_block``),
so records stay whole. Each shard that the edits touch records the CRC32C of its source.
"""

from __future__ import annotations

import bisect
import json
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from airflow_bigfile.cancel import check_stop
from airflow_bigfile.edits import Edit, Layout, check_offsets, edit_to_json, edits_from_json
from airflow_bigfile.exceptions import StagingError
from airflow_bigfile.io.checksum import crc32c
from airflow_bigfile.io.storage import Identity, Source, Staging
from airflow_bigfile.io.trust import check_digest, check_job_id, manifest_digest
from airflow_bigfile.payload import INLINE_MAX, StagedPayload, stage_payload
from airflow_bigfile.scan_clock import check_timeout

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
BLOCK = 8 << 20  # streaming block: larger ones are slower (glibc maps fresh buffers >32 MiB)


@dataclass(frozen=True)
class Shard:
    """A slice ``[offset, offset + length)`` of the source; ``patch`` tells whether a worker
    must read it (the edits touch it); ``crc`` is its source CRC32C when it does."""

    index: int
    offset: int
    length: int
    patch: bool
    crc: int | None = None

    @property
    def end(self) -> int:
        return self.offset + self.length


@dataclass
class Manifest:
    """Everything a worker on any machine needs to patch shards, and the committer to check."""

    job_id: str
    target: str
    identity: Identity
    edits: list[Edit]
    shards: list[Shard]
    align: int
    delimiter: bytes | None
    block_size: int = BLOCK
    staging: str = ""
    created: float = field(default_factory=time.time)
    # Workers write into the new file beside the target (offsets are known); its path is
    # derived from the target and the job id (Sidecars.new_file), never stored here.
    direct: bool = False
    regex_timeout: float | None = None  # for the patch step's re scans (scan_clock.py)

    @property
    def layout(self) -> Layout:
        return check_offsets(self.edits, self.identity.size, self.target)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": MANIFEST_VERSION, "job_id": self.job_id, "target": self.target,
            "identity": self.identity.to_dict(), "edits": [edit_to_json(e) for e in self.edits],
            "align": self.align,
            "delimiter": self.delimiter.hex() if self.delimiter is not None else None,
            "block_size": self.block_size, "staging": self.staging, "created": self.created,
            "direct": self.direct, "regex_timeout": self.regex_timeout,
            "shards": [[s.offset, s.length, int(s.patch), s.crc] for s in self.shards],
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any], staging: Staging | None = None) -> Manifest:
        if not isinstance(obj, dict) or obj.get("version") != MANIFEST_VERSION:
            version = obj.get("version") if isinstance(obj, dict) else None
            raise StagingError(f"manifest version {version!r} is not supported")
        if not isinstance(obj.get("direct", False), bool):
            raise StagingError(f"the manifest's direct flag {obj['direct']!r:.80} is not "
                               f"true or false")
        try:
            return cls(
                job_id=check_job_id(obj["job_id"], "the manifest"), target=obj["target"],
                identity=Identity(**obj["identity"]),
                edits=edits_from_json(obj["edits"], staging),
                shards=[Shard(i, off, n, bool(p), crc)
                        for i, (off, n, p, crc) in enumerate(obj["shards"])],
                align=obj["align"],
                delimiter=bytes.fromhex(obj["delimiter"]) if obj["delimiter"] else None,
                block_size=obj["block_size"], staging=obj["staging"], created=obj["created"],
                direct=obj.get("direct", False),
                regex_timeout=check_timeout(obj.get("regex_timeout")))
        except (KeyError, TypeError, ValueError) as exc:
            raise StagingError(f"the manifest is malformed: {exc}") from exc

    def save(self, staging: Staging) -> str:
        """Write the manifest and return its SHA-256, which every batch carries; edit data
        larger than :data:`INLINE_MAX` is first staged as its own file and the edits then
        read it from there (workers get a reference, checked by CRC32C per chunk)."""
        self.edits = [_staged(edit, i, staging) for i, edit in enumerate(self.edits)]
        data = json.dumps(self.to_json(), separators=(",", ":")).encode()
        staging.write_bytes(MANIFEST, data)
        return manifest_digest(data)

    @classmethod
    def load(cls, staging: Staging, sha256: str) -> Manifest:
        """The manifest in ``staging``, refused unless its bytes have the SHA-256 the plan
        returned (the staging may be writable by others)."""
        data = staging.read_bytes(MANIFEST)
        check_digest(data, sha256, staging.path(MANIFEST))
        return cls.from_json(staging.parse_json(MANIFEST, data), staging)


def _staged(edit: Edit, index: int, staging: Staging) -> Edit:
    data = getattr(edit, "data", None)
    if data is None or isinstance(data, StagedPayload) or len(data) <= INLINE_MAX:
        return edit
    return replace(edit, data=stage_payload(data, staging, f"payload-{index}.bin"))


def boundaries(size: int, shard_size: int, align: int, source: Source | None = None,
               delimiter: bytes | None = None, taper: int = 1) -> list[int]:
    """Shard start offsets: multiples of ``align`` about ``shard_size`` apart, each moved
    past the next ``delimiter`` when one is given.

    ``taper`` > 1 is the number of workers taking the shards in file order: the shards then
    shrink toward the end of the file (see :func:`_tapered`), so the workers finish at
    about the same time instead of one patching a whole last shard while the others idle."""
    step = max(align, -(-shard_size // align) * align)
    starts = [0]
    for offset in (_tapered(size, step, align, taper) if taper > 1
                   else range(step, size, step)):
        if delimiter:
            assert source is not None
            offset = _after_delimiter(source, offset, delimiter, size)
        if starts[-1] < offset < size:
            starts.append(offset)
    return starts if size else []


def _tapered(size: int, step: int, align: int, workers: int) -> Iterator[int]:
    """Aligned offsets where each shard is the smaller of ``step`` and an even share of what
    is left among twice the ``workers``, but not below an eighth of ``step`` (guided
    self-scheduling): the shards any worker still takes near the end are short."""
    floor = max(align, step // 8 // align * align)
    offset = 0
    while True:
        share = -(-(size - offset) // (2 * workers) // align) * align
        offset += min(step, max(floor, share))
        if offset >= size:
            return
        yield offset


def edit_windows(layout: Layout, shard_size: int, align: int, gap: int = 64 << 10
                 ) -> list[int]:
    """Shard start offsets for edits that need no scan (patches, inserts, deletes,
    truncates): small aligned windows around the edits, merged when closer than ``gap`` and
    split at ``shard_size``, with the untouched stretches between them as shards nobody
    reads. Ten thousand scattered patches then read kilobytes, not the file."""
    size = layout.size
    spans = sorted([(start, end) for start, end, _, _ in layout.ranges]
                   + [(offset, offset + 1) for offset, _, _ in layout.inserts])
    windows: list[list[int]] = []
    for start, end in spans:
        lo, hi = start - start % align, min(size, -(-end // align) * align)
        if windows and lo <= windows[-1][1] + gap:
            windows[-1][1] = max(windows[-1][1], hi)
        else:
            windows.append([lo, hi])
    step = max(align, -(-shard_size // align) * align)
    starts: list[int] = []
    done = 0
    for lo, hi in windows:
        if done < lo:
            starts.append(done)
        starts.extend(range(lo, hi, step))
        done = hi
    if done < size:
        starts.append(done)
    return starts


def _after_delimiter(source: Source, offset: int, delimiter: bytes, size: int) -> int:
    """The offset just past the first ``delimiter`` that ends after ``offset`` (or ``size``)."""
    chunk = max(64 << 10, 4 * len(delimiter))
    buf = bytearray(chunk + len(delimiter))
    pos = max(0, offset - len(delimiter) + 1)
    while pos < size:
        n = source.readinto(pos, memoryview(buf))
        hit = buf.find(delimiter, 0, n)
        if hit >= 0:
            return pos + hit + len(delimiter)
        if pos + n >= size:
            break
        pos += n - len(delimiter) + 1
    return size


def touched(layout: Layout, starts: Sequence[int]) -> set[int]:
    """Indexes of the shards a worker must read: all of them when any edit is a replace,
    otherwise only those an offset edit falls in."""
    if layout.replaces:
        return set(range(len(starts)))
    hit: set[int] = set()
    for start, end, _, _ in layout.ranges:
        first = bisect.bisect_right(starts, start) - 1
        last = bisect.bisect_right(starts, end - 1) - 1
        hit.update(range(first, last + 1))
    for offset, _, _ in layout.inserts:
        hit.add(bisect.bisect_right(starts, offset) - 1)
    return hit


def source_crc(source: Source, offset: int, length: int, block: int = BLOCK) -> int:
    """CRC32C of ``length`` source bytes from ``offset``, read in bounded blocks."""
    buf = bytearray(min(block, length))
    view = memoryview(buf)
    crc, done = 0, 0
    while done < length:
        check_stop()
        n = source.readinto(offset + done, view[:min(block, length - done)])
        if n == 0:
            break
        crc = crc32c(view[:n], crc)
        done += n
    return crc


def new_job_id() -> str:
    return time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]
