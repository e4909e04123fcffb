"""Sanity checks of the reference model itself (tests/model.py), against ``bytes.replace``,
``re.sub`` and hand-computed examples, so the property tests compare against a trusted oracle."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_bigfile.edits import Append, Delete, Insert, Patch, Replace, Truncate
from airflow_bigfile.exceptions import EditConflictError, EditError, PatternError
from tests.model import apply_model, longest_match, match_count, replace_matches

small_bytes = st.lists(st.sampled_from(b"ab\n"), max_size=40).map(bytes)


# -- replace agrees with bytes.replace and re.sub ------------------------------------------

@pytest.mark.parametrize("data, find, replace, expected", [
    (b"aaaaa", b"aa", b"X", b"XXa"),
    (b"ababab", b"abab", b"X", b"Xab"),
    (b"ababa", b"aba", b"X", b"Xba"),
    (b"abc", b"abc", b"", b""),
    (b"xyz", b"q", b"Q", b"xyz"),
    (b"", b"a", b"b", b""),
    (b"a\nb\n", b"\n", b"\r\n", b"a\r\nb\r\n"),
])
def test_literal_examples(data, find, replace, expected):
    assert apply_model(data, [Replace(find, replace)]) == expected
    assert data.replace(find, replace) == expected


def test_literal_match_positions():
    assert [m[:2] for m in replace_matches(b"aaaaa", Replace(b"aa", b""))] == [(0, 2), (2, 4)]
    assert [m[:2] for m in replace_matches(b"abababab", Replace(b"abab", b""))] == [(0, 4), (4, 8)]
    assert match_count(b"aaaaa", [Replace(b"aa", b""), Patch(4, b"z")]) == 2


@settings(max_examples=300, deadline=None)
@given(small_bytes, st.sampled_from([b"a", b"aa", b"aba", b"abab", b"\n", b"b\na"]),
       st.sampled_from([b"", b"X", b"YY", b"aa"]))
def test_literal_is_bytes_replace(data, find, replace):
    assert apply_model(data, [Replace(find, replace)]) == data.replace(find, replace)
    assert match_count(data, [Replace(find, replace)]) == data.count(find)


REGEXES = [(rb"a+b", rb"<\g<0>>"), (rb"(a)(b)", rb"\2\1"), (rb"\bab", b"X"), (rb"a|ab", b"Q"),
           (rb"[ab]{2,3}", b""), (rb"(?m)^a", b"S"), (rb"(?P<x>b)\n", rb"\g<x>;"),
           (rb"(a)|(b)", rb"[\1\2]")]


@settings(max_examples=300, deadline=None)
@given(small_bytes, st.sampled_from(REGEXES))
def test_regex_is_re_sub(data, pair):
    pattern, template = pair
    edit = Replace(pattern, template, regex=True, max_match=64)
    assert apply_model(data, [edit]) == re.sub(pattern, template, data)
    assert match_count(data, [edit]) == re.subn(pattern, template, data)[1]


def test_regex_examples():
    assert apply_model(b"abab", [Replace(rb"(a)(b)", rb"\2\1", regex=True)]) == b"baba"
    assert apply_model(b"ab ab", [Replace(rb"\bab", b"X", regex=True)]) == b"X X"
    assert apply_model(b"aab", [Replace(rb"a|ab", b"Q", regex=True)]) == b"QQb"
    assert apply_model(b"aaab", [Replace(rb"a+b", b"-", regex=True, max_match=4)]) == b"-"


def test_regex_zero_length_match_is_an_error():
    with pytest.raises(PatternError):
        apply_model(b"bbb", [Replace(rb"a*", b"X", regex=True)])
    with pytest.raises(PatternError):                  # even an empty file matches a*
        apply_model(b"", [Replace(rb"a*", b"X", regex=True)])
    with pytest.raises(PatternError):                  # only the empty match after the 2nd b
        apply_model(b"babb", [Replace(rb"(?<=b)a*", b"X", regex=True)])
    assert apply_model(b"baba", [Replace(rb"(?<=b)a*", b"X", regex=True)]) == b"bXbX"


def test_regex_longer_than_max_match_is_an_error():
    edit = Replace(rb"a+", b"X", regex=True, max_match=3)
    assert apply_model(b"aaabaa", [edit]) == b"XbX"
    with pytest.raises(PatternError):
        apply_model(b"aaaab", [edit])
    assert longest_match(b"aaaab", [edit]) == 4
    assert longest_match(b"aaaab", [Replace(b"aaaa", b"")]) == 0   # literals are not counted


# -- offsets, inserts, tail order -----------------------------------------------------------

def test_patch_delete_insert():
    data = b"0123456789"
    assert apply_model(data, [Patch(2, b"ab")]) == b"01ab456789"
    assert apply_model(data, [Delete(2, 3)]) == b"0156789"
    assert apply_model(data, [Insert(0, b"<"), Insert(10, b">")]) == b"<0123456789>"
    assert apply_model(data, [Patch(8, b"xy")]) == b"01234567xy"
    assert apply_model(data, [Delete(0, 10)]) == b""


def test_inserts_at_range_edges():
    data = b"0123456789"
    # at a range's start before its new bytes, at its end after them; same offset: list order
    assert apply_model(data, [Patch(2, b"ab"), Insert(2, b"<"), Insert(4, b">")]) == \
        b"01<ab>456789"
    assert apply_model(data, [Insert(2, b"1"), Delete(2, 2), Insert(2, b"2"), Insert(4, b"3")]) \
        == b"01" + b"12" + b"3" + b"456789"
    assert apply_model(b"xaay", [Replace(b"aa", b"B"), Insert(1, b"["), Insert(3, b"]")]) == \
        b"x[B]y"
    # two adjacent ranges with an insert between them
    assert apply_model(data, [Delete(0, 2), Insert(2, b"|"), Patch(2, b"P")]) == b"|P3456789"


def test_tail_order():
    data = b"abc"
    edits = [Append(b"A1"), Truncate(5), Insert(3, b"I1"), Append(b"A2"), Insert(3, b"I2")]
    assert apply_model(data, edits) == b"abcI1I2\0\0A1A2"
    assert apply_model(data, [Truncate(1), Insert(1, b"I"), Append(b"A")]) == b"aIA"
    assert apply_model(data, [Truncate(3), Insert(3, b"I")]) == b"abcI"
    assert apply_model(data, [Truncate(0), Append(b"new")]) == b"new"
    assert apply_model(b"", [Insert(0, b"x"), Truncate(2), Append(b"y")]) == b"x\0\0y"


def test_replace_with_other_edits():
    data = b"aaaaa"
    # matches of aa at 0..2 and 2..4; byte 4 is free
    assert apply_model(data, [Replace(b"aa", b"X"), Patch(4, b"b")]) == b"XXb"
    assert apply_model(data, [Replace(b"aa", b"X"), Insert(2, b"|")]) == b"X|Xa"
    assert apply_model(data, [Replace(b"aa", b"X"), Truncate(4)]) == b"XX"
    assert apply_model(data, [Replace(b"b", b"X"), Truncate(2)]) == b"aa"


@st.composite
def offset_edits(draw):
    data = draw(st.binary(max_size=20))
    n = len(data)
    edit = st.one_of(
        st.builds(Patch, st.integers(0, n + 1), st.binary(min_size=1, max_size=3)),
        st.builds(Delete, st.integers(0, n + 1), st.integers(1, 4)),
        st.builds(Insert, st.integers(0, n + 1), st.binary(max_size=3)),
    )
    return data, draw(st.lists(edit, min_size=1, max_size=4))


@settings(max_examples=500, deadline=None)
@given(offset_edits())
def test_offset_edits_against_back_to_front(case):
    """Patches, deletes and inserts, applied back to front (so earlier offsets stay valid)
    one by one, give the model's result whenever the model accepts the list."""
    data, edits = case
    try:
        expected = apply_model(data, edits)
    except EditError:
        return
    out = bytearray(data)
    # by offset descending; at one offset the range first, then inserts in reverse list order
    keyed = [(e.offset, 0 if isinstance(e, Insert) else 1, i, e) for i, e in enumerate(edits)]
    for offset, _, _, e in sorted(keyed, key=lambda k: k[:3], reverse=True):
        if isinstance(e, Patch):
            out[offset:offset + len(e.data)] = e.data
        elif isinstance(e, Delete):
            del out[offset:offset + e.length]
        else:
            out[offset:offset] = e.data
    assert bytes(out) == expected


