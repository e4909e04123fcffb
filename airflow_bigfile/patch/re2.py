"""Regex replace through RE2 (pyarrow's kernels: linear time, without the GIL) where the
pattern and template mean exactly what they mean to ``re`` on bytes.

:func:`translate` writes a pattern out again from Python's own parse tree: every byte class
(literal, set, ``.``, ``\\s``, ``(?i)``) as the explicit set of bytes ``re`` matches with it,
named groups as numbered ones, the template as an RE2 rewrite. The anchors that only the
file's ends make true (``\\A``, ``\\Z``, ``^`` and ``$`` without MULTILINE) are written per
slice (:meth:`Translation.pattern`): as RE2's ``\\A`` or ``\\z`` where the slice's edge is
where they hold in the file, as a class of no byte (never true) elsewhere. What RE2 cannot
mean the same way falls back to ``re`` with a reason: anchors that read the byte beside a
slice (``\\b``, MULTILINE ``^`` and ``$``) and lookaround, backreferences, possessive and
atomic groups, repeats of parts that can match empty, counts RE2 refuses, group references
above 9, a pattern that can match empty.

:func:`substitute` runs RE2 over a block's bulk, from where the scan resumes to a cut ``u``
before the block's end where no path of the pattern can cover the two bytes around ``u``
(the pattern's factors, reach.py). An attempt that would read past ``u`` in the file either
fails there as it does at the slice's end, or covers those two bytes; an anchor evaluated
at ``u`` is written to hold there exactly when it holds in the file; so RE2's matches on the
slice are the whole-file scan's, and the scan resumes fresh at ``u``, where ``re`` takes the
rest of the block (with its ``max_match`` guard). ``$`` also holds before a final newline,
so a slice ending at the file's end stops before that newline (or ``re`` takes it all).

RE2 reports no match lengths, so it runs only where no match can be longer than
``max_match`` (:func:`_bounded`); elsewhere ``re`` scans the block and reports such a match.
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

from airflow_bigfile.patch._memreplace import has_run
from airflow_bigfile.patch.reach import Emitter

RE2_MAX_REPEAT = 1000
# a bulk shorter than this is left to re: a kernel call costs about a regex compile
MIN_BULK = 64 << 10
# how far before a block's end to look for a cut that no match can straddle
CUT_TRIES = 4096
_LOCAL_FLAGS = sre.SRE_FLAG_IGNORECASE | sre.SRE_FLAG_DOTALL | sre.SRE_FLAG_MULTILINE \
    | sre.SRE_FLAG_LOCALE | sre.SRE_FLAG_ASCII
# Anchors that only the file's ends make true, as placeholders in the written pattern until
# a slice says what they are there (Translation.pattern).
START, DOLLAR, END = "\x01", "\x02", "\x03"
_ANCHORS = {sre.AT_BEGINNING: START, sre.AT_BEGINNING_STRING: START, sre.AT_END: DOLLAR,
            sre.AT_END_STRING: END}
NEVER = rb"[^\x00-\xff]"  # a class of no byte: RE2 (Latin-1 on binary data) never matches it


@dataclass(frozen=True)
class Translation:
    """The RE2 pattern and rewrite for a ``re`` pattern and template, or why there is none."""

    source: bytes | None
    rewrite: bytes | None
    reason: str
    # the byte sets of the outermost unbounded repeats, how many times a match can pass
    # through one of them, and the longest match without them
    runs: tuple[bytes, ...] = ()
    repeats: int = 0
    bounded: int = 0
    # the anchors (START, DOLLAR, END) that every match passes through
    required: frozenset[str] = frozenset()
    # an unbounded repeat of more than one byte: the scans left to re (block ends, blocks
    # with no clean cut) can backtrack for hours, so executors keep it out of worker threads
    backtracks: bool = False

    @property
    def engine(self) -> str:
        return "re2" if self.source is not None else "re"

    def pattern(self, start: bool, dollar: bool, end: bool) -> bytes:
        """The pattern for a slice: ``start``, it starts the file (``\\A`` and ``^`` hold
        at its start); ``dollar`` and ``end``, ``$`` and ``\\Z`` hold at its end. No anchor
        of these holds anywhere else in a slice."""
        assert self.source is not None
        text = self.source
        for anchor, holds, there in ((START, start, rb"\A"), (DOLLAR, dollar, rb"\z"),
                                     (END, end, rb"\z")):
            text = text.replace(anchor.encode(), there if holds else NEVER)
        return text

    def dead(self, start: bool, dollar: bool, end: bool) -> bool:
        """No match is possible in such a slice: an anchor every match needs never holds."""
        return (START in self.required and not start) or (DOLLAR in self.required
                                                          and not dollar) \
            or (END in self.required and not end)


class _Fallback(Exception):
    """The pattern or template cannot be written for RE2 with the same meaning."""


@lru_cache(maxsize=256)
def translate(pattern: re.Pattern[bytes], template: bytes) -> Translation:
    """``pattern`` and ``template`` for RE2, or the reason ``re`` must run them."""
    try:
        tree = sre_parse.parse(pattern.pattern, pattern.flags)
        if pattern.flags & re.LOCALE:
            raise _Fallback("LOCALE: its classes depend on the locale at run time")
        if tree.getwidth()[0] == 0:
            raise _Fallback("the pattern can match empty")
        writer = _Writer()
        text, bounded = writer.items(list(tree), pattern.flags)
        translation = Translation(text.encode("latin-1"), _rewrite(pattern, template), "",
                                  tuple(writer.runs), writer.repeats, bounded,
                                  frozenset(_required(list(tree))), writer.backtracks)
        _compiles(translation.pattern(True, True, True))
    except _Fallback as exc:
        return Translation(None, None, str(exc))
    return translation


def _compiles(pattern: bytes) -> None:
    """RE2 takes ``pattern`` (it refuses some that ``re`` takes: nested counts whose
    product is over 1000)."""
    import pyarrow as pa

    try:
        _kernel("count_substring_regex", memoryview(b""), pattern)
    except pa.ArrowInvalid as exc:
        raise _Fallback(f"RE2 refuses it ({exc})") from None


def _required(items: list) -> set[str]:
    """The anchors among ``items`` that every match passes through (at the top level or in
    a group there)."""
    found: set[str] = set()
    for op, av in items:
        if op is sre.AT and av in _ANCHORS:
            found.add(_ANCHORS[av])
        elif op is sre.SUBPATTERN:
            found |= _required(list(av[3]))
    return found


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
    node also gives its longest match, the outermost unbounded repeats counted as empty
    (their byte sets go to ``runs``, and to ``repeats`` how many times a match can pass
    through them: a bounded repeat around one runs it up to its count)."""

    def __init__(self, exact: bool = True) -> None:
        self.exact = exact  # False: only which strings match counts, not which match wins
        self.runs: list[bytes] = []
        self.repeats = 0
        self._times = 1  # how many times the node being written can run in one match
        self._members: set[int] | None = None  # bytes seen inside an unbounded repeat
        self.backtracks = False

    def items(self, items: list, flags: int) -> tuple[str, int]:
        parts = [self.node(op, av, flags) for op, av in items]
        return "".join(text for text, _ in parts), sum(width for _, width in parts)

    def node(self, op: object, av: Any, flags: int) -> tuple[str, int]:
        if op in (sre.LITERAL, sre.NOT_LITERAL, sre.ANY, sre.IN):
            members = _byte_set(Emitter.byte_class(op, av), flags & _LOCAL_FLAGS)
            if self._members is not None:
                self._members |= members
            return _set_text(members), 1
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
            return self._anchor(av, flags), 0
        if op in (sre.ASSERT, sre.ASSERT_NOT):
            raise _Fallback("lookaround")
        if op in (sre.GROUPREF, sre.GROUPREF_EXISTS):
            raise _Fallback("a backreference")
        raise _Fallback(f"{str(op).lower()} (possessive or atomic)")

    def _anchor(self, at: object, flags: int) -> str:
        if not self.exact:
            return ""  # taken as always true: a superset of the strings
        if at not in _ANCHORS:
            raise _Fallback("\\b or \\B reads the byte beside a slice")
        if flags & re.MULTILINE and at in (sre.AT_BEGINNING, sre.AT_END):
            raise _Fallback("a MULTILINE ^ or $ reads the byte beside a slice")
        return _ANCHORS[at]

    def _repeat(self, op: object, av: Any, flags: int) -> tuple[str, int]:
        lo, hi, sub = av
        if self.exact and sub.getwidth()[0] == 0:
            raise _Fallback("a repeated part can match empty")
        if lo > RE2_MAX_REPEAT or RE2_MAX_REPEAT < hi < sre.MAXREPEAT:
            raise _Fallback(f"a repeat count over {RE2_MAX_REPEAT}")
        lazy = "?" if op is sre.MIN_REPEAT else ""
        if hi < sre.MAXREPEAT:
            times, self._times = self._times, self._times * hi
            inner, width = self.items(list(sub), flags)
            self._times = times
            return f"(?:{inner}){{{lo},{hi}}}{lazy}", width * hi
        count = "*" if lo == 0 else "+" if lo == 1 else f"{{{lo},}}"
        if not self.exact or self._members is not None:  # inside one: its byte set covers it
            inner, _ = self.items(list(sub), flags)
            return f"(?:{inner}){count}{lazy}", 0
        self._members = set()
        self.backtracks |= not (len(sub) == 1 and sub[0][0] in (sre.LITERAL, sre.NOT_LITERAL,
                                                                sre.ANY, sre.IN))
        inner, _ = self.items(list(sub), flags)
        self.runs.append(bytes(1 if b in self._members else 0 for b in range(256)))
        self.repeats += self._times
        self._members = None
        return f"(?:{inner}){count}{lazy}", 0


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


