"""``max_match`` errors do not depend on the shard size.

A regex match longer than ``max_match`` is an error, never a silent difference from
``re.sub`` on the whole file: at every shard size the engine either refuses the edit naming
``max_match`` (file unchanged) or writes exactly what ``re.sub`` gives. A pattern whose
shortest match is longer than ``max_match`` is refused before any I/O.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_bigfile import Replace, edit_file
from airflow_bigfile.exceptions import PatternError

ISSUE_CASES = [
    pytest.param(b"x------------------------------y\n", rb"x.{30}y", id="dot-run"),
    pytest.param(b"ab" * 20, rb"(?:ab)+$", id="dollar-at-cut"),
    pytest.param(b"a-b" + b"-" * 20 + b"b\n", rb"a.*b", id="greedy-shorter-in-window"),
    pytest.param(b"z 123456789012@old.com\n", rb"(\d+)@old\.com", id="digits"),
]


@pytest.mark.parametrize("data, pattern", ISSUE_CASES)
def test_longer_than_max_match_is_an_error_at_every_shard_size(tmp_path, data, pattern):
    path = tmp_path / "f"
    path.write_bytes(data)
    assert any(len(m.group()) > 8 for m in re.finditer(pattern, data))
    for shard_size in range(1, len(data) + 2):
        with pytest.raises(PatternError, match="max_match=8"):
            edit_file(str(path), [Replace(pattern, b"X", regex=True, max_match=8)],
                      shard_size=shard_size, align=1, workers=1)
        assert path.read_bytes() == data
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_shortest_match_longer_than_max_match_is_refused_before_io(tmp_path):
    with pytest.raises(PatternError, match=r"at least 32 bytes.*max_match=8"):
        Replace(rb"x.{30}y", b"X", regex=True, max_match=8)
    with pytest.raises(PatternError, match="max_match=8"):
        edit_file(str(tmp_path / "missing"),
                  [{"op": "replace", "find": "x.{30}y", "replace": "X", "regex": True,
                    "max_match": 8}])
    assert Replace(rb"x.{6}y", b"X", regex=True, max_match=8).max_match == 8


# -- random patterns and data ---------------------------------------------------------------

ATOMS = ["a", "b", "1", ".", "[ab]", "[^a]", r"\d", r"\s", r"\n", r"\x80"]
QUANTIFIERS = ["", "", "*", "+", "?", "{1,3}", "{2}", "*?", "+?", "??"]


def patterns() -> st.SearchStrategy[str]:
    atom = st.sampled_from(ATOMS)

    def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        seq = st.lists(inner, min_size=1, max_size=3).map("".join)
        return st.one_of(
            st.tuples(seq, st.sampled_from(QUANTIFIERS)).map(lambda t: f"(?:{t[0]}){t[1]}"),
            st.tuples(seq, seq).map(lambda t: f"(?:{t[0]}|{t[1]})"),
            seq.map(lambda s: f"({s})"),
            st.tuples(inner, st.sampled_from(["$", r"\b", "^", r"\Z"])).map("".join),
        )

    body = st.recursive(atom, extend, max_leaves=6)
    return st.tuples(st.sampled_from(["", "(?s)", "(?m)", "(?i)"]), body).map("".join)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pattern=patterns(), data=st.lists(st.sampled_from(b"ab1 \n\x80A"), max_size=40).map(bytes),
       max_match=st.integers(1, 8), shard_size=st.integers(1, 44))
def test_random_patterns_error_or_equal_re_sub(tmp_path_factory, pattern, data, max_match,
                                               shard_size):
    find = pattern.encode("latin-1")
    lengths = [m.end() - m.start() for m in re.finditer(find, data)]
    try:
        edit = Replace(find, b"<\\g<0>>", regex=True, max_match=max_match)
    except PatternError:
        assert all(n > max_match for n in lengths)
        return
    path = tmp_path_factory.mktemp("random") / "f"
    path.write_bytes(data)
    try:
        edit_file(str(path), [edit], shard_size=shard_size, align=1, workers=1)
    except PatternError as exc:
        assert path.read_bytes() == data
        if "zero bytes" in str(exc):
            assert 0 in lengths
            return
        assert "max_match" in str(exc)
        # a whole-file scan (one shard) errs only for a match that is really too long
        assert shard_size < len(data) or any(n > max_match for n in lengths), exc
        return
    assert path.read_bytes() == re.sub(find, b"<\\g<0>>", data)
    assert all(0 < n <= max_match for n in lengths)