# -- errors ---------------------------------------------------------------------------------

@pytest.mark.parametrize("edits", [
    [Patch(9, b"xy")],                        # ends past the end
    [Patch(10, b"x")],
    [Delete(8, 3)],
    [Insert(11, b"x")],
])
def test_out_of_range(edits):
    with pytest.raises(EditError):
        apply_model(b"0123456789", edits)


@pytest.mark.parametrize("data, edits", [
    (b"0123456789", [Patch(2, b"ab"), Patch(3, b"c")]),
    (b"0123456789", [Delete(0, 5), Patch(4, b"x")]),
    (b"0123456789", [Delete(0, 5), Insert(3, b"x")]),           # insert strictly inside
    (b"0123456789", [Truncate(5), Patch(4, b"xy")]),            # range ends past new size
    (b"0123456789", [Truncate(5), Insert(6, b"x")]),            # insert past new size
    (b"0123456789", [Truncate(5), Insert(10, b"x")]),
    (b"0123456789", [Truncate(5), Truncate(5)]),                # two truncates
    (b"0123456789", [Truncate(12), Truncate(3)]),
    (b"aaaaa", [Replace(b"aa", b"X"), Patch(1, b"b")]),          # a match overlaps a patch
    (b"aaaaa", [Replace(b"aa", b"X"), Insert(1, b"|")]),         # an insert inside a match
    (b"aaaaa", [Replace(b"aa", b"X"), Truncate(3)]),             # match 2..4 cut by truncate
    (b"abab", [Replace(b"ab", b"X"), Replace(b"ba", b"Y")]),     # matches of two replaces
    (b"abab", [Replace(b"abab", b"X"), Replace(rb"b", b"Y", regex=True)]),
])
def test_conflicts(data, edits):
    with pytest.raises(EditConflictError):
        apply_model(data, edits)


def test_no_conflict_when_adjacent():
    assert apply_model(b"abab", [Replace(b"ab", b"X"), Replace(b"bb", b"Y")]) == b"XX"
    assert apply_model(b"aabb", [Replace(b"aa", b"1"), Replace(b"bb", b"2")]) == b"12"
    assert apply_model(b"0123", [Patch(0, b"x"), Delete(1, 1), Patch(2, b"y")]) == b"xy3"
    assert apply_model(b"0123", [Truncate(2), Patch(1, b"x")]) == b"0x"


def test_constructors_reject_empty():
    with pytest.raises(PatternError):
        Replace(b"", b"x")
    with pytest.raises(EditError):
        Patch(0, b"")
    with pytest.raises(EditError):
        Delete(0, 0)
