"""Patching shards: stream a shard in bounded blocks, check its source CRC, apply the edits
that fall in it, and stage the result.

Replace matches may straddle shards. A worker scans a shard from the offsets where each
replace's scan resumes (``resume``); the first shard of a batch does not know them and
assumes its own start. Its result records that assumption and the first offset where its
output differs from the source, so the committer can tell whether the guess held and, in
the rare case it did not (a match straddling into the shard's first changed bytes), patch
that shard again with the true offsets. The result is exactly the whole-file scan's.
"""

from __future__ import annotations

import bisect
import logging
import os
import threading
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, BinaryIO

from airflow_bigfile.cancel import check_stop
from airflow_bigfile.edits import Layout
from airflow_bigfile.exceptions import (
    BigFileError,
    EditConflictError,
    ShardChecksumError,
    StagingError,
)
from airflow_bigfile.io.checksum import crc32c
from airflow_bigfile.io.oscompat import has_holes
from airflow_bigfile.io.storage import Source, Staging
from airflow_bigfile.io.trust import parse_staged
from airflow_bigfile.patch._memreplace import find_all
from airflow_bigfile.patch.scan import Matcher, Window, replace_all
from airflow_bigfile.patch.shardfile import Placement, RecordWriter, ShardHeader
from airflow_bigfile.payload import CHUNK, Data, chunks, is_ranged
from airflow_bigfile.plan.manifest import Manifest, Shard
from airflow_bigfile.scan_clock import timed_scan

log = logging.getLogger(__name__)

# event kinds, in the order they apply at one offset: inserts go before a range's new bytes
_INSERT, _RANGE = 0, 1
# A block with fewer literal matches than one per this many bytes stages only the matches
# (the runs between them are copied from the source by the kernel at commit); a denser one
# is replaced whole by one C call.
SPARSE_GAP = 64 << 10
# The block buffer the calling thread's last patcher gave back (see take_block_buffer).
_spare = threading.local()


def take_block_buffer(size: int) -> bytearray:
    """A buffer of ``size`` bytes for a patcher's blocks: the one this thread's last patcher
    gave back when it is that size, else a new one. A patcher lives for one batch, often
    one shard, and a new buffer of a block's size is zero-filled and faulted in again."""
    buf: bytearray | None = getattr(_spare, "buf", None)
    _spare.buf = None
    return buf if buf is not None and len(buf) == size else bytearray(size)


def release_block_buffer() -> None:
    """Drop the calling thread's spare block buffer: a job run in a thread that outlives it
    (``workers=1`` runs in the caller's) does not keep it."""
    _spare.buf = None


@dataclass
class ShardResult:
    """What patching one shard found; JSON-able, so it can travel through XCom or a file."""

    index: int
    resume_in: list[int]
    resume_out: list[int]
    output_start: int
    output_length: int
    first_event: int | None
    matches: list[int]
    new_bytes: int
    staged_bytes: int
    payload_crc: int
    changed: bool
    staged: str | None
    source_crc: int | None
    error: str | None = None
    error_type: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def failed(cls, index: int, resume_in: list[int], exc: BaseException) -> ShardResult:
        """The result of a shard whose patching failed with ``exc`` (the commit decides)."""
        return cls(index=index, resume_in=resume_in, resume_out=[], output_start=0,
                   output_length=0, first_event=None, matches=[], new_bytes=0,
                   staged_bytes=0, payload_crc=0, changed=False, staged=None,
                   source_crc=None, error=str(exc), error_type=type(exc).__name__)

    @classmethod
    def from_json(cls, obj: Any) -> ShardResult:
        """A result read back from staging: every field of its type, and a staged name that
        can only point at a batch file of the job's own staging folder."""
        try:
            result = cls(**obj)
        except TypeError as exc:
            raise StagingError(f"a worker's result is malformed: {exc}") from None
        ints = [result.index, result.output_start, result.output_length, result.new_bytes,
                result.staged_bytes, result.payload_crc, *result.resume_in,
                *result.resume_out, *result.matches]
        optional = [result.first_event, result.source_crc]
        if not (isinstance(result.resume_in, list) and isinstance(result.resume_out, list)
                and isinstance(result.matches, list)
                and all(type(n) is int for n in ints)
                and all(n is None or type(n) is int for n in optional)
                and isinstance(result.changed, bool)
                and all(v is None or isinstance(v, str)
                        for v in (result.error, result.error_type))):
            raise StagingError(f"a worker's result for shard {result.index!r:.20} has fields "
                               f"of the wrong type")
        if result.staged is not None:
            parse_staged(result.staged)
        return result