@lru_cache(maxsize=256)
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


def _kernel(name: str, data: Any, pattern: bytes, replacement: bytes | None = None,
            max_replacements: int | None = None) -> Any:
    """pyarrow's RE2 kernel ``name`` on ``data`` (a view, as one binary value, or an
    array). Called by name through ``pyarrow._compute``: importing ``pyarrow.compute``
    builds a Python wrapper for each of its few hundred kernels, a cost every regex job
    would pay at start-up for the four it uses."""
    from pyarrow import _compute

    options = (_compute.MatchSubstringOptions(pattern) if replacement is None
               else _compute.ReplaceSubstringOptions(pattern, replacement,
                                                     max_replacements=max_replacements))
    return _compute.call_function(name, [_array(data) if isinstance(data, memoryview)
                                         else data], options)


def fullmatch(language_text: bytes, buf: bytearray, lo: int, hi: int) -> bool:
    """``buf[lo:hi]`` is a string of ``language_text`` (from :func:`language`)."""
    return bool(_kernel("match_substring_regex", memoryview(buf)[lo:hi],
                        b"\\A(?:" + language_text + b")\\z")[0].as_py())


def first_reaching_end(language_text: bytes, buf: bytearray, lo: int, hi: int) -> int:
    """The first ``s`` in ``[lo, hi)`` with ``buf[s:hi]`` a string of ``language_text``,
    else -1 (RE2's leftmost match of it anchored at the end)."""
    found = _kernel("find_substring_regex", memoryview(buf)[lo:hi],
                    b"(?:" + language_text + b")\\z")[0].as_py()
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
    """No match in ``buf[lo:hi]`` can be longer than ``max_match``.

    A match's bytes split into those read by the outermost unbounded repeats and the rest,
    which are at most ``bounded``. Each pass through such a repeat reads one contiguous run
    of bytes, and every byte of it is read by a byte class inside that repeat, so the run
    lies in the repeat's byte set (``runs``), however its body nests. A match longer than
    ``max_match`` spends more than ``max_match - bounded`` bytes in at most ``repeats``
    passes, so one pass reads at least its share of that, plus one: where no run of bytes
    in any of the sets is that long, no such match is there. The runs are looked for in C,
    without the GIL or a copy of the block."""
    spare = max_match - translation.bounded
    if spare < 0:
        return False
    if not translation.runs:
        return True
    run = spare // translation.repeats + 1
    view = memoryview(buf)[lo:hi]
    return not any(has_run(view, table, run) for table in translation.runs)


