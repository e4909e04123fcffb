"""The RE2 translation (patch/re2.py) against ``re`` on the same buffer.

Random patterns from a grammar that covers every way RE2 and ``re`` differ on bytes
(``\\s``, ``(?i)`` beyond ASCII, bytes >= 0x80, lazy and greedy quantifiers, alternation
order, counted repeats, named and unmatched groups, templates with ``\\g<...>`` and
escapes): whenever the translator says RE2 may run a pattern, RE2's replacement and count
must be exactly ``re.sub``'s and ``re``'s.
"""

from __future__ import annotations

import re
import struct

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_bigfile.patch.re2 import translate

ATOMS = ["a", "b", "A", "1", " ", ".", r"\s", r"\S", r"\w", r"\W", r"\d", "[a-c]", "[^a]",
         r"[\x80-\xff]", r"\xe9", "[_1-]", r"\x0b", r"\n"]
QUANTIFIERS = ["", "", "*", "+", "?", "{1,3}", "{2}", "{0,2}", "*?", "+?", "??", "{1,3}?"]
FLAGS = ["", "(?i)", "(?s)", "(?is)", "(?a)"]
ALPHABET = b"aAb1 \t\x0b\n\xe9\xc9_-"


@st.composite
def patterns(draw, nested: bool = True) -> tuple[str, str]:
    """A pattern and a template that refers to its groups; ``nested=False`` keeps
    quantifiers off groups, so ``re`` (the oracle) never backtracks exponentially."""
    groups: list[str | None] = []

    def atom_or_group(depth: int) -> str:
        kind = draw(st.integers(0, 5 if depth < 2 else 0))
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


def re2_sub(pattern: bytes, rewrite: bytes, data: bytes) -> tuple[bytes, int]:
    offsets = pa.py_buffer(struct.pack("<qq", 0, len(data)))
    array = pa.LargeBinaryArray.from_buffers(pa.large_binary(), 1,
                                             [None, offsets, pa.py_buffer(data)])
    out = pc.replace_substring_regex(array, pattern=pattern, replacement=rewrite)
    return out[0].as_py(), pc.count_substring_regex(array, pattern=pattern)[0].as_py()


@settings(max_examples=3000, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(case=patterns(), data=st.lists(st.sampled_from(ALPHABET), max_size=60).map(bytes))
def test_translation_means_what_re_means(case, data):
    pattern_text, template_text = case
    pattern = re.compile(pattern_text.encode("latin-1"))
    template = template_text.encode("latin-1")
    translation = translate(pattern, template)
    if translation.pattern is None:
        assert translation.reason and translation.engine == "re"
        return
    assert translation.engine == "re2"
    expected = pattern.sub(template, data)
    count = sum(1 for _ in pattern.finditer(data))
    assert re2_sub(translation.pattern, translation.rewrite, data) == (expected, count), (
        pattern_text, template_text, translation)


@pytest.mark.parametrize("pattern, template, reason", [
    (rb"a$", b"", "anchor"),
    (rb"\bab", b"", "anchor"),
    (rb"(a)\1", b"", "backreference"),
    (rb"a(?=b)", b"", "lookaround"),
    (rb"(?:a|)+b", b"", "can match empty"),
    (rb"a*", b"", "can match empty"),
    (rb"(?:ab)+", b"", "more than one byte"),
    (rb"a{1001}", b"", "over 1000"),
    (rb"a++", b"", "possessive"),
    (rb"(?>ab)", b"", "atomic"),
    (rb"(?L)a", b"", "LOCALE"),
    (rb"(a)(b)(c)(d)(e)(f)(g)(h)(i)(j)", rb"\10", "group 10"),
])
def test_fallbacks_say_why(pattern, template, reason):
    translation = translate(re.compile(pattern), template)
    assert translation.pattern is None and translation.engine == "re"
    assert reason in translation.reason


def test_bench_patterns_run_on_re2():
    for pattern, template in [(rb"(\d+)@old\.com", rb"\1@new.org"),
                              (rb"(\d{4})-(\d\d)-(\d\d)", rb"\3.\2.\1")]:
        assert translate(re.compile(pattern), template).engine == "re2"
