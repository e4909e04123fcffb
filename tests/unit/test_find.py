"""``find_all``, the literal search of the sparse fast path: libc ``memmem`` (GIL-free) where
there is one, ``bytes.find`` elsewhere; both must find exactly what ``bytes.replace`` replaces."""

from __future__ import annotations

import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import airflow_bigfile.io.oscompat as oscompat
from airflow_bigfile.io.oscompat import find_all


def expected(buf: bytes, sub: bytes, start: int, end: int, limit: int) -> list[int] | None:
    hits, i = [], buf.find(sub, start, end)
    while i >= 0:
        hits.append(i)
        i = buf.find(sub, i + len(sub), end)
    return None if len(hits) > limit else hits


@pytest.fixture(params=["memmem", "bytes.find"])
def search(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(oscompat, "_memmem", None if request.param == "memmem" else False)
    return request.param


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # the same search each
@given(data=st.binary(max_size=300).map(lambda b: bytes(x % 3 + 97 for x in b)),
       sub=st.sampled_from([b"a", b"aa", b"ab", b"abab", b"aba", b"cab", b"abcabc"]),
       cut=st.tuples(st.integers(0, 300), st.integers(0, 300)),
       limit=st.integers(0, 40), mutable=st.booleans())
def test_matches_bytes_find(search: str, data: bytes, sub: bytes, cut: tuple[int, int],
                            limit: int, mutable: bool) -> None:
    start, end = min(cut[0], len(data)), min(max(cut), len(data))
    buf = bytearray(data) if mutable else data
    assert find_all(buf, sub, start, end, limit) == expected(data, sub, start, end, limit)


def test_self_overlapping_runs_count_like_replace(search: str) -> None:
    buf = bytearray(b"xaaaaay" * 3)
    hits = find_all(buf, b"aa", 0, len(buf), 100)
    assert hits == [1, 3, 8, 10, 15, 17]
    assert len(hits) == bytes(buf).count(b"aa")
    assert find_all(buf, b"aa", 0, len(buf), 5) is None
    if search == "memmem" and sys.platform.startswith("linux"):
        assert oscompat._memmem, "glibc has memmem: the GIL-free search must be the one used"


def test_the_buffer_is_released_after_the_search() -> None:
    """The ctypes view pins a bytearray only while searching: it can grow afterwards."""
    buf = bytearray(b"abc" * 10)
    find_all(buf, b"c", 0, len(buf), 100)
    buf += b"more"
    assert buf.endswith(b"more")