def _cut(factors: re.Pattern[bytes], buf: bytearray, n: int, eof: bool, lo: int, top: int,
         whole: bool) -> int | None:
    """Where a slice from ``lo`` may end at or before ``top``: the window's end when it is
    the file's and ``whole`` says the slice may end there (else the byte before, if clean),
    or the last offset that no path of the pattern straddles (not too close to ``lo``)."""
    if eof and top == n:
        if whole:
            return n  # nothing after the slice: its end is the file's
        if n - 1 > lo and factors.fullmatch(buf, n - 2, n) is None:
            return n - 1  # just before the final newline
    for u in range(min(top, n - 1), max(lo + MIN_BULK, top - CUT_TRIES), -1):
        if factors.fullmatch(buf, u - 1, u + 1) is None:
            return u
    return None


def first_match(translation: Translation, anchors: tuple[bool, bool, bool],
                segment: memoryview) -> int:
    """Where RE2's first match in ``segment`` starts, or -1; ``anchors`` say which anchors
    hold at its edges (:meth:`Translation.pattern`)."""
    return _kernel("find_substring_regex", segment, translation.pattern(*anchors))[0].as_py()


def replace(translation: Translation, anchors: tuple[bool, bool, bool], segment: memoryview,
            first: int) -> tuple[memoryview, int]:
    """RE2's replacement of every match in ``segment`` (the first at ``first``) and their
    count."""
    pattern = translation.pattern(*anchors)
    array = _array(segment)
    out = _value(_kernel("replace_substring_regex", array, pattern, translation.rewrite))
    if not (anchors[0] and START.encode() in translation.source):
        count = _kernel("count_substring_regex", array, pattern)[0].as_py()
    else:
        # pyarrow counts by searching again from each match's end as if the text began
        # there, where \A would hold again: count on from the first match without it
        rest = _value(_kernel("replace_substring_regex", array, pattern, b"",
                              max_replacements=1))
        after = first + len(segment) - len(rest)
        count = 1 + _kernel("count_substring_regex", segment[after:],
                            translation.pattern(False, *anchors[1:]))[0].as_py()
    return out, count


