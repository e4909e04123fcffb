"""Unit tests of the edit vocabulary (airflow_bigfile/edits.py): construction, JSON, offsets."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_bigfile.edits import (
    DEFAULT_MAX_MATCH,
    Append,
    Delete,
    Insert,
    Patch,
    Replace,
    Truncate,
    check_offsets,
    coerce_edits,
    edit_from_json,
    edit_to_json,
    edits_from_json,
    label,
)
from airflow_bigfile.exceptions import BigFileError, EditConflictError, EditError, PatternError
from tests.unit.test_re2 import ALPHABET, same_length_patterns

# -- construction ---------------------------------------------------------------------------


def test_positional_arguments_follow_the_table():
    r = Replace(b"a", b"b", True, 10)
    assert (r.find, r.replace, r.regex, r.max_match) == (b"a", b"b", True, 10)
    assert Replace(b"a", b"b").regex is False
    assert Replace(b"a", b"b").max_match == DEFAULT_MAX_MATCH == 4096
    assert (Patch(3, b"x").offset, Patch(3, b"x").data) == (3, b"x")
    assert (Insert(3, b"x").offset, Insert(3, b"x").data) == (3, b"x")
    assert (Delete(3, 4).offset, Delete(3, 4).length) == (3, 4)
    assert Truncate(7).size == 7
    assert Append(b"z").data == b"z"
    assert Replace(find=b"a", replace=b"b", regex=True, max_match=5).max_match == 5


def test_text_and_buffers_become_bytes():
    assert Replace("é", "ü").find == "é".encode()
    assert Replace("é", "ü").replace == "ü".encode()
    assert Patch(0, bytearray(b"ab")).data == b"ab"
    assert type(Patch(0, bytearray(b"ab")).data) is bytes
    assert Insert(0, memoryview(b"cd")).data == b"cd"
    assert Append("text").data == b"text"


def test_edits_are_values():
    assert Replace(b"a", b"b", regex=True) == Replace(b"a", b"b", regex=True)
    assert hash(Patch(1, b"x")) == hash(Patch(1, b"x"))
    assert Delete(1, 2) != Delete(1, 3)
    with pytest.raises(AttributeError):
        Patch(1, b"x").offset = 2  # type: ignore[misc]


def test_empty_insert_and_append_are_allowed():
    assert Insert(0, b"").data == b""
    assert Append(b"").data == b""
    assert Truncate(0).size == 0


@pytest.mark.parametrize("make, exc, words", [
    (lambda: Replace(b"", b"x"), PatternError, "find must not be empty"),
    (lambda: Replace("", b"x", regex=True), PatternError, "find must not be empty"),
    (lambda: Replace(b"(", b"x", regex=True), PatternError, "invalid regex"),
    (lambda: Replace(b"(a)", rb"\2", regex=True), PatternError, "invalid replacement"),
    (lambda: Replace(b"(a)", rb"\g<name>", regex=True), PatternError, "invalid replacement"),
    (lambda: Replace(b"a", b"x", regex="yes"), EditError, "regex must be true or false"),
    (lambda: Replace(b"a", b"x", max_match=0), EditError, "max_match must be >= 1"),
    (lambda: Replace(b"a", b"x", max_match=True), EditError, "max_match must be an integer"),
    (lambda: Replace(1, b"x"), EditError, "find must be bytes or text"),
    (lambda: Replace(b"a", None), EditError, "replace must be bytes or text"),
    (lambda: Patch(0, b""), EditError, "data must not be empty"),
    (lambda: Patch(-1, b"x"), EditError, "offset must be >= 0"),
    (lambda: Patch(1.0, b"x"), EditError, "offset must be an integer"),
    (lambda: Patch(0, 5), EditError, "data must be bytes or text"),
    (lambda: Insert(-2, b"x"), EditError, "offset must be >= 0"),
    (lambda: Insert("3", b"x"), EditError, "offset must be an integer"),
    (lambda: Delete(0, 0), EditError, "length must be >= 1"),
    (lambda: Delete(0, -1), EditError, "length must be >= 1"),
    (lambda: Delete(-1, 1), EditError, "offset must be >= 0"),
    (lambda: Truncate(-1), EditError, "size must be >= 0"),
    (lambda: Truncate(False), EditError, "size must be an integer"),
    (lambda: Append(None), EditError, "data must be bytes or text"),
])
def test_construction_is_validated(make, exc, words):
    with pytest.raises(exc, match=words) as info:
        make()
    assert isinstance(info.value, BigFileError)
    assert isinstance(info.value, ValueError)


def test_regex_templates_are_checked_up_front():
    Replace(rb"(?P<x>a)(b)", rb"\g<x>\2\g<0>\1", regex=True)   # all exist: fine
    Replace(rb"a", rb"\g<0>!", regex=True)
    Replace(b"(a)", rb"\2", regex=False)                      # literal: no template
    with pytest.raises(PatternError):
        Replace(rb"(?P<x>a)", rb"\g<y>", regex=True)


def test_window_and_pattern():
    assert Replace(b"abc", b"").window == 3
    assert Replace(b"a+", b"", regex=True, max_match=17).window == 19
    assert Replace(b"a+", b"", regex=True).pattern.pattern == b"a+"
    assert Replace(b"a+", b"").pattern is None


def test_describe_and_label():
    assert label(0, Patch(10, b"abcd")) == "edit #1 patch(offset=10, 4 bytes)"
    assert label(2, Delete(5, 3)) == "edit #3 delete(offset=5, length=3)"
    assert "insert(offset=1" in label(0, Insert(1, b"x"))
    assert "truncate(size=9)" in label(0, Truncate(9))
    assert "append(2 bytes)" in label(0, Append(b"xy"))
    assert Replace(b"a", b"b").describe().startswith("replace(")
    assert Replace(b"a", b"b", regex=True).describe().startswith("regex(")
    assert len(Replace(b"x" * 1000, b"y").describe()) < 100   # long patterns are shortened


def test_error_hierarchy():
    assert issubclass(EditConflictError, EditError)
    assert issubclass(PatternError, EditError)
    assert issubclass(EditError, ValueError)
    assert issubclass(EditError, BigFileError)


# -- JSON -----------------------------------------------------------------------------------


def test_from_json_every_op():
    edits = edits_from_json(json.dumps([
        {"op": "replace", "find": "@old.com", "replace": "@new.com"},
        {"op": "replace", "find": "a+", "replace": "b", "regex": True, "max_match": 9},
        {"op": "patch", "offset": 3, "data": "xy"},
        {"op": "insert", "offset": 0, "data": "head"},
        {"op": "delete", "offset": 10, "length": 2},
        {"op": "truncate", "size": 100},
        {"op": "append", "data": "tail\n"},
    ]))
    assert edits == [
        Replace(b"@old.com", b"@new.com"),
        Replace(b"a+", b"b", regex=True, max_match=9),
        Patch(3, b"xy"), Insert(0, b"head"), Delete(10, 2), Truncate(100), Append(b"tail\n"),
    ]


def test_from_json_hex_fields():
    assert edit_from_json({"op": "patch", "offset": 0, "data_hex": "00ff"}) == Patch(0, b"\0\xff")
    assert edit_from_json({"op": "append", "data_hex": "0A0d"}) == Append(b"\n\r")
    assert edit_from_json({"op": "replace", "find_hex": "ff", "replace_hex": ""}) == \
        Replace(b"\xff", b"")
    assert edit_from_json({"op": "replace", "find": "a", "replace_hex": "c3a9"}) == \
        Replace(b"a", "é".encode())


def test_from_json_accepts_text_bytes_and_wrapper():
    text = '[{"op": "truncate", "size": 1}]'
    assert edits_from_json(text) == [Truncate(1)]
    assert edits_from_json(text.encode()) == [Truncate(1)]
    assert edits_from_json({"edits": [{"op": "truncate", "size": 1}]}) == [Truncate(1)]
    assert edits_from_json(json.loads(text)) == [Truncate(1)]


@pytest.mark.parametrize("obj, exc, words", [
    ("not a dict", EditError, "expected an object with an 'op' field"),
    ({"offset": 1}, EditError, "missing field 'op'"),
    ({"op": "frobnicate"}, EditError, "unknown op 'frobnicate'"),
    ({"op": "patch", "offset": 1}, EditError, "missing field 'data'"),
    ({"op": "patch", "data": "x"}, EditError, "missing field 'offset'"),
    ({"op": "patch", "offset": 1, "data": "x", "lenght": 2}, EditError, "unknown field"),
    ({"op": "patch", "offset": 1, "data": "x", "data_hex": "78"}, EditError, "not both"),
    ({"op": "patch", "offset": 1, "data_hex": "zz"}, EditError, "not valid hex"),
    ({"op": "patch", "offset": 1, "data_hex": 12}, EditError, "not valid hex"),
    ({"op": "patch", "offset": 1, "data": 12}, EditError, "data must be a string"),
    ({"op": "patch", "offset": "1", "data": "x"}, EditError, "offset must be an integer"),
    ({"op": "patch", "offset": 1, "data": ""}, EditError, "must not be empty"),
    ({"op": "delete", "offset": 1, "length": 0}, EditError, "length must be >= 1"),
    ({"op": "truncate", "size": -5}, EditError, "size must be >= 0"),
    ({"op": "replace", "find": "", "replace": "x"}, PatternError, "find must not be empty"),
    ({"op": "replace", "find": "(", "replace": "x", "regex": True}, PatternError, "regex"),
    ({"op": "replace", "find": "a", "replace": "x", "regex": "true"}, EditError, "regex"),
    ({"op": "append", "data": "x", "offset": 3}, EditError, "unknown field"),
])
def test_from_json_errors(obj, exc, words):
    with pytest.raises(exc, match=words):
        edit_from_json(obj)
    with pytest.raises(exc, match="edit #2"):       # errors name the edit's place in the list
        edits_from_json([{"op": "truncate", "size": 1}, obj])


@pytest.mark.parametrize("data, words", [
    ("[{", "not valid JSON"),
    ('{"op": "truncate", "size": 1}', "must be a JSON list"),
    ("42", "must be a JSON list"),
])
def test_edits_from_json_errors(data, words):
    with pytest.raises(EditError, match=words):
        edits_from_json(data)


def test_to_json_uses_text_when_it_can():
    assert edit_to_json(Patch(2, b"ok")) == {"op": "patch", "offset": 2, "data": "ok"}
    assert edit_to_json(Patch(2, b"\xff\x00")) == {"op": "patch", "offset": 2, "data_hex": "ff00"}
    assert edit_to_json(Replace(b"a", b"\xfe", regex=True, max_match=3)) == {
        "op": "replace", "find": "a", "replace_hex": "fe", "regex": True, "max_match": 3}
    assert edit_to_json(Delete(1, 2)) == {"op": "delete", "offset": 1, "length": 2}
    assert edit_to_json(Truncate(0)) == {"op": "truncate", "size": 0}
    assert edit_to_json(Append(b"")) == {"op": "append", "data": ""}


any_bytes = st.binary(max_size=8)
some_bytes = st.binary(min_size=1, max_size=8)
offsets = st.integers(0, 2**40)
edits_strategy = st.one_of(
    st.builds(Replace, some_bytes, any_bytes),
    st.sampled_from([(b"a+", b""), (rb"(x)(y)?", rb"\2\1"), (rb"\d", rb"\g<0>"),
                     ("é+".encode(), b"\xff"), (rb"(?P<n>z)", rb"\g<n>")]).flatmap(
        lambda pair: st.builds(Replace, st.just(pair[0]), st.just(pair[1]), st.just(True),
                               st.integers(2, 10**6))),
    st.builds(Patch, offsets, some_bytes),
    st.builds(Insert, offsets, any_bytes),
    st.builds(Delete, offsets, st.integers(1, 2**40)),
    st.builds(Truncate, offsets),
    st.builds(Append, any_bytes),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(edits_strategy, min_size=1, max_size=6))
def test_json_round_trip(edits):
    text = json.dumps([edit_to_json(e) for e in edits])   # must be plain JSON
    assert edits_from_json(text) == edits
    assert coerce_edits(json.loads(text)) == edits
    assert coerce_edits(text) == edits


# -- coerce_edits ---------------------------------------------------------------------------


def test_coerce_edits():
    assert coerce_edits(Truncate(1)) == [Truncate(1)]
    assert coerce_edits((Truncate(1), {"op": "append", "data": "x"})) == [Truncate(1), Append(b"x")]
    assert coerce_edits(iter([Patch(0, b"x")])) == [Patch(0, b"x")]
    assert coerce_edits([]) == [] and coerce_edits("[]") == []  # an empty list is a no-op
    with pytest.raises(EditError, match="edit #2: not an edit"):
        coerce_edits([Truncate(1), 42])
    with pytest.raises(EditError, match="must be a list"):
        coerce_edits(42)
    with pytest.raises(EditError, match="edit #1"):
        coerce_edits([{"op": "nope"}])


# -- check_offsets --------------------------------------------------------------------------


def test_layout_of_a_mixed_list():
    edits = [Replace(b"x", b"y"), Patch(5, b"PP"), Delete(1, 2), Insert(0, b"a"), Insert(10, b"t"),
             Insert(0, b"b"), Append(b"A1"), Truncate(14), Append(b"A2"), Insert(3, b"i")]
    layout = check_offsets(edits, 10)
    assert layout.size == 10
    assert layout.edits == tuple(edits)
    assert layout.ranges == ((1, 3, b"", 2), (5, 7, b"PP", 1))
    assert layout.inserts == ((0, b"a", 3), (0, b"b", 5), (3, b"i", 9))
    assert layout.replaces == ((0, edits[0]),)
    assert layout.tail_inserts == (b"t",)
    assert layout.zero_fill == 4
    assert layout.appends == (b"A1", b"A2")
    assert (layout.truncate_at, layout.truncate_index) == (14, 7)
    assert layout.tail_length == 1 + 4 + 4
    assert not layout.same_length
    assert layout.owner(1) == "edit #2 patch(offset=5, 2 bytes)"


def test_layout_of_a_shrinking_truncate():
    layout = check_offsets([Truncate(4), Patch(0, b"x"), Insert(4, b"i")], 10)
    assert layout.ranges == ((0, 1, b"x", 1), (4, 10, b"", 0))
    assert layout.inserts == ((4, b"i", 2),)
    assert layout.zero_fill == 0
    assert check_offsets([Truncate(10)], 10).ranges == ()      # same size: nothing cut


def test_same_length():
    assert check_offsets([Patch(0, b"ab"), Replace(b"a", b"b")], 5).same_length
    assert not check_offsets([Replace(b"a", b"bb")], 5).same_length
    assert not check_offsets([Delete(0, 1)], 5).same_length
    assert not check_offsets([Append(b"x")], 5).same_length


@pytest.mark.parametrize("edits, words", [
    ([Patch(9, b"xy")], r"edit #1 patch\(offset=9, 2 bytes\) ends at 11, past the end of f"),
    ([Patch(10, b"x")], "past the end"),
    ([Delete(8, 3)], r"edit #1 delete\(offset=8, length=3\) ends at 11"),
    ([Truncate(1), Insert(11, b"x")], r"edit #2 insert.*offset 11 is past the end"),
])
def test_out_of_range(edits, words):
    with pytest.raises(EditError, match=words) as info:
        check_offsets(edits, 10, "f")
    assert not isinstance(info.value, EditConflictError)


def test_edges_are_in_range():
    check_offsets([Patch(9, b"x"), Delete(0, 9), Insert(10, b"x"), Insert(0, b"y")], 10)
    check_offsets([Insert(0, b"x"), Truncate(3), Append(b"z")], 0)


@pytest.mark.parametrize("edits, first, second", [
    ([Patch(2, b"ab"), Patch(3, b"c")], "edit #1 patch", "edit #2 patch"),
    ([Delete(5, 3), Patch(0, b"x"), Patch(4, b"xy")], "edit #1 delete", "edit #3 patch"),
    ([Patch(4, b"xy"), Delete(0, 5)], "edit #1 patch", "edit #2 delete"),
    ([Delete(0, 5), Insert(3, b"x")], "edit #2 insert", "edit #1 delete"),
    ([Truncate(5), Patch(4, b"xy")], "edit #1 truncate", "edit #2 patch"),
    ([Delete(6, 2), Truncate(7)], "edit #1 delete", "edit #2 truncate"),
    ([Truncate(5), Insert(6, b"x")], "edit #2 insert", "edit #1 truncate"),
    ([Truncate(5), Insert(10, b"x")], "edit #2 insert", "edit #1 truncate"),
    ([Truncate(5), Truncate(5)], "edit #1 truncate", "edit #2 truncate"),
    ([Truncate(20), Append(b"x"), Truncate(3)], "edit #1 truncate", "edit #3 truncate"),
    ([Delete(0, 10), Delete(9, 1)], "edit #1 delete", "edit #2 delete"),
])
def test_conflicts_name_both_edits(edits, first, second):
    with pytest.raises(EditConflictError) as info:
        check_offsets(edits, 10)
    message = str(info.value)
    assert first in message and second in message, message
    assert "conflicts with" in message


def test_touching_ranges_and_inserts_at_edges_do_not_conflict():
    check_offsets([Patch(0, b"ab"), Delete(2, 2), Patch(4, b"c")], 10)
    check_offsets([Delete(2, 2), Insert(2, b"x"), Insert(4, b"y")], 10)
    check_offsets([Truncate(5), Insert(5, b"x"), Patch(4, b"y"), Insert(0, b"z")], 10)
    check_offsets([Truncate(15), Insert(10, b"x"), Patch(9, b"y")], 10)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_check_offsets_agrees_with_the_model(data):
    """Without replaces, check_offsets raises exactly when the reference model does."""
    from tests.model import apply_model

    size = data.draw(st.integers(0, 12))
    pos = st.integers(0, size + 2)
    edit = st.one_of(
        st.builds(Patch, pos, st.binary(min_size=1, max_size=3)),
        st.builds(Insert, pos, st.binary(max_size=2)),
        st.builds(Delete, pos, st.integers(1, 4)),
        st.builds(Truncate, st.integers(0, size + 3)),
        st.builds(Append, st.binary(max_size=2)),
    )
    edits = data.draw(st.lists(edit, min_size=1, max_size=4))
    try:
        apply_model(bytes(size), edits)
    except EditError as exc:
        with pytest.raises(type(exc)):
            check_offsets(edits, size)
    else:
        layout = check_offsets(edits, size)
        assert layout.size == size


@pytest.mark.parametrize("find, template, same", [
    (rb"(\d+)@old\.com", rb"\1@new.org", True),
    (rb"(\d{4})-(\d\d)-(\d\d)", rb"\3.\2.\1", True),
    (rb"(?P<x>a+)-(b)", rb"\g<x>+=", True),      # (b) left out: fixed width, counted as rest
    (rb"(\d+)@old\.com", rb"\1@new.orgx", False),
    (rb"(\d+)@old\.com", rb"\1\1@new.org", False),  # a group twice
    (rb"((a+)b)", rb"\2b", False),                   # a group below the top level
    (rb"(a+)|b", rb"\1", False),                     # alternation: the group may not take part
    (rb"a+", rb"a", False),
    (rb"ab", rb"\g<0>", False),
])
def test_same_length_regex_templates(find, template, same):
    assert Replace(find, template, regex=True).same_length is same


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=same_length_patterns(),
       data=st.lists(st.sampled_from(ALPHABET), max_size=40).map(bytes))
def test_same_length_means_every_match_keeps_its_length(case, data):
    """Same length is claimed exactly when the literal is as long as the fixed middle, and
    then (workers write straight into the new file at the old offsets) every match's
    replacement is as long as the match."""
    find, template, same = case
    edit = Replace(find.encode("latin-1"), template.encode(), regex=True)
    assert edit.same_length is same
    if same:
        assert edit.pattern is not None
        for match in edit.pattern.finditer(data):
            assert len(match.expand(edit.replace)) == match.end() - match.start()
