"""The trivial in-memory reference model of an edit list (the oracle of the property tests).

Written straight from DESIGN.md's "Edit semantics", independently of the engine: it shares
nothing with ``airflow_bigfile`` but the edit classes and the exception types. Every offset
refers to the original bytes; the whole edit list is one change.
"""

from __future__ import annotations

import re

from airflow_bigfile.edits import Append, Delete, Insert, Patch, Replace, Truncate
from airflow_bigfile.exceptions import EditConflictError, EditError, PatternError


def replace_matches(data: bytes, edit: Replace) -> list[tuple[int, int, bytes]]:
    """The ``(start, end, new_bytes)`` of every match of ``edit`` in the whole of ``data``,
    exactly where ``bytes.replace`` / ``re.sub`` would replace. Raises :class:`PatternError`
    for a zero-length regex match or one longer than ``max_match``."""
    out = []
    if not edit.regex:
        start = data.find(edit.find)
        while start >= 0:
            out.append((start, start + len(edit.find), edit.replace))
            start = data.find(edit.find, start + len(edit.find))
        return out
    for m in re.compile(edit.find).finditer(data):
        length = m.end() - m.start()
        if length == 0:
            raise PatternError(f"regex {edit.find!r} matches zero bytes at {m.start()}")
        if length > edit.max_match:
            raise PatternError(f"regex {edit.find!r}: a match of {length} bytes at {m.start()} "
                               f"is longer than max_match={edit.max_match}")
        out.append((m.start(), m.end(), m.expand(edit.replace)))
    return out


def match_count(data: bytes, edits: list) -> int:
    """How many replace matches ``edits`` have in ``data`` (the result's ``matches``)."""
    return sum(len(replace_matches(data, e)) for e in edits if isinstance(e, Replace))


def longest_match(data: bytes, edits: list) -> int:
    """The length of the longest regex match in ``data``, ignoring ``max_match``."""
    return max((len(m.group()) for e in edits if isinstance(e, Replace) and e.regex
                for m in re.compile(e.find).finditer(data)), default=0)


def apply_model(data: bytes, edits: list) -> bytes:
    """Apply ``edits`` to ``data`` as DESIGN.md's edit semantics say, or raise EditError."""
    size = len(data)
    ranges: list[tuple[int, int, bytes, int]] = []   # (start, end, new bytes, edit number)
    inserts: list[tuple[int, bytes, int]] = []       # (offset, data, edit number), list order
    appends: list[bytes] = []
    truncate: int | None = None
    for i, edit in enumerate(edits):
        if isinstance(edit, (Patch, Delete)):
            length = len(edit.data) if isinstance(edit, Patch) else edit.length
            if edit.offset + length > size:
                raise EditError(f"edit {i} ends past the end of the file")
            new = edit.data if isinstance(edit, Patch) else b""
            ranges.append((edit.offset, edit.offset + length, new, i))
        elif isinstance(edit, Insert):
            if edit.offset > size:
                raise EditError(f"edit {i}: insert past the end of the file")
            inserts.append((edit.offset, edit.data, i))
        elif isinstance(edit, Truncate):
            if truncate is not None:
                raise EditConflictError(f"edit {i}: a second truncate")
            truncate = edit.size
        elif isinstance(edit, Append):
            appends.append(edit.data)
        elif isinstance(edit, Replace):
            ranges.extend((s, e, new, i) for s, e, new in replace_matches(data, edit))
        else:
            raise TypeError(f"not an edit: {edit!r}")

    # Conflicts. All ranges are non-empty; sorted by start, two ranges overlap iff some
    # neighbouring pair does.
    ranges.sort()
    for (_, e1, _, i1), (s2, _, _, i2) in zip(ranges, ranges[1:], strict=False):
        if s2 < e1:
            raise EditConflictError(f"edits {i1} and {i2} overlap at {s2}")
    for offset, _, i in inserts:
        for s, e, _, j in ranges:
            if s < offset < e:
                raise EditConflictError(f"insert {i} falls inside edit {j}")
    if truncate is not None:
        for _, e, _, j in ranges:
            if e > truncate:
                raise EditConflictError(f"edit {j} ends past the truncate to {truncate}")
        for offset, _, i in inserts:
            if offset > truncate:
                raise EditConflictError(f"insert {i} is past the truncate to {truncate}")

    # Output: walk the kept original bytes; at each position first the inserts there (list
    # order), then either a range's new bytes (jumping to its end) or the original byte.
    end = size if truncate is None else min(size, truncate)
    at: dict[int, list[bytes]] = {}
    for offset, ins, _ in inserts:
        at.setdefault(offset, []).append(ins)
    starting = {s: (e, new) for s, e, new, _ in ranges}
    out = bytearray()
    pos = 0
    while pos < end:
        out += b"".join(at.get(pos, []))
        if pos in starting:
            stop, new = starting[pos]
            out += new
            pos = stop
        else:
            out.append(data[pos])
            pos += 1
    out += b"".join(at.get(end, []))                  # inserts at the (new) end
    if truncate is not None and truncate > size:
        out += bytes(truncate - size)                 # then a growing truncate's zeros
    out += b"".join(appends)                          # then the appends, in order
    return bytes(out)