def job_tag(job_id: str) -> int:
    """The 32-bit tag of a job that its staged shards carry."""
    return crc32c(job_id.encode())


class _Discard:
    """A sink for dry runs: counts nothing, keeps nothing."""

    def write(self, data: object) -> None:
        pass

    def seek(self, offset: int) -> None:
        pass

    def close(self) -> None:
        pass


class _Slice:
    """A staged shard's region of its batch file, from ``base``; named ``file#base``."""

    def __init__(self, f: BinaryIO, base: int, file_name: str) -> None:
        self.f, self.base, self.pos, self.size = f, base, 0, 0
        self.name = f"{file_name}#{base}"
        self._at: int | None = None  # where the batch file's position is, if known

    def write(self, data: bytes | memoryview) -> None:
        if self._at != self.base + self.pos:
            self.f.seek(self.base + self.pos)
        self.f.write(data)
        self.pos += len(data)
        self._at = self.base + self.pos
        self.size = max(self.size, self.pos)

    def seek(self, offset: int) -> None:
        self.pos = offset

    def close(self) -> None:
        pass


@dataclass
class ScanState:
    """Where a shard's scan stands between blocks.

    ``cur``: the original offset up to which output is emitted; ``pos``: where each
    replace's scan resumes; ``counts``: each replace's matches so far; ``reach_end`` and
    ``reach_owner``: how far changed bytes reach and whose edit they are (an event that
    starts before ``reach_end`` conflicts with it); ``first``: the first changed offset.
    """

    cur: int
    pos: list[int]
    counts: list[int]
    reach_end: int
    reach_owner: int | None
    first: int | None = None

    @classmethod
    def resume(cls, start: int, end: int, resume: Sequence[int], owners: Sequence[int]
               ) -> ScanState:
        """The state at a shard ``[start, end)`` whose replaces (edit indexes ``owners``)
        resume at ``resume``: a match carried in from before covers up to the furthest."""
        pos = list(resume)
        cur = min(max(pos, default=start), end)
        owner = owners[pos.index(max(pos))] if pos and max(pos) > start else None
        return cls(cur, pos, [0] * len(pos), cur, owner)

    def pending(self, b1: int) -> bool:
        """Something before ``b1`` is still to scan (a shard covered by a carried match is
        still scanned by the other replaces: a match of theirs under the cover conflicts)."""
        return self.cur < b1 or any(p < b1 for p in self.pos)

    def changed_at(self, offset: int) -> None:
        """A change at ``offset``; changes come in order, so the first one stays."""
        if self.first is None:
            self.first = offset

    def changes(self, end: int, owner: int) -> None:
        """Changed bytes of edit ``owner`` reach ``end``."""
        self.reach_end, self.reach_owner = end, owner

    def resume_out(self, end: int) -> list[int]:
        """Where each replace's scan resumes in the next shard, which starts at ``end``."""
        return [max(end, p) for p in self.pos]