def _value(array: Any) -> memoryview:
    """The bytes of a one-value binary array, without copying."""
    start, end = memoryview(array.buffers()[1]).cast("q")[array.offset:array.offset + 2]
    return memoryview(array.buffers()[2])[start:end]


def substitute(translation: Translation, factors: re.Pattern[bytes] | None,
               max_match: int, buf: bytearray, n: int, base: int, eof: bool, pos: int,
               limit: int) -> Bulk | None:
    """RE2 over ``buf[:n]`` from ``pos`` up to a clean cut at or before ``limit`` (absolute
    offsets; ``buf[0]`` is offset ``base``, ``eof``: ``buf[:n]`` ends the file); None when
    there is no bulk worth it or no cut, or a match there may be longer than
    ``max_match``."""
    if translation.source is None or factors is None:
        return None
    lo = pos - base
    # $ holds before a final newline too: a slice ends before it, never just after it
    final_newline = eof and n > 0 and buf[n - 1] == 0x0A and DOLLAR.encode() in \
        translation.source
    cut = _cut(factors, buf, n, eof, lo, limit - base, not final_newline)
    if cut is None or cut <= lo:
        return None
    anchors = (base + lo == 0, eof and cut == n - final_newline, eof and cut == n)
    segment = memoryview(buf)[lo:cut]
    if translation.dead(*anchors):
        return Bulk(pos, base + cut, segment, 0, None)
    ends = bool(translation.required & {DOLLAR, END})
    if not ends and not _short_runs(translation, max_match, buf, lo, cut):
        return None
    first = first_match(translation, anchors, segment)
    if first < 0:
        return Bulk(pos, base + cut, segment, 0, None)
    if ends and cut - lo - first > max_match:
        return None  # every match ends at the cut, so this one is that long: re says so
    data, count = replace(translation, anchors, segment, first)
    return Bulk(pos, base + cut, data, count, pos + first)
