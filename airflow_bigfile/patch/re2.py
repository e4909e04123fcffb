"""Regex replace through RE2 (pyarrow's kernels: linear time, without the GIL) where the
pattern and template mean exactly what they mean to ``re`` on bytes.

:func:`translate` writes a pattern out again from Python's own parse tree: every byte class
(literal, set, ``.``, ``\\s``, ``(?i)``) as the explicit set of bytes ``re`` matches with it,
named groups as numbered ones, the template as an RE2 rewrite. What RE2 cannot mean the same
way falls back to ``re`` with a reason: anchors and lookaround (they read outside a slice),
backreferences, possessive and atomic groups, repeats of parts that can match empty, repeat
counts over 1000, group references above 9, a pattern that can match empty.

:func:`substitute` runs RE2 over a block's bulk, from where the scan resumes to a cut ``u``
before the block's end where no path of the pattern can cover the two bytes around ``u``
(the pattern's factors, reach.py). Without assertions, an attempt that would read past ``u``
in the file either fails there as it does at the slice's end, or covers those two bytes; so
RE2's matches on the slice are the whole-file scan's, and the scan resumes fresh at ``u``,
where ``re`` takes the rest of the block (with its ``max_match`` guard). RE2 reports no
match lengths, so it runs only where no run of bytes is long enough for a match longer than
``max_match``; elsewhere ``re`` scans the block and reports such a match.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

try:
    from re import _constants as sre  # type: ignore[attr-defined]
    from re import _parser as sre_parse
except ImportError:  # Python 3.10
    import sre_constants as sre  # type: ignore[no-redef]
    import sre_parse  # type: ignore[no-redef]

from airflow_bigfile.patch.reach import Emitter

RE2_MAX_REPEAT = 1000
# a bulk shorter than this is left to re: a kernel call costs about a regex compile
MIN_BULK = 64 << 10
# how far before a block's end to look for a cut that no match can straddle
CUT_TRIES = 4096
_LOCAL_FLAGS = sre.SRE_FLAG_IGNORECASE | sre.SRE_FLAG_DOTALL | sre.SRE_FLAG_MULTILINE \
    | sre.SRE_FLAG_LOCALE | sre.SRE_FLAG_ASCII


@dataclass(frozen=True)
class Translation:
    """The RE2 pattern and rewrite for a ``re`` pattern and template, or why there is none."""

    pattern: bytes | None
    rewrite: bytes | None
    reason: str
    # the byte sets that unbounded repeats run over, and the longest match without them
    runs: tuple[bytes, ...] = ()
    bounded: int = 0

    @property
    def engine(self) -> str:
        return "re2" if self.pattern is not None else "re"


class _Fallback(Exception):
    """The pattern or template cannot be written for RE2 with the same meaning."""


def translate(pattern: re.Pattern[bytes], template: bytes) -> Translation:
    """``pattern`` and ``template`` for RE2, or the reason ``re`` must run them."""
    try:
        tree = sre_parse.parse(pattern.pattern, pattern.flags)
        if pattern.flags & re.LOCALE:
            raise _Fallback("LOCALE: its classes depend on the locale at run time")
        if tree.getwidth()[0] == 0:
            raise _Fallback("the pattern can match empty")
        writer = _Writer()
        source, bounded = writer.items(list(tree), pattern.flags)
        rewrite = _rewrite(pattern, template)
    except _Fallback as exc:
        return Translation(None, None, str(exc))
    return Translation(source.encode("latin-1"), rewrite, "", tuple(writer.runs), bounded)


@lru_cache(maxsize=4096)
def _byte_set(node: str, flags: int) -> frozenset[int]:
    """The bytes one byte-class node (written as ``re`` text) matches under ``flags``."""
    compiled = re.compile(node.encode("latin-1"), flags)
    return frozenset(b for b in range(256) if compiled.fullmatch(bytes((b,))))


def _set_text(members: frozenset[int]) -> str:
    if not members:
        raise _Fallback("a class that matches no byte")
    if len(members) == 1:
        return f"\\x{next(iter(members)):02x}"
    runs: list[list[int]] = []
    for b in sorted(members):
        if runs and runs[-1][1] == b - 1:
            runs[-1][1] = b
        else:
            runs.append([b, b])
    return "[" + "".join(f"\\x{lo:02x}" if lo == hi else f"\\x{lo:02x}-\\x{hi:02x}"
                         for lo, hi in runs) + "]"


class _Writer:
    """Writes a parse tree as RE2 text, node by node, tracking the flags in force; each
    node also gives its longest match, unbounded repeats counted as empty (their byte sets
    go to ``runs``)."""

    def __init__(self, exact: bool = True) -> None:
        self.exact = exact  # False: only which strings match counts, not which match wins
        self.runs: list[bytes] = []

    def items(self, items: list, flags: int) -> tuple[str, int]:
        parts = [self.node(op, av, flags) for op, av in items]
        return "".join(text for text, _ in parts), sum(width for _, width in parts)

    def node(self, op: object, av: Any, flags: int) -> tuple[str, int]:
        if op in (sre.LITERAL, sre.NOT_LITERAL, sre.ANY, sre.IN):
            return _set_text(_byte_set(Emitter.byte_class(op, av), flags & _LOCAL_FLAGS)), 1
        if op is sre.BRANCH:
            alts = [self.items(list(b), flags) for b in av[1]]
            return "(?:" + "|".join(t for t, _ in alts) + ")", max(w for _, w in alts)
        if op is sre.SUBPATTERN:
            group, add, remove, sub = av
            if add & re.LOCALE:
                raise _Fallback("LOCALE: its classes depend on the locale at run time")
            inner, width = self.items(list(sub), (flags | add) & ~remove)
            return (f"({inner})" if group is not None else f"(?:{inner})"), width
        if op in (sre.MAX_REPEAT, sre.MIN_REPEAT):
            return self._repeat(op, av, flags)
        if op is sre.AT:
            raise _Fallback("an anchor (^, $, \\b, \\A, \\Z) reads outside a slice")
        if op in (sre.ASSERT, sre.ASSERT_NOT):
            raise _Fallback("lookaround")
        if op in (sre.GROUPREF, sre.GROUPREF_EXISTS):
            raise _Fallback("a backreference")
        raise _Fallback(f"{str(op).lower()} (possessive or atomic)")

    def _repeat(self, op: object, av: Any, flags: int) -> tuple[str, int]:
        lo, hi, sub = av
        if self.exact and sub.getwidth()[0] == 0:
            raise _Fallback("a repeated part can match empty")
        lazy = "?" if op is sre.MIN_REPEAT else ""
        if hi == sre.MAXREPEAT and not self.exact:
            if lo > RE2_MAX_REPEAT:
                raise _Fallback(f"a repeat count over {RE2_MAX_REPEAT}")
            inner, _ = self.items(list(sub), flags)
            return f"(?:{inner}){{{lo},}}", 0
        if hi == sre.MAXREPEAT:
            items = list(sub)
            if len(items) != 1 or items[0][0] not in (sre.LITERAL, sre.NOT_LITERAL, sre.ANY,
                                                       sre.IN):
                raise _Fallback("an unbounded repeat of more than one byte (max_match "
                                "could not be checked without re)")
            if lo > RE2_MAX_REPEAT:
                raise _Fallback(f"a repeat count over {RE2_MAX_REPEAT}")
            op1, av1 = items[0]
            members = _byte_set(Emitter.byte_class(op1, av1), flags & _LOCAL_FLAGS)
            self.runs.append(bytes(1 if b in members else 0 for b in range(256)))
            count = "*" if lo == 0 else "+" if lo == 1 else f"{{{lo},}}"
            return f"{_set_text(members)}{count}{lazy}", 0
        if hi > RE2_MAX_REPEAT:
            raise _Fallback(f"a repeat count over {RE2_MAX_REPEAT}")
        inner, width = self.items(list(sub), flags)
        return f"(?:{inner}){{{lo},{hi}}}{lazy}", width * hi


def _rewrite(pattern: re.Pattern[bytes], template: bytes) -> bytes:
    """``template`` as an RE2 rewrite: literal bytes with ``\\`` doubled, groups as
    ``\\0``..``\\9`` (a group that took no part is empty in both)."""
    try:
        groups, literals = sre_parse.parse_template(template, pattern)
    except (TypeError, ValueError) as exc:  # Pythons whose template format differs
        raise _Fallback(f"the template format of this Python ({exc})") from None
    parts = [lit.replace(b"\\", b"\\\\") if lit is not None else b"" for lit in literals]
    for index, group in groups:
        if group > 9:
            raise _Fallback("a template reference to group 10 or above")
        parts[index] = b"\\%d" % group
    return b"".join(parts)


def language(source: bytes | None, flags: int) -> bytes | None:
    """RE2 text that matches exactly the strings ``re``'s ``source`` (without assertions or
    backreferences) matches under ``flags``, for membership tests in linear time; None
    when RE2 cannot say it."""
    if source is None or flags & re.LOCALE:
        return None
    try:
        text, _ = _Writer(exact=False).items(list(sre_parse.parse(source, flags)), flags)
    except (_Fallback, re.error, RecursionError, OverflowError):
        return None
    return text.encode("latin-1")


def _array(view: memoryview) -> Any:
    import pyarrow as pa  # imported on first use: offset-only edits never pay for it

    offsets = pa.py_buffer(struct.pack("<qq", 0, len(view)))
    return pa.LargeBinaryArray.from_buffers(pa.large_binary(), 1,
                                            [None, offsets, pa.py_buffer(view)])


def fullmatch(language_text: bytes, buf: bytearray, lo: int, hi: int) -> bool:
    """``buf[lo:hi]`` is a string of ``language_text`` (from :func:`language`)."""
    import pyarrow.compute as pc

    return bool(pc.match_substring_regex(_array(memoryview(buf)[lo:hi]),
                                         pattern=b"\\A(?:" + language_text + b")\\z")[0].as_py())


def first_reaching_end(language_text: bytes, buf: bytearray, lo: int, hi: int) -> int:
    """The first ``s`` in ``[lo, hi)`` with ``buf[s:hi]`` a string of ``language_text``,
    else -1 (RE2's leftmost match of it anchored at the end)."""
    import pyarrow.compute as pc

    found = pc.find_substring_regex(_array(memoryview(buf)[lo:hi]),
                                    pattern=b"(?:" + language_text + b")\\z")[0].as_py()
    return lo + found if found >= 0 else -1


@dataclass
class Bulk:
    """RE2's output for the original bytes ``[start, end)``: ``count`` matches, the first
    at ``first``; ``data`` is the source itself when there is none."""

    start: int
    end: int
    data: memoryview
    count: int
    first: int | None


def _short_runs(translation: Translation, max_match: int, buf: bytearray, lo: int,
                hi: int) -> bool:
    """No match in ``buf[lo:hi]`` can be longer than ``max_match``: every path longer
    than that spends more than ``max_match - bounded`` bytes in unbounded repeats, so one of
    them runs over at least its share of it, and no such run of bytes is there."""
    if not translation.runs:
        return translation.bounded <= max_match
    spare = max_match - translation.bounded
    if spare < 0:
        return False
    run = b"\x01" * (spare // len(translation.runs) + 1)
    return all(buf.translate(table).find(run, lo, hi) < 0 for table in translation.runs)


def substitute(translation: Translation, factors: re.Pattern[bytes] | None,
               max_match: int, buf: bytearray, n: int, base: int, eof: bool, pos: int,
               limit: int) -> Bulk | None:
    """RE2 over ``buf[:n]`` from ``pos`` up to a clean cut at or before ``limit`` (absolute
    offsets; ``buf[0]`` is offset ``base``, ``eof``: ``buf[:n]`` ends the file); None when
    there is no bulk worth it or no cut."""
    if translation.pattern is None or factors is None:
        return None
    lo, top, cut = pos - base, limit - base, None
    if eof and top == n:
        cut = n  # nothing after the slice: its end is the file's
    for u in range(min(top, n - 1), max(lo + MIN_BULK, top - CUT_TRIES), -1):
        if cut is not None:
            break
        if factors.fullmatch(buf, u - 1, u + 1) is None:
            cut = u
    if cut is None or not _short_runs(translation, max_match, buf, lo, cut):
        return None
    import pyarrow.compute as pc

    segment = memoryview(buf)[lo:cut]
    array = _array(segment)
    count = pc.count_substring_regex(array, pattern=translation.pattern)[0].as_py()
    if not count:
        return Bulk(pos, base + cut, segment, 0, None)
    first = pc.find_substring_regex(array, pattern=translation.pattern)[0].as_py()
    out = pc.replace_substring_regex(array, pattern=translation.pattern,
                                     replacement=translation.rewrite)
    start, end = memoryview(out.buffers()[1]).cast("q")[out.offset:out.offset + 2]
    return Bulk(pos, base + cut, memoryview(out.buffers()[2])[start:end], count, pos + first)
