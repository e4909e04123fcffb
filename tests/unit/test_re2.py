"""The RE2 translation (patch/re2.py) against ``re`` on the same buffer.

Random patterns from a grammar that covers every way RE2 and ``re`` differ on bytes
(``\\s``, ``(?i)`` beyond ASCII, bytes >= 0x80, anchors, lazy and greedy quantifiers,
nested repeats, alternation order, counted repeats, named and unmatched groups, templates
with ``\\g<...>`` and escapes): whenever the translator says RE2 may run a pattern, RE2's
replacement and count must be exactly ``re.sub``'s and ``re``'s, on a whole buffer and on
the slices that :func:`substitute` cuts from the middle of a file.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from airflow_bigfile.patch import re2
from airflow_bigfile.patch.re2 import DOLLAR, first_match, replace, substitute, translate
from airflow_bigfile.patch.reach import factors

ATOMS = ["a", "b", "A", "1", " ", ".", r"\s", r"\S", r"\w", r"\W", r"\d", "[a-c]", "[^a]",
         r"[\x80-\xff]", r"\xe9", "[_1-]", r"\x0b", r"\n"]
ANCHORS = ["^", "$", r"\A", r"\Z", r"\b", r"\B"]
# nested repeats that re runs without backtracking exponentially, for long data
DELIMITED = [r"(?:a+b)+", r"(?:\d+[ _-])+", r"(?:\S+\s)+?", r"(?:ab)+", r"(?:[^a]+a){1,3}",
             r"(?:\w+\n)+"]
QUANTIFIERS = ["", "", "*", "+", "?", "{1,3}", "{2}", "{0,2}", "*?", "+?", "??", "{1,3}?"]
FLAGS = ["", "(?i)", "(?s)", "(?is)", "(?a)", "(?m)"]
ALPHABET = b"aAb1 \t\x0b\n\xe9\xc9_-"


@st.composite
def patterns(draw, nested: bool = True) -> tuple[str, str]:
    """A pattern and a template that refers to its groups; ``nested=False`` keeps
    quantifiers off groups but ``DELIMITED`` ones, so ``re`` (the oracle) never backtracks
    exponentially on long data."""
    groups: list[str | None] = []

    def atom_or_group(depth: int) -> str:
        kind = draw(st.integers(-2, 5 if depth < 2 else 0))
        if kind == -2:
            return draw(st.sampled_from(ANCHORS))
        if kind == -1:
            return draw(st.sampled_from(DELIMITED))
        if kind == 0:
            text = draw(st.sampled_from(ATOMS))
        elif kind == 1:
            text = "(?:" + "|".join(seq(depth + 1) for _ in range(draw(st.integers(2, 3)))) + ")"
        elif kind == 2:
            name = f"g{len(groups)}"
            groups.append(name)
            text = f"(?P<{name}>{seq(depth + 1)})"
        elif kind == 3:
            groups.append(None)
            text = f"({seq(depth + 1)})"
        elif kind == 4:
            text = "(?i:" + seq(depth + 1) + ")"
        else:
            text = seq(depth + 1)
        quantifier = draw(st.sampled_from(QUANTIFIERS if nested or kind == 0 else [""]))
        return f"(?:{text}){quantifier}" if quantifier and kind == 5 else text + quantifier

    def seq(depth: int) -> str:
        return "".join(atom_or_group(depth) for _ in range(draw(st.integers(1, 3))))

    pattern = draw(st.sampled_from(FLAGS)) + seq(0)
    refs = ["\\g<0>", "-", "\\n", "\\\\", "\xe9"]
    for number, name in enumerate(groups, start=1):
        refs += [f"\\{number}", f"\\g<{number}>"] + ([f"\\g<{name}>"] if name else [])
    template = "".join(draw(st.lists(st.sampled_from(refs), min_size=0, max_size=4)))
    return pattern, template


@st.composite
def same_length_patterns(draw) -> tuple[str, str, bool]:
    """Two random groups around a fixed-width middle and a template naming them around a
    literal, and whether the literal is as long as the middle (then every replacement is
    as long as its match)."""
    one, two = (re.sub(r"\A\(\?[a-z]+\)", "", draw(patterns(nested=False))[0])
                for _ in range(2))
    middle = draw(st.lists(st.sampled_from(["a", ".", r"\d", "[a-c]", r"\s"]), max_size=3))
    literal = "-" * max(0, len(middle) + draw(st.sampled_from([-1, 0, 0, 0, 1])))
    refs = [r"\g<first>", r"\g<second>"]
    swap = draw(st.booleans())
    two = two.replace("(?P<g", "(?P<h")
    return (f"(?P<first>{one}){''.join(middle)}(?P<second>{two})",
            refs[swap] + literal + refs[not swap], len(literal) == len(middle))


def re_sub_between(pattern: re.Pattern[bytes], template: bytes, whole: bytes, pos: int,
                   cut: int) -> tuple[bytes, int, int | None]:
    """``re``'s scan of ``whole`` from ``pos``: the output for ``[pos, cut)``, the number of
    matches starting there and the first one's start; none of them may cross ``cut``."""
    out, count, first, prev = [], 0, None, pos
    for match in pattern.finditer(whole, pos):
        if match.start() >= cut:
            break
        assert match.end() <= cut, "a match crosses a clean cut"
        out += [whole[prev:match.start()], match.expand(template)]
        count, prev = count + 1, match.end()
        first = match.start() if first is None else first
    return b"".join(out) + whole[prev:cut], count, first


