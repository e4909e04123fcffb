"""Finding replace matches in a window of the original file.

A matcher scans like ``bytes.replace`` / ``re.sub`` on the whole file would (leftmost,
non-overlapping, left to right) but over a :class:`Window`: it is told where the scan resumes
(``pos``: the end of the previous match, or where the window's owner starts) and the
``limit`` below which a match must start to belong to the caller. The window must reach
``limit + window - 1`` bytes (or the end of the file), so every owned match fits in it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from airflow_bigfile.edits import Replace
from airflow_bigfile.exceptions import PatternError
from airflow_bigfile.patch import _memreplace
from airflow_bigfile.patch.re2 import (
    Bulk,
    first_reaching_end,
    fullmatch,
    language,
    substitute,
    translate,
)
from airflow_bigfile.patch.reach import factor_source, factors, guarded, reach_source

Match = tuple[int, int, bytes]  # (start, end, replacement), absolute original offsets


@dataclass
class Window:
    """``buf[:n]`` holds the original bytes ``[base, base + n)``; ``eof``: they end the file."""

    buf: bytearray
    n: int
    base: int
    eof: bool

    @property
    def end(self) -> int:
        return self.base + self.n

    def view(self, start: int, end: int) -> memoryview:
        """The original bytes ``[start, end)`` (absolute offsets), without copying."""
        return memoryview(self.buf)[start - self.base:end - self.base]


class Matcher:
    """Scanner for one :class:`Replace` edit (``index`` is its place in the edit list)."""

    def __init__(self, edit: Replace, index: int, label: str) -> None:
        self.edit = edit
        self.index = index
        self.label = label
        self.window = edit.window
        self._expand = expander(edit.pattern, edit.replace) if edit.regex else None
        # for windows that end before the file does: see reach.py
        self._guarded = guarded(edit.pattern) if edit.pattern is not None else None
        self._factors = factors(edit.pattern) if edit.pattern is not None else None
        self.translation = (translate(edit.pattern, edit.replace)
                            if edit.pattern is not None else None)
        # the guard and the factors as RE2 membership tests: linear, where re may backtrack
        self._reach_re2 = self._factors_re2 = None
        if edit.pattern is not None:
            self._reach_re2 = language(reach_source(edit.pattern), edit.pattern.flags)
            self._factors_re2 = language(factor_source(edit.pattern), edit.pattern.flags)

    def matches(self, win: Window, pos: int, limit: int) -> Iterator[Match]:
        """Yield the matches starting in ``[pos, limit)``, scanning from ``pos``."""
        if self.edit.regex:
            yield from self._regex(win, pos, limit)
            return
        find, repl = self.edit.find, self.edit.replace
        m = len(find)
        # the bytes where a match starting before ``limit`` can lie
        lo, hi = pos - win.base, min(limit - win.base + m - 1, win.n)
        for i in _memreplace.find_all(memoryview(win.buf)[lo:hi], find, max(hi - lo, 0)) or ():
            yield (pos + i, pos + i + m, repl)

    def bulk(self, win: Window, pos: int, limit: int) -> Bulk | None:
        """RE2's replacement of the matches from ``pos`` up to a cut at or before ``limit``
        where the scan resumes fresh (re2.py); None when ``re`` must do it all."""
        if self.translation is None:
            return None
        return substitute(self.translation, self._factors, self.edit.max_match, win.buf,
                          win.n, win.base, win.eof, pos, limit)

    def _regex(self, win: Window, pos: int, limit: int) -> Iterator[Match]:
        max_match, base, stop = self.edit.max_match, win.base, limit - win.base
        expand = self._expand
        for match in self._attempts(win, pos - base, stop):
            start, end = match.span()
            if start >= stop:
                return
            if end == start:
                self._empty(win, start)
            if end - start > max_match:
                raise PatternError(
                    f"{self.label}: the match at offset {base + start} is longer than "
                    f"max_match={max_match} bytes; raise max_match or bound the pattern")
            yield (base + start, base + end, expand(match))

    def _attempts(self, win: Window, pos: int, stop: int) -> Iterator[re.Match[bytes]]:
        """The matches from ``pos`` (window-relative), as on the whole file. In a window cut
        before the end of the file, an attempt from which a path can read to the cut
        stops the edit (reach.py); the attempts before ``fence`` need no such check when
        the bytes from ``fence`` to the cut lie in no path."""
        plain, buf, n = self.edit.pattern, win.buf, win.n
        assert plain is not None
        if win.eof:
            yield from plain.finditer(buf, pos, n)
            return
        if self._reach_re2 is None:
            yield from self._guarded_attempts(win, pos, stop)
            return
        fence, start = n - 1 - 2 * (n - stop), pos
        if fence > pos and self._factors_re2 is not None \
                and not fullmatch(self._factors_re2, buf, fence, n - 1):
            for match in plain.finditer(buf, pos, n):
                if match.start() > fence:
                    break
                start = max(match.end(), match.start() + 1)
                yield match
            start = max(start, fence + 1)
        guard = first_reaching_end(self._reach_re2, buf, start, n)
        for match in plain.finditer(buf, start, n):
            if 0 <= guard <= match.start():
                break
            yield match
            if guard >= 0 and guard < match.end():  # inside a match: never attempted
                guard = first_reaching_end(self._reach_re2, buf, match.end(), n)
        if 0 <= guard < stop:
            self._overflow(win.base + guard)

    def _guarded_attempts(self, win: Window, pos: int, stop: int
                          ) -> Iterator[re.Match[bytes]]:
        """:meth:`_attempts` through ``re`` alone, for patterns RE2 cannot check."""
        plain, guard, buf, n = self.edit.pattern, self._guarded, win.buf, win.n
        assert plain is not None and guard is not None
        fence = n - 1 - 2 * (n - stop)
        if fence <= pos or self._factors is None or self._factors.fullmatch(buf, fence, n - 1):
            yield from guard.finditer(buf, pos, n)
            return
        for match in plain.finditer(buf, pos, n):
            if match.start() > fence:
                break
            pos = max(match.end(), match.start() + 1)
            yield match
        yield from guard.finditer(buf, max(pos, fence + 1), n)

    def _overflow(self, offset: int) -> None:
        raise PatternError(
            f"{self.label}: a match at offset {offset} can be longer than "
            f"max_match={self.edit.max_match} bytes; raise max_match or bound the pattern")

    def _empty(self, win: Window, start: int) -> None:
        """An empty match at ``start``: the pattern's own, or (in a window cut before the
        end of the file) the guard saying that the attempt there can read past it."""
        assert self.edit.pattern is not None
        own = self.edit.pattern.match(win.buf, start, win.n)
        offset = win.base + start
        if own is not None and own.end() == start:
            raise PatternError(f"{self.label} matches zero bytes at offset {offset}; "
                               "a pattern must match at least one byte")
        self._overflow(offset)

    def straddling(self, buf: bytearray, pos: int, at: int) -> int:
        """Scanning ``buf`` from ``pos``: the end of the match that starts before ``at`` and
        ends after it, else ``at``. A best guess (``buf`` holds only some context), so it
        never raises: the real scan reports bad matches."""
        if self.edit.regex:
            assert self.edit.pattern is not None
            spans = (m.span() for m in self.edit.pattern.finditer(buf, pos))
        else:
            m = len(self.edit.find)
            hits = _memreplace.find_all(memoryview(buf)[pos:], self.edit.find, len(buf)) or []
            spans = ((pos + i, pos + i + m) for i in hits)
        for start, end in spans:
            if start >= at:
                break
            if end > at:
                return end
        return at

    def check_end(self, tail: bytes, size: int) -> None:
        """The whole-file scan also tries the position just past the last byte, where only
        an empty match fits; ``tail`` holds the file's last bytes (look-behind context)."""
        pattern = self.edit.pattern
        if pattern is not None and pattern.match(tail, len(tail)) is not None:
            raise PatternError(f"{self.label} matches zero bytes at offset {size} (the end "
                               "of the file); a pattern must match at least one byte")

    def clean_cut(self, win: Window, lo: int, target: int, tries: int = 64) -> int | None:
        """An offset ``c`` in ``(lo, target]`` that no occurrence of a literal ``find``
        straddles, so the scan state there is known whatever came before; None if a long
        self-overlapping run (``aaaa`` for ``aa``) hides every such cut near ``target``."""
        find = self.edit.find
        m, buf, base = len(find), win.buf, win.base
        cut = target - base
        low = lo - base
        for _ in range(tries):
            if cut <= low:
                return None
            hit = buf.find(find, max(cut - m + 1, low), min(cut + m - 1, win.n))
            if hit < 0 or hit >= cut:
                return cut + base
            cut = hit
        return None