class Patcher:
    """Applies one manifest's edits to its shards (one per worker process or thread)."""

    def __init__(self, manifest: Manifest, source: Source, staging: Staging,
                 *, dry_run: bool = False, direct: str | None = None,
                 checksums: bool = True) -> None:
        self.manifest = manifest
        self.layout: Layout = manifest.layout
        self.source = source
        self.staging = staging
        self.dry_run = dry_run
        self.checksums = checksums  # see JobSpec
        self.size = manifest.identity.size
        self.matchers = [Matcher(edit, i, self.layout.owner(i)) for i, edit in
                         self.layout.replaces]
        self.reach = max([m.window for m in self.matchers], default=1)
        self.range_starts = [r[0] for r in self.layout.ranges]
        self.range_ends = [r[1] for r in self.layout.ranges]
        self.insert_offsets = [i[0] for i in self.layout.inserts]
        block = manifest.block_size
        self.block = block
        self.behind = min(self.reach, 4096) if any(e.regex for _, e in self.layout.replaces) \
            else 0
        # a window never holds more than the file (see _read), whatever max_match says
        self._buf = take_block_buffer(min(block + self.behind + self.reach, self.size))
        self._batch: BinaryIO | None = None
        self._batch_name = ""
        self._index = 0
        self._batch_end = 0
        self._slice: _Slice | None = None
        # ``direct``: the new file beside the target that the planner made for this job
        self._direct = (os.open(direct, os.O_WRONLY | getattr(os, "O_BINARY", 0)
                                | getattr(os, "O_NOFOLLOW", 0))
                        if direct is not None and not dry_run else None)
        # sized rather than preallocated: the source is sparse and the new file keeps holes
        self._direct_holes = self._direct is not None and has_holes(os.fstat(self._direct))

    def close(self) -> None:
        _spare.buf = self._buf
        if self._direct is not None:
            os.close(self._direct)
            self._direct = None
        if self._batch is not None:
            self._batch.close()
            self._batch = None

    def _shard_sink(self) -> _Slice:
        """Where a changed shard is staged: the next free bytes of this batch's one file
        (one file per batch, not per shard: ten thousand small shards stay cheap)."""
        if self._batch is None:
            # Named after its first shard, so files sort in shard order; a retried batch
            # writes a new file (its old one is simply no longer referenced).
            self._batch_name = f"shards-{self._index:07d}-{uuid.uuid4().hex[:8]}.bin"
            self._batch = self.staging.open_write(self._batch_name)
        if self._slice is not None:
            self._batch_end = self._slice.base + self._slice.size
        self._slice = _Slice(self._batch, self._batch_end, self._batch_name)
        return self._slice

    # -- one shard -----------------------------------------------------------------------

    def apply(self, shard: Shard, resume: Sequence[int] | None = None) -> ShardResult:
        """Apply the edits to ``shard`` and stage its output; ``resume`` gives each replace's
        scan position (default: the shard's start). Raises on a conflict, a pattern error or
        a source CRC mismatch."""
        start, end = shard.offset, shard.end
        if resume is None and start > 0 and self.matchers:
            resume = self._guess_resume(start)
        resume_in = [max(start, r) for r in resume] if resume else [start] * len(self.matchers)
        state = ScanState.resume(start, end, resume_in, [m.index for m in self.matchers])
        output_start = state.cur
        self._index = shard.index
        place = (Placement(self._direct, state.cur, end, self._direct_holes, self.checksums)
                 if self._direct is not None else None)
        writer = RecordWriter(_Discard if self.dry_run else self._shard_sink, place)
        take_crc = self.checksums or shard.crc is not None
        crc = 0
        try:
            b0 = start
            while b0 < end:
                check_stop()
                b1 = min(b0 + self.block, end)
                win = self._read(b0, b1)
                if take_crc:
                    crc = crc32c(win.view(b0, b1), crc)
                # A shard covered by a match from before must still be scanned by the other
                # replaces: a match of theirs starting under the cover is a conflict.
                if state.pending(b1):
                    self._block(win, b0, b1, state, writer)
                b0 = b1
            if shard.crc is not None and crc != shard.crc:
                raise ShardChecksumError(
                    f"shard {shard.index} of {self.manifest.target} (bytes {start}..{end}) "
                    f"does not match the CRC32C recorded at planning: the source changed or "
                    f"was read wrongly")
            header = writer.finish(lambda w: ShardHeader(
                shard.index, job_tag(self.manifest.job_id), start, shard.length,
                output_start, w.output_length,
                w.payload_length, crc, w.payload_crc, self.checksums))
        except BaseException:
            writer.abandon()  # its bytes in the batch file are never referenced
            raise
        if place is not None and header is not None:
            # Its output is in the new file: no one reads these source bytes again (an
            # unchanged shard's are, by the commit's copy, which drops them itself).
            self.source.done_with(start, shard.length)
        return ShardResult(
            index=shard.index, resume_in=resume_in,
            resume_out=state.resume_out(end), output_start=output_start,
            output_length=writer.output_length, first_event=state.first, matches=state.counts,
            new_bytes=writer.new_bytes, staged_bytes=writer.payload_length,
            payload_crc=writer.payload_crc,
            changed=header is not None,
            staged=writer.sink.name if header is not None and not self.dry_run else None,
            source_crc=crc if take_crc else None)

    def _guess_resume(self, start: int) -> list[int]:
        """Where each replace's scan most likely resumes at ``start`` (the first shard of a
        batch cannot know): the end of a match straddling ``start`` found by scanning the
        longest match's length before it, else ``start``. Scans of one pattern fall into
        step within a match or two; the committer checks the guess and re-patches the shard
        if it was wrong, so this only saves that work on dense, straddling matches."""
        guesses = []
        for matcher in self.matchers:
            lo = max(0, start - matcher.window)
            w0, w1 = max(0, lo - self.behind), min(self.size, start + matcher.window)
            buf = bytearray(w1 - w0)
            n = self.source.readinto(w0, memoryview(buf))
            with timed_scan(matcher.index, lo):
                guesses.append(matcher.straddling(buf[:n], lo - w0, start - w0) + w0)
        return guesses

    def _read(self, b0: int, b1: int) -> Window:
        w0 = max(0, b0 - self.behind)
        w1 = min(self.size, b1 + self.reach)
        view = memoryview(self._buf)[:w1 - w0]
        n = self.source.readinto(w0, view)
        if n != w1 - w0:
            raise ShardChecksumError(f"{self.manifest.target} is shorter than planned: "
                                     f"read {n} of {w1 - w0} bytes at offset {w0}")
        return Window(self._buf, n, w0, w1 == self.size)

    # -- one block -----------------------------------------------------------------------

    def _block(self, win: Window, b0: int, b1: int, state: ScanState,
               writer: RecordWriter) -> None:
        """Emit the output for original bytes ``[state.cur, b1)``, leaving ``state.cur``
        past a match that straddles ``b1``. A replace alone near this block takes a fast
        path (literal or regex); anything else goes event by event."""
        reach = self.reach
        near = (bisect.bisect_right(self.range_ends, b0 - reach),
                bisect.bisect_left(self.range_starts, b1 + reach),
                bisect.bisect_left(self.insert_offsets, b0 - reach),
                bisect.bisect_left(self.insert_offsets, b1 + reach))
        alone = len(self.matchers) == 1 and near[0] >= near[1] and near[2] >= near[3]
        if alone and not self.matchers[0].edit.regex:
            if self._literal_block(win, b1, state, writer):
                return
        elif alone and state.cur == state.pos[0] < b1:
            self._regex_block(win, b1, state, writer)
            return
        self._general_block(win, b0, b1, state, writer, near)

    def _literal_block(self, win: Window, b1: int, state: ScanState,
                       writer: RecordWriter) -> bool:
        """One literal replace and nothing else near: C calls up to a clean cut; True when
        that cut is ``b1`` (else the rest of the block goes event by event)."""
        matcher = self.matchers[0]
        start = state.cur
        cut = matcher.clean_cut(win, start, b1)
        if cut is None:
            return False
        find = matcher.edit.find
        lo, hi = start - win.base, cut - win.base
        few = find_all(memoryview(win.buf)[lo:hi], find, (cut - start) // SPARSE_GAP)
        if few is not None:
            # Few matches: stage just them; the runs between stay source copies.
            cur = start
            for i in few:
                hit = start + i
                writer.original(cur, hit - cur, win.view(cur, hit))
                writer.new(matcher.edit.replace)
                cur = hit + len(find)
            writer.original(cur, cut - cur, win.view(cur, cut))
            if few:
                state.changed_at(start + few[0])
            count = len(few)
        else:
            # More than the limit, so at least one match: the first is found before the
            # replace, which may overwrite the matches in place.
            state.changed_at(win.base + win.buf.find(find, lo, hi))
            out, count = replace_all(win.buf, lo, hi, find, matcher.edit.replace)
            writer.new(out)
        state.counts[0] += count
        state.cur = state.pos[0] = state.reach_end = cut
        return cut >= b1

    def _regex_block(self, win: Window, b1: int, state: ScanState,
                     writer: RecordWriter) -> None:
        """One regex and nothing else near: its matches cannot conflict with anything in
        this block, so RE2 takes the bulk where it can and a dense run of the rest is joined
        in one go, not event by event."""
        matcher = self.matchers[0]
        bulk = matcher.bulk(win, state.cur, b1)
        if bulk is not None:  # RE2 did the bulk; re does the rest from its clean cut
            if bulk.count:
                writer.new(bulk.data)
                state.changed_at(bulk.first)
            else:
                writer.original(state.cur, bulk.end - state.cur, bulk.data)
            state.counts[0] += bulk.count
            state.cur = bulk.end
            state.changes(bulk.end, matcher.index)
        with timed_scan(matcher.index, state.cur):
            found = list(matcher.matches(win, state.cur, b1))
        prev = state.cur
        if len(found) > (b1 - prev) // SPARSE_GAP:
            parts: list[bytes | memoryview] = []
            view, base = memoryview(win.buf), win.base
            for m_start, m_end, new in found:
                parts += (view[prev - base:m_start - base], new)
                prev = m_end
            writer.new(b"".join(parts))
        else:  # few: stage just them, the runs between stay source copies
            for m_start, m_end, new in found:
                writer.original(prev, m_start - prev, win.view(prev, m_start))
                writer.new(new)
                prev = m_end
        state.counts[0] += len(found)
        if prev > b1:
            self._check_beyond(matcher.index, found[-1][0], prev)
        if prev < b1:
            writer.original(prev, b1 - prev, win.view(prev, b1))
        state.pos[0] = state.cur = max(prev, b1)
        if found:
            state.changed_at(found[0][0])
            state.changes(prev, matcher.index)

    def _general_block(self, win: Window, b0: int, b1: int, state: ScanState,
                       writer: RecordWriter, near: tuple[int, int, int, int]) -> None:
        """Every edit near the block as events in order: matches of each replace, ranges
        (patch, delete) and inserts; an event inside changed bytes is a conflict."""
        r_lo, r_hi, i_lo, i_hi = near
        pos = state.pos
        events: list[tuple[int, int, int, int, bytes]] = []  # (start, kind, edit, end, new)
        for k, matcher in enumerate(self.matchers):
            if pos[k] >= b1:
                continue
            last = pos[k]
            with timed_scan(matcher.index, pos[k]):
                for m_start, m_end, new in matcher.matches(win, pos[k], b1):
                    events.append((m_start, _RANGE, matcher.index, m_end, new))
                    state.counts[k] += 1
                    last = m_end
            if last > b1:
                self._check_beyond(matcher.index, events[-1][0], last)
            pos[k] = max(b1, last)
        for r_start, r_end, data, idx in self.layout.ranges[r_lo:r_hi]:
            if r_end > b0 and r_start < b1:
                p0, p1 = max(r_start, b0), min(r_end, b1)
                events.append((p0, _RANGE, idx, p1, data[p0 - r_start:p1 - r_start]))
        for offset, data, idx in self.layout.inserts[i_lo:i_hi]:
            if b0 <= offset < b1:
                events.append((offset, _INSERT, idx, offset, data))
        events.sort(key=lambda e: (e[0], e[1], e[2]))
        cur = state.cur
        for ev_start, kind, idx, ev_end, new in events:
            if ev_start < state.reach_end:  # inside changed bytes that started earlier
                assert state.reach_owner is not None
                self._conflict(state.reach_owner, idx, ev_start)
            state.changed_at(ev_start)
            if ev_start > cur:
                writer.original(cur, ev_start - cur, win.view(cur, ev_start))
            cur = max(cur, ev_start)
            _new(writer, new)
            if kind == _RANGE:
                cur = ev_end
                state.changes(ev_end, idx)
        if cur < b1:
            writer.original(cur, b1 - cur, win.view(cur, b1))
            cur = b1
        state.cur = cur

    def _check_beyond(self, owner: int, start: int, end: int) -> None:
        """A match reaching past its block may overlap an edit in a later block or shard."""
        k = bisect.bisect_left(self.range_starts, end)
        for r_start, r_end, _, idx in self.layout.ranges[max(0, k - 1):k]:
            if r_start < end and r_end > start:
                self._conflict(owner, idx, max(start, r_start))
        k = bisect.bisect_right(self.insert_offsets, start)
        if k < len(self.insert_offsets) and self.insert_offsets[k] < end:
            self._conflict(owner, self.layout.inserts[k][2], self.insert_offsets[k])

    def _conflict(self, a: int, b: int, start: int) -> None:
        a, b = sorted((a, b))
        raise EditConflictError(f"{self.layout.owner(a)} conflicts with {self.layout.owner(b)}:"
                                f" both change the bytes at offset {start}")


def _new(writer: RecordWriter, data: Data) -> None:
    """Output new bytes; a long insert (or a file-backed one) a chunk at a time."""
    if not is_ranged(data) and len(data) <= CHUNK:
        writer.new(data)  # type: ignore[arg-type]
        return
    for piece in chunks(data):
        writer.new(piece)


def apply_shards(patcher: Patcher, shards: Sequence[Shard],
                 resume: Sequence[int] | None = None) -> list[ShardResult]:
    """Apply the edits to contiguous ``shards`` in order, chaining each one's scan state
    into the next.

    A failure is recorded in the failing shard's result (and the rest are left out), so the
    committer can decide whether it stands or came from a wrong guess of ``resume``.
    """
    results: list[ShardResult] = []
    for shard in shards:
        if not shard.patch:
            continue
        try:
            result = patcher.apply(shard, resume)
        except BigFileError as exc:
            results.append(ShardResult.failed(
                shard.index, [max(shard.offset, r) for r in resume] if resume
                else [shard.offset] * len(patcher.matchers), exc))
            break
        results.append(result)
        resume = result.resume_out
    return results

