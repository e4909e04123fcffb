"""The first changes an edit list would make, found without a full run.

A preview is a dry run that stops early: offset edits are known from the list itself, and
replace matches are found by one scan from the start of the file, in growing blocks, that
stops as soon as ``count`` changes lie before the block's end (no change found later can
come before them). Nothing is written, not even a lock file.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from airflow_bigfile.edits import Append, Insert, Layout, check_offsets, coerce_edits
from airflow_bigfile.exceptions import EditConflictError
from airflow_bigfile.io.errors import translated
from airflow_bigfile.io.storage import Source
from airflow_bigfile.patch.scan import Matcher, Window
from airflow_bigfile.plan.manifest import new_job_id
from airflow_bigfile.targets.registry import open_target

CONTEXT = 40  # bytes of unchanged context shown on each side, cut at line ends
SHOWN = 200  # at most this many of a change's old and new bytes are kept
FIRST_BLOCK = 64 << 10
LAST_BLOCK = 8 << 20
BEHIND = 4096  # look-behind context a regex may need before a block


@dataclass(frozen=True)
class Change:
    """One change: the original bytes ``[offset, offset + old_length)`` become
    ``new_length`` new bytes. ``old``/``new`` hold at most :data:`SHOWN` of them, ``before``
    and ``after`` the unchanged bytes around them on the same line."""

    offset: int
    edit: str
    old: bytes
    old_length: int
    new: bytes
    new_length: int
    before: bytes
    after: bytes

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Preview:
    """The first changes of an edit (in file order) and how much of the file was read."""

    target: str
    size: int
    changes: list[Change]
    scanned: int


@translated
def preview_edit(url: str, edits: Any, count: int, *,
                 storage_options: dict[str, Any] | None = None) -> Preview:
    """The first ``count`` changes ``edits`` would make to ``url``, in file order.

    Reads only as far as the ``count``-th change (plus context); the edits are checked as
    a real run checks them, and two shown changes that overlap raise the conflict a real
    run would raise. Changes past the ones shown are not checked.
    """
    edit_list = coerce_edits(edits)
    target = open_target(url, storage_options)
    target.check(write=False)
    with target.session(wait=0, job=new_job_id(), dry_run=True), target.source() as source:
        size = target.identity().size
        layout = check_offsets(edit_list, size, url)
        found = _offset_changes(layout)
        scanned = _scan(layout, source, size, found, count, url)
        found.sort(key=lambda c: (c[0], c[1] > c[0]))
        _check_overlaps(found[:count], layout)
        changes = [_change(source, size, *item[:3], layout.owner(item[3]))
                   for item in found[:count]]
    return Preview(target=url, size=size, changes=changes, scanned=scanned)


# (offset, end, new data or a zero count, edit index)
_Found = tuple[int, int, Any, int]


def _offset_changes(layout: Layout) -> list[_Found]:
    """The changes of the offset edits, the tail in the order it is written (inserts at the
    end, a growing truncate's zero bytes, appends)."""
    size = layout.size
    found: list[_Found] = [(s, e, data, i) for s, e, data, i in layout.ranges]
    found += [(offset, offset, data, i) for offset, data, i in layout.inserts]
    found += [(size, size, e.data, i) for i, e in enumerate(layout.edits)
              if isinstance(e, Insert) and e.offset == size]
    if layout.zero_fill:
        assert layout.truncate_index is not None
        found.append((size, size, layout.zero_fill, layout.truncate_index))
    found += [(size, size, e.data, i) for i, e in enumerate(layout.edits)
              if isinstance(e, Append)]
    return found


def _scan(layout: Layout, source: Source, size: int, found: list[_Found], count: int,
          url: str) -> int:
    """Add replace matches to ``found`` block by block; return the bytes scanned."""
    if not layout.replaces:
        return 0
    matchers = [Matcher(edit, i, layout.owner(i)) for i, edit in layout.replaces]
    reach = max(m.window for m in matchers) - 1
    pos = [0] * len(matchers)
    start, block = 0, FIRST_BLOCK
    while start < size:
        end = min(size, start + block)
        base = max(0, start - BEHIND)
        buf = bytearray(min(size, end + reach) - base)
        n = source.readinto(base, memoryview(buf))
        win = Window(buf, n, base, base + n >= size)
        for k, matcher in enumerate(matchers):
            for m_start, m_end, new in matcher.matches(win, max(pos[k], start), end):
                found.append((m_start, m_end, new, matcher.index))
                pos[k] = m_end
        if sum(1 for f in found if f[0] < end) >= count:
            return end
        start, block = end, min(LAST_BLOCK, 2 * block)
    for matcher in matchers:
        tail = bytearray(min(size, BEHIND))
        source.readinto(size - len(tail), memoryview(tail))
        matcher.check_end(bytes(tail), size)
    return size


def _check_overlaps(found: list[_Found], layout: Layout) -> None:
    """Two shown changes over the same original bytes conflict, as in a real run."""
    for (_, e1, _, i1), (s2, e2, _, i2) in zip(found, found[1:], strict=False):
        if s2 < e1:
            a, b = sorted((i1, i2))
            raise EditConflictError(
                f"{layout.owner(a)} conflicts with {layout.owner(b)}: both change bytes "
                f"{s2}..{min(e1, e2)}")


def _read(source: Source, start: int, length: int) -> bytes:
    buf = bytearray(max(0, length))
    n = source.readinto(start, memoryview(buf)) if length > 0 else 0
    return bytes(buf[:n])


def _change(source: Source, size: int, offset: int, end: int, data: Any, edit: str
            ) -> Change:
    new_length = data if isinstance(data, int) else len(data)
    new = bytes(min(new_length, SHOWN)) if isinstance(data, int) else bytes(data[:SHOWN])
    before = _read(source, max(0, offset - CONTEXT), min(offset, CONTEXT))
    after = _read(source, end, min(CONTEXT, size - end))
    return Change(offset=offset, edit=edit, old=_read(source, offset, min(end - offset, SHOWN)),
                  old_length=end - offset, new=new, new_length=new_length,
                  before=before.rpartition(b"\n")[2], after=after.partition(b"\n")[0])