def expander(pattern: re.Pattern[bytes] | None, template: bytes
             ) -> Callable[[re.Match[bytes]], bytes]:
    """``match.expand(template)`` with the template parsed once, not per match (Python 3.11
    re-parses it on every call, most of a dense regex replace's time); a template without
    backslashes is the replacement itself."""
    if b"\\" not in template:
        return lambda match: template
    try:
        from re import _parser  # type: ignore[attr-defined]

        parsed = _parser.parse_template(template, pattern)
        expand = _parser.expand_template
    except (ImportError, AttributeError, TypeError):  # newer Pythons cache it themselves
        return lambda match: match.expand(template)
    return lambda match: expand(parsed, match)


def replace_all(buf: bytearray, start: int, end: int, find: bytes, replace: bytes
                ) -> tuple[memoryview | bytes, int]:
    """``buf[start:end].replace(find, replace)`` and the match count, by the C kernel, which
    releases the GIL so threads scale.

    A replacement of ``find``'s length is made in place: the returned view is ``buf``'s own
    segment, whose original bytes are gone, so the caller must be done reading them."""
    segment = memoryview(buf)[start:end]
    if find == replace:
        return segment, _memreplace.count(segment, find)
    if len(find) == len(replace):
        return segment, _memreplace.replace_inplace(segment, find, replace)
    return _memreplace.replace(segment, find, replace)
