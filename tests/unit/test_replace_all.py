"""``replace_all``, the dense literal path: pyarrow's split at every match joined with the
replacement must give exactly ``bytes.replace`` and ``bytes.count``, self-overlapping finds
included."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_bigfile.patch.scan import replace_all

ABC = st.binary(max_size=200).map(lambda b: bytes(x % 3 + 97 for x in b))


@settings(max_examples=400, deadline=None)
@given(data=ABC, find=st.sampled_from([b"a", b"aa", b"ab", b"abab", b"aba", b"cab"]),
       replace=st.sampled_from([b"", b"b", b"ba", b"xy", b"aaa", b"cab"]),
       cut=st.tuples(st.integers(0, 200), st.integers(0, 200)))
def test_matches_bytes_replace(data: bytes, find: bytes, replace: bytes,
                               cut: tuple[int, int]) -> None:
    start, end = min(cut[0], len(data)), min(max(cut), len(data))
    out, count = replace_all(bytearray(data), start, end, find, replace)
    assert bytes(out) == data[start:end].replace(find, replace)
    assert count == data[start:end].count(find)


def test_a_replace_by_itself_counts_and_returns_the_bytes() -> None:
    buf = bytearray(b"xaaaaay")
    out, count = replace_all(buf, 0, len(buf), b"aa", b"aa")
    assert (bytes(out), count) == (b"xaaaaay", 2)
