"""The C kernel of literal replaces (``_memreplace``) against ``bytes.replace`` and
``bytes.count``: every function, on random buffers and patterns over a few symbols (so
self-overlapping runs such as ``aa`` in ``aaaa`` are common), through every kind of buffer
the engine hands it; its run search against ``bytes.translate`` and ``bytes.find``; and it
lets other threads run while it works."""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_bigfile.patch import _memreplace
from airflow_bigfile.patch.scan import replace_all
from tests.gil import assert_releases_the_gil

SYMBOLS = b"ab\x80\xff"  # bytes >= 0x80 too: nothing may treat them as signed
TEXT = st.binary(max_size=120).map(lambda b: bytes(SYMBOLS[x % 4] for x in b))
FIND = st.one_of(st.sampled_from([b"a", b"aa", b"aaa", b"ab", b"abab", b"aba", b"\x80\xff",
                                  b"\xff\xff", b"a" * 200]),
                 st.binary(min_size=1, max_size=6).map(lambda b: bytes(SYMBOLS[x % 4] for x in b)))
REPLACE = st.binary(max_size=6).map(lambda b: bytes(SYMBOLS[x % 4] for x in b))


def occurrences(data: bytes, find: bytes) -> list[int]:
    """Where ``data.replace(find, ...)`` replaces, by ``bytes.find``."""
    hits, i = [], data.find(find)
    while i >= 0:
        hits.append(i)
        i = data.find(find, i + len(find))
    return hits


def views(data: bytes, skip: int) -> list[object]:
    """``data`` as each kind of buffer the engine passes, the last ones as slices that start
    ``skip`` bytes into a larger buffer (odd offsets included)."""
    padded = b"\xff" * skip + data + b"a"
    return [data, bytearray(data), memoryview(data), pa.py_buffer(data),
            memoryview(bytearray(padded))[skip:skip + len(data)],
            memoryview(padded)[skip:skip + len(data)]]


@settings(max_examples=500, deadline=None)
@given(data=TEXT, find=FIND, skip=st.integers(0, 9))
def test_count_and_find_all_are_bytes_counts(data: bytes, find: bytes, skip: int) -> None:
    hits = occurrences(data, find)
    assert len(hits) == data.count(find)
    for buf in views(data, skip):
        assert _memreplace.count(buf, find) == len(hits)
        assert _memreplace.find_all(buf, find, len(hits)) == hits
        assert _memreplace.find_all(buf, find, len(hits) + 5) == hits
        if hits:  # one match more than the limit allows
            assert _memreplace.find_all(buf, find, len(hits) - 1) is None


@settings(max_examples=500, deadline=None)
@given(data=TEXT, find=FIND, replace=REPLACE, skip=st.integers(0, 9))
def test_replace_is_bytes_replace(data: bytes, find: bytes, replace: bytes, skip: int) -> None:
    for buf in views(data, skip):
        out, count = _memreplace.replace(buf, find, replace)
        assert type(out) is bytes
        assert (out, count) == (data.replace(find, replace), data.count(find))


@settings(max_examples=500, deadline=None)
@given(data=TEXT, find=FIND, fill=REPLACE, skip=st.integers(0, 9))
def test_replace_inplace_is_bytes_replace(data: bytes, find: bytes, fill: bytes,
                                          skip: int) -> None:
    replace = (fill * len(find))[:len(find)] if fill else find[::-1]
    whole = bytearray(b"\xff" * skip + data + b"a")
    for buf in (bytearray(data), memoryview(bytearray(data)),
                memoryview(whole)[skip:skip + len(data)]):
        assert _memreplace.replace_inplace(buf, find, replace) == data.count(find)
        assert bytes(buf) == data.replace(find, replace)
    assert whole[:skip] + whole[-1:] == b"\xff" * skip + b"a", "bytes outside the slice"


@settings(max_examples=300, deadline=None)
@given(data=TEXT, find=FIND, replace=REPLACE, cut=st.tuples(st.integers(0, 130),
                                                             st.integers(0, 130)))
def test_replace_all_of_a_segment(data: bytes, find: bytes, replace: bytes,
                                  cut: tuple[int, int]) -> None:
    """The patcher's dense path: a segment of its window replaced, in place when the lengths
    agree, the bytes around the segment untouched."""
    start, end = min(cut[0], len(data)), min(max(cut), len(data))
    buf = bytearray(data)
    out, count = replace_all(buf, start, end, find, replace)
    assert bytes(out) == data[start:end].replace(find, replace)
    assert count == data[start:end].count(find)
    assert buf[:start] == data[:start] and buf[end:] == data[end:]