def case_data(max_size: int) -> st.SearchStrategy[bytes]:
    return st.lists(st.sampled_from(ALPHABET), max_size=max_size).map(bytes)


def check_whole_buffer(pattern_text: str, template_text: str, data: bytes) -> None:
    pattern = re.compile(pattern_text.encode("latin-1"))
    template = template_text.encode("latin-1")
    translation = translate(pattern, template)
    if translation.source is None:
        assert translation.reason and translation.engine == "re"
        return
    assert translation.engine == "re2"
    if data.endswith(b"\n") and DOLLAR.encode() in translation.source:
        return  # $ before a final newline: a slice stops before it (the bulk test)
    expected = pattern.sub(template, data)
    count = sum(1 for _ in pattern.finditer(data))
    anchors, segment = (True, True, True), memoryview(data)
    first = first_match(translation, anchors, segment)
    assert first == next((m.start() for m in pattern.finditer(data)), -1)
    out, found = replace(translation, anchors, segment, first) if first >= 0 else (data, 0)
    assert (bytes(out), found) == (expected, count), (pattern_text, template_text, translation)


@settings(max_examples=3000, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(case=patterns(nested=False), data=case_data(60))
def test_translation_means_what_re_means(case, data):
    check_whole_buffer(*case, data)


@settings(max_examples=1500, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(case=patterns(), data=case_data(12))
def test_nested_translation_means_what_re_means(case, data):
    """Any nesting of repeats, on data short enough for ``re``'s backtracking."""
    check_whole_buffer(*case, data)


@settings(max_examples=2000, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(case=patterns(nested=False), data=case_data(60), start=st.integers(0, 60),
       eof=st.booleans(), after=st.binary(min_size=1, max_size=3))
def test_bulk_means_what_re_means(case, data, start, eof, after):
    """RE2 over a slice from where the scan resumes to a clean cut, anchors written for that
    slice, equals ``re`` on the whole file; the file goes on past the window unless
    ``eof``."""
    pattern = re.compile(case[0].encode("latin-1"))
    template = case[1].encode("latin-1")
    translation = translate(pattern, template)
    pos = min(start, len(data))
    event(translation.engine)
    if translation.source is None or pos == len(data):
        return
    whole = data if eof else data + after
    saved, re2.MIN_BULK = re2.MIN_BULK, 1
    try:
        bulk = substitute(translation, factors(pattern), len(whole) + 1, bytearray(data),
                          len(data), 0, eof, pos, len(data))
    finally:
        re2.MIN_BULK = saved
    event("re2" if bulk is not None else "no cut: re")
    if bulk is None:
        return  # no clean cut: re scans it all
    expected, count, first = re_sub_between(pattern, template, whole, pos, bulk.end)
    assert (bytes(bulk.data), bulk.count, bulk.first) == (expected, count, first), (
        case, translation)


@pytest.mark.parametrize("pattern, template, reason", [
    (rb"(?m)a$", b"", "MULTILINE"),
    (rb"\bab", b"", "\\b"),
    (rb"(a)\1", b"", "backreference"),
    (rb"a(?=b)", b"", "lookaround"),
    (rb"(?:a|)+b", b"", "can match empty"),
    (rb"a*", b"", "can match empty"),
    (rb"a{1001}", b"", "over 1000"),
    (rb"(?:a{1,3}){400}", b"", "RE2 refuses"),
    (rb"a++", b"", "possessive"),
    (rb"(?>ab)", b"", "atomic"),
    (rb"(?L)a", b"", "LOCALE"),
    (rb"(a)(b)(c)(d)(e)(f)(g)(h)(i)(j)", rb"\10", "group 10"),
])
def test_fallbacks_say_why(pattern, template, reason):
    translation = translate(re.compile(pattern), template)
    assert translation.source is None and translation.engine == "re"
    assert reason in translation.reason


def test_bench_patterns_run_on_re2():
    for pattern, template in [(rb"(\d+)@old\.com", rb"\1@new.org"),
                              (rb"(\d{4})-(\d\d)-(\d\d)", rb"\3.\2.\1")]:
        assert translate(re.compile(pattern), template).engine == "re2"
