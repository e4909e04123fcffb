"""How far a regex match attempt may read: the pattern's prefix language.

A scan runs ``re`` over a window that ends before the file does. An attempt at ``s`` gives
the whole-file answer unless one of its paths reads up to the window's end: only there can
the missing bytes (or a ``$`` or ``\\b`` that the cut makes true) change what it finds. The
paths are the prefixes of the strings the pattern can match, so :func:`guarded` puts a
lookahead for "a prefix of a match runs from here to the window's end" in front of every
attempt; when it holds the attempt may be longer than the window allows, and the scan stops
with the ``max_match`` error instead of returning a match the whole-file scan would not.

The prefix pattern over-approximates (assertions always pass, a backreference matches any
bytes of its group's length, lookahead bodies read forward), so it never misses a path.

Trying that lookahead at every position costs ten times the plain scan, so a scan first
asks :func:`factors` whether the window's last bytes could lie inside any one path at all
(one anchored match); when they cannot, no attempt before them reaches the end, and only
the attempts after them need the guard.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

try:
    from re import _constants as sre  # type: ignore[attr-defined]
    from re import _parser as sre_parse
except ImportError:  # Python 3.10
    import sre_constants as sre  # type: ignore[no-redef]
    import sre_parse  # type: ignore[no-redef]

ANY_BYTE = r"[\x00-\xff]"
_CATEGORIES = {sre.CATEGORY_DIGIT: r"\d", sre.CATEGORY_NOT_DIGIT: r"\D",
               sre.CATEGORY_SPACE: r"\s", sre.CATEGORY_NOT_SPACE: r"\S",
               sre.CATEGORY_WORD: r"\w", sre.CATEGORY_NOT_WORD: r"\W"}
_FLAGS = ((sre.SRE_FLAG_IGNORECASE, "i"), (sre.SRE_FLAG_MULTILINE, "m"),
          (sre.SRE_FLAG_DOTALL, "s"), (sre.SRE_FLAG_LOCALE, "L"), (sre.SRE_FLAG_ASCII, "a"))
_REPEATS = {sre.MAX_REPEAT, sre.MIN_REPEAT, getattr(sre, "POSSESSIVE_REPEAT", sre.MAX_REPEAT)}
_ATOMIC = getattr(sre, "ATOMIC_GROUP", None)
_GLOBAL_FLAGS = re.compile(rb"\A(?:\(\?[aiLmsux]+\))+")


@lru_cache(maxsize=256)
def reach_source(pattern: re.Pattern[bytes]) -> bytes:
    """A pattern (under ``pattern.flags``) for the strings an attempt reads when a path of
    it reaches a range's end or the byte before it: a prefix of a match, then a byte."""
    tree = sre_parse.parse(pattern.pattern, pattern.flags)
    widths = getattr(tree.state, "groupwidths", None) or [None] * (tree.state.groups)
    return f"{Emitter(widths).prefix(list(tree))}{ANY_BYTE}?".encode("latin-1")


def guarded(pattern: re.Pattern[bytes]) -> re.Pattern[bytes]:
    """``pattern`` preceded, at every attempt, by a zero-width alternative that matches when
    a path of the attempt can read to the end of the searched range (``endpos``) or the
    byte before it. Group numbers and names are those of ``pattern``."""
    body = _GLOBAL_FLAGS.sub(b"", pattern.pattern)
    end = b"\n)" if pattern.flags & re.VERBOSE else b")"
    return re.compile(b"(?=" + reach_source(pattern) + b"\\Z)|(?:" + body + end,
                      pattern.flags)


@lru_cache(maxsize=256)
def factor_source(pattern: re.Pattern[bytes]) -> bytes | None:
    """A pattern (under ``pattern.flags``) for every string read by some path of
    ``pattern`` from some position on (the prefixes of its suffixes); None for lookaround,
    backreferences and conditionals, whose reads this does not model."""
    tree = sre_parse.parse(pattern.pattern, pattern.flags)
    try:
        suffixes = Emitter([]).suffix(list(tree))
        tree = sre_parse.parse(suffixes.encode("latin-1"), pattern.flags)
        return Emitter([]).prefix(list(tree)).encode("latin-1")
    except (_Unmodelled, RecursionError, re.error, OverflowError):
        return None


def factors(pattern: re.Pattern[bytes]) -> re.Pattern[bytes] | None:
    """:func:`factor_source` compiled for ``re``."""
    source = factor_source(pattern)
    try:
        return re.compile(source, pattern.flags) if source is not None else None
    except (RecursionError, re.error, OverflowError):
        return None


class _Unmodelled(Exception):
    """A node whose reads :meth:`Emitter.suffix` does not model."""


def _byte(c: int) -> str:
    return f"\\x{c:02x}"


def _repeat(lo: int, hi: int) -> str:
    return f"{{{lo},}}" if hi == sre.MAXREPEAT else f"{{{lo},{hi}}}"


def _flags(add: int, remove: int) -> str:
    on = "".join(letter for bit, letter in _FLAGS if add & bit)
    off = "".join(letter for bit, letter in _FLAGS[:3] if remove & bit)
    return f"(?{on}-{off}:" if off else f"(?{on}:"