@pytest.mark.parametrize(("data", "find", "replace", "expected", "count"), [
    pytest.param(b"aaaa", b"aa", b"bb", b"bbbb", 2, id="self-overlapping"),
    pytest.param(b"aaaaa", b"aa", b"b", b"bba", 2, id="odd run"),
    pytest.param(b"ababab", b"abab", b"x", b"xab", 1, id="overlap of a longer pattern"),
    pytest.param(b"ab", b"abc", b"x", b"ab", 0, id="pattern longer than the buffer"),
    pytest.param(b"", b"a", b"b", b"", 0, id="empty buffer"),
    pytest.param(b"abxab", b"ab", b"yyy", b"yyyxyyy", 2, id="matches at both ends"),
    pytest.param(b"\xff\x80\xff\x80", b"\x80\xff", b"", b"\xff\x80", 1, id="high bytes"),
])
def test_examples(data: bytes, find: bytes, replace: bytes, expected: bytes, count: int
                  ) -> None:
    assert data.replace(find, replace) == expected  # the cases say what bytes.replace does
    assert _memreplace.replace(data, find, replace) == (expected, count)
    assert _memreplace.count(data, find) == count
    if len(find) == len(replace):
        buf = bytearray(data)
        assert _memreplace.replace_inplace(buf, find, replace) == count
        assert buf == expected


def test_near_misses_hand_the_search_to_memmem() -> None:
    """The search looks for the byte of ``find`` rarest in the buffer's first 4 KiB, here an
    ``a`` of a long run that fails only at the ``b`` in the middle: after enough misses it goes
    on with memmem, and the matches before and after that switch are all found."""
    find = b"a" * 2000 + b"b" + b"a" * 2000
    data = b"b" * 4096 + find + b"a" * (1 << 20) + find + b"a" + find + b"a" * 3000
    hits = occurrences(data, find)
    assert len(hits) == 3
    assert _memreplace.count(data, find) == 3
    assert _memreplace.find_all(data, find, 3) == hits
    assert _memreplace.replace(data, find, b"x") == (data.replace(find, b"x"), 3)
    buf = bytearray(data)
    assert _memreplace.replace_inplace(buf, find, find.swapcase()) == 3
    assert buf == data.replace(find, find.swapcase())


@settings(max_examples=500, deadline=None)
@given(data=TEXT, members=st.sets(st.sampled_from(list(SYMBOLS))), length=st.integers(0, 12),
       skip=st.integers(0, 9))
def test_has_run_is_translate_then_find(data: bytes, members: set[int], length: int,
                                        skip: int) -> None:
    table = bytes(1 if b in members else 0 for b in range(256))
    expected = data.translate(table).find(b"\x01" * length) >= 0
    for buf in views(data, skip):
        assert _memreplace.has_run(buf, table, length) is expected


@pytest.mark.parametrize(("data", "length", "expected"), [
    (b"ab12345c", 5, True), (b"ab1234c5", 5, False), (b"12345", 5, True), (b"1234", 5, False),
    (b"", 1, False), (b"", 0, True), (b"x", -1, True),
    (b"9" * 4095 + b"x" + b"9" * 4096, 4096, True),
])
def test_has_run_examples(data: bytes, length: int, expected: bool) -> None:
    digits = bytes(1 if 0x30 <= b <= 0x39 else 0 for b in range(256))
    assert _memreplace.has_run(data, digits, length) is expected


def test_read_only_buffers_are_refused_for_in_place() -> None:
    for buf in (b"abab", memoryview(b"abab"), pa.py_buffer(b"abab"),
                memoryview(bytearray(b"abab")).toreadonly()):
        with pytest.raises(TypeError, match="read-write bytes-like object"):
            _memreplace.replace_inplace(buf, b"a", b"b")


def test_bad_arguments_are_clear_errors() -> None:
    buf = bytearray(b"abab")
    for call in (lambda: _memreplace.count(buf, b""),
                 lambda: _memreplace.find_all(buf, b"", 3),
                 lambda: _memreplace.replace(buf, b"", b"x"),
                 lambda: _memreplace.replace_inplace(buf, b"", b"")):
        with pytest.raises(ValueError, match="find must not be empty"):
            call()
    with pytest.raises(ValueError, match=r"same length \(2 and 3 bytes\)"):
        _memreplace.replace_inplace(buf, b"ab", b"abc")
    with pytest.raises(ValueError, match="must not share memory"):
        _memreplace.replace_inplace(buf, memoryview(buf)[:1], b"b")
    with pytest.raises(ValueError, match="limit must be >= 0"):
        _memreplace.find_all(buf, b"a", -1)
    with pytest.raises(TypeError, match="bytes-like object is required"):
        _memreplace.count("abab", b"a")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="members must be 256 bytes, not 255"):
        _memreplace.has_run(buf, bytes(255), 1)
    assert buf == b"abab"


def test_a_held_bytearray_cannot_be_resized_and_is_free_afterwards() -> None:
    buf = bytearray(b"abc" * 10)
    assert _memreplace.replace_inplace(buf, b"c", b"d") == 10
    buf += b"more"  # the kernel released its hold on the buffer
    assert buf.endswith(b"more")


def _long_call(kind: str) -> Callable[[], object]:
    """A kernel call that takes tens of milliseconds, its data made beforehand."""
    if kind == "replace":
        emails = b"user@old.com," * (3 << 20)
        return lambda: _memreplace.replace(emails, b"@old.com", b"@new.example.org")
    # one window, the whole buffer, every byte a member: read through to its first byte
    run, only_a = b"a" * (64 << 20), bytes(97) + b"\x01" + bytes(158)
    return lambda: _memreplace.has_run(run, only_a, len(run))


@pytest.mark.parametrize("kind", ["replace", "has_run"])
def test_the_kernel_runs_without_the_gil(kind: str) -> None:
    assert_releases_the_gil(_long_call(kind))