class Emitter:
    """Writes parse-tree nodes back as pattern text: :meth:`whole` for every string a node
    can match (a superset), :meth:`prefix` for every prefix of those."""

    def __init__(self, widths: list[tuple[int, int] | None]) -> None:
        self.widths = widths

    def _backref(self, group: int, prefix: bool) -> str:
        width = self.widths[group] if group < len(self.widths) else None
        lo, hi = width if width is not None else (0, sre.MAXREPEAT)
        return ANY_BYTE + _repeat(0 if prefix else lo, min(hi, sre.MAXREPEAT))

    def whole(self, items: list) -> str:
        return "".join(self._whole(op, av) for op, av in items)

    def prefix(self, items: list) -> str:
        """Any prefix of a match of ``items``: one item whole then a prefix of the rest, or
        a prefix of that item alone (nested, so the text grows linearly)."""
        acc = ""
        for op, av in reversed(items):
            acc = f"(?:{self._whole(op, av)}{acc}|{self._prefix(op, av)})"
        return acc

    def suffix(self, items: list) -> str:
        """Any suffix of a match of ``items``: a suffix of one item, then the rest whole."""
        acc, rest = "", ""
        for op, av in reversed(items):
            acc = f"(?:{self._suffix(op, av)}{rest}|{acc})"
            rest = self._whole(op, av) + rest
        return acc

    @staticmethod
    def byte_class(op: object, av: Any) -> str:
        """A node that matches one byte (literal, set, ``.``) as ``re`` text."""
        if op is sre.LITERAL:
            return _byte(av)
        if op is sre.NOT_LITERAL:
            return f"[^{_byte(av)}]"
        if op is sre.ANY:
            return "."
        parts = []
        for item, value in av:
            if item is sre.NEGATE:
                parts.append("^")
            elif item is sre.LITERAL:
                parts.append(_byte(value))
            elif item is sre.RANGE:
                parts.append(f"{_byte(value[0])}-{_byte(value[1])}")
            else:  # CATEGORY
                parts.append(_CATEGORIES[value])
        return "[" + "".join(parts) + "]"

    def _whole(self, op: object, av: object) -> str:
        if op in (sre.LITERAL, sre.NOT_LITERAL, sre.ANY, sre.IN):
            return self.byte_class(op, av)
        if op is sre.BRANCH:
            return "(?:" + "|".join(self.whole(list(b)) for b in av[1]) + ")"  # type: ignore[index]
        if op is sre.SUBPATTERN:
            _, add, remove, sub = av  # type: ignore[misc]
            return _flags(add, remove) + self.whole(list(sub)) + ")"
        if op in _REPEATS:
            lo, hi, sub = av  # type: ignore[misc]
            return f"(?:{self.whole(list(sub))}){_repeat(lo, hi)}"
        if op is _ATOMIC:
            return f"(?:{self.whole(list(av))})"  # type: ignore[arg-type]
        if op is sre.GROUPREF:
            return self._backref(av, prefix=False)  # type: ignore[arg-type]
        if op is sre.GROUPREF_EXISTS:
            _, yes, no = av  # type: ignore[misc]
            return f"(?:{self.whole(list(yes))}|{self.whole(list(no or []))})"
        return ""  # AT, ASSERT, ASSERT_NOT: zero width, taken as always true

    def _prefix(self, op: object, av: object) -> str:
        if op in (sre.LITERAL, sre.NOT_LITERAL, sre.ANY, sre.IN, sre.AT):
            return ""
        if op is sre.BRANCH:
            return "(?:" + "|".join(self.prefix(list(b)) for b in av[1]) + ")"  # type: ignore[index]
        if op is sre.SUBPATTERN:
            _, add, remove, sub = av  # type: ignore[misc]
            return _flags(add, remove) + self.prefix(list(sub)) + ")"
        if op in _REPEATS:
            lo, hi, sub = av  # type: ignore[misc]
            if hi == 0:
                return ""
            many = "*" if hi == sre.MAXREPEAT else f"{{0,{hi - 1}}}"
            return f"(?:(?:{self.whole(list(sub))}){many}{self.prefix(list(sub))})"
        if op in (sre.ASSERT, sre.ASSERT_NOT):
            direction, sub = av  # type: ignore[misc]
            return self.prefix(list(sub)) if direction == 1 else ""
        if op is sre.GROUPREF:
            return self._backref(av, prefix=True)  # type: ignore[arg-type]
        if op is sre.GROUPREF_EXISTS:
            _, yes, no = av  # type: ignore[misc]
            return f"(?:{self.prefix(list(yes))}|{self.prefix(list(no or []))})"
        return self.prefix(list(av))  # type: ignore[arg-type]  # ATOMIC_GROUP

    def _suffix(self, op: object, av: object) -> str:
        if op in (sre.LITERAL, sre.NOT_LITERAL, sre.ANY, sre.IN):
            return f"(?:{self._whole(op, av)}|)"
        if op is sre.AT:
            return ""
        if op is sre.BRANCH:
            return "(?:" + "|".join(self.suffix(list(b)) for b in av[1]) + ")"  # type: ignore[index]
        if op is sre.SUBPATTERN:
            _, add, remove, sub = av  # type: ignore[misc]
            return _flags(add, remove) + self.suffix(list(sub)) + ")"
        if op in _REPEATS:
            lo, hi, sub = av  # type: ignore[misc]
            if hi == 0:
                return ""
            many = "*" if hi == sre.MAXREPEAT else f"{{0,{hi - 1}}}"
            return f"(?:{self.suffix(list(sub))}(?:{self.whole(list(sub))}){many})"
        if op is _ATOMIC:
            return self.suffix(list(av))  # type: ignore[arg-type]
        raise _Unmodelled(op)
