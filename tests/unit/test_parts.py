"""Multipart part sizing (``targets/parts.py``) without a store: :class:`Parts` is given
``read``, ``upload`` and ``copy`` functions over an old object held in memory, and the parts
it makes must rebuild the new object within S3's rules (every part but the last at least
5 MiB, none above 5 GiB, at most 10,000), sending about one minimum part for a small
change."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_bigfile.exceptions import StagingError
from airflow_bigfile.targets.parts import MAX_PART, MAX_PARTS, MIN_PART, Parts

MiB = 1 << 20
DATA_PART = 16 * MiB


class MemoryUpload:
    """A multipart upload kept in memory: what each part holds, in part-number order."""

    def __init__(self, old: bytes) -> None:
        self.old = old
        self.parts: dict[int, tuple[str, int, bytes]] = {}   # number -> (kind, size, body)
        self.read_bytes = 0

    def read(self, offset: int, length: int) -> bytes:
        self.read_bytes += length
        return self.old[offset:offset + length]

    def upload(self, number: int, body: bytes) -> str:
        self.parts[number] = ("upload", len(body), body)
        return f"etag-{number}"

    def copy(self, number: int, offset: int, length: int) -> str:
        assert offset >= 0 and length > 0 and offset + length <= len(self.old)
        self.parts[number] = ("copy", length, self.old[offset:offset + length])
        return f"etag-{number}"

    def writer(self, part_size: int = DATA_PART) -> Parts:
        return Parts(part_size, read=self.read, upload=self.upload, copy=self.copy)

    def check(self, parts: Parts, expected: bytes) -> None:
        """The parts, in order, are ``expected``, numbered 1.., and sized by S3's rules."""
        numbers = [p["PartNumber"] for p in parts.done]
        assert numbers == list(range(1, len(numbers) + 1)) == sorted(self.parts)
        assert [p["ETag"] for p in parts.done] == [f"etag-{n}" for n in numbers]
        assert b"".join(self.parts[n][2] for n in numbers) == expected
        sizes = [self.parts[n][1] for n in numbers]
        assert all(MIN_PART <= size <= MAX_PART for size in sizes[:-1]), sizes
        assert parts.sent == sum(s for kind, s, _ in self.parts.values() if kind == "upload")


def old_object(size: int) -> bytes:
    return bytes(range(251)) * (size // 251) + bytes(size % 251)


def test_an_unchanged_object_is_copied_not_sent() -> None:
    old = old_object(12 * MiB)
    store = MemoryUpload(old)
    parts = store.writer()
    parts.copy(0, 7 * MiB)
    parts.copy(7 * MiB, 5 * MiB)                     # contiguous: one run
    parts.finish()
    store.check(parts, old)
    assert parts.sent == 0 and store.read_bytes == 0 and len(parts.done) == 1


def test_a_one_byte_patch_sends_about_one_minimum_part() -> None:
    old = old_object(64 * MiB)
    store = MemoryUpload(old)
    parts = store.writer()
    at = 40 * MiB + 1
    parts.copy(0, at)
    parts.data(b"!")
    parts.copy(at + 1, len(old) - at - 1)
    parts.finish()
    store.check(parts, old[:at] + b"!" + old[at + 1:])
    assert parts.sent == MIN_PART                    # the byte, topped up to a minimum part
    assert store.read_bytes == MIN_PART - 1
    assert [kind for kind, _, _ in store.parts.values()] == ["copy", "upload", "copy"]


def test_a_short_tail_is_the_last_part() -> None:
    old = old_object(8 * MiB)
    store = MemoryUpload(old)
    parts = store.writer()
    parts.copy(0, 6 * MiB)
    parts.data(b"tail")
    parts.finish()
    store.check(parts, old[:6 * MiB] + b"tail")
    assert [size for _, size, _ in store.parts.values()] == [6 * MiB, 4]


def test_a_short_copy_run_is_read_and_sent() -> None:
    old = old_object(10 * MiB)
    store = MemoryUpload(old)
    parts = store.writer()
    parts.copy(MiB, 3 * MiB)                         # below the minimum: no copy part
    parts.data(b"new")
    parts.finish()
    store.check(parts, old[MiB:4 * MiB] + b"new")
    assert len(parts.done) == 1 and store.read_bytes == 3 * MiB


def test_new_bytes_are_sent_in_parts_of_the_part_size() -> None:
    store = MemoryUpload(b"")
    parts = store.writer(part_size=6 * MiB)
    for _ in range(13):
        parts.data(bytes(MiB))
    parts.finish()
    store.check(parts, bytes(13 * MiB))
    assert [size for _, size, _ in store.parts.values()] == [6 * MiB, 6 * MiB, MiB]


def test_an_empty_object_is_one_empty_part() -> None:
    store = MemoryUpload(b"")
    parts = store.writer()
    parts.finish()
    store.check(parts, b"")
    assert len(parts.done) == 1 and parts.sent == 0


def test_a_copy_run_longer_than_the_largest_part_is_split_evenly() -> None:
    """An 11 GiB unchanged run: three copy parts of about 3.7 GiB (no byte is read)."""
    length = 11 << 30
    sizes: list[int] = []
    parts = Parts(DATA_PART, read=lambda offset, n: pytest.fail("nothing to read"),
                  upload=lambda number, body: pytest.fail("nothing to send"),
                  copy=lambda number, offset, n: sizes.append(n) or f"etag-{number}")
    parts.copy(0, length)
    parts.finish()
    assert len(sizes) == 3 and sum(sizes) == length and max(sizes) <= MAX_PART
    assert max(sizes) - min(sizes) <= 1


def test_more_than_10000_parts_is_refused() -> None:
    copies: list[int] = []
    parts = Parts(DATA_PART, read=lambda offset, n: pytest.fail("nothing to read"),
                  upload=lambda number, body: pytest.fail("nothing to send"),
                  copy=lambda number, offset, n: copies.append(number) or "etag")
    with pytest.raises(StagingError, match="more than 10,000 parts"):
        for i in range(MAX_PARTS + 1):               # runs that do not join: a part each
            parts.copy(i * 2 * MIN_PART, MIN_PART)
        parts.finish()
    assert copies == list(range(1, MAX_PARTS + 1))


segments = st.lists(st.one_of(
    st.tuples(st.just("copy"), st.integers(0, 20), st.integers(1, 12)),   # MiB, MiB
    st.tuples(st.just("data"), st.integers(0, 20), st.integers(0, 3 * MiB))), max_size=6)


@settings(max_examples=25, deadline=None)
@given(plan=segments)
def test_any_sequence_rebuilds_the_object(plan: list[tuple[str, int, int]]) -> None:
    old = old_object(32 * MiB)
    store = MemoryUpload(old)
    parts = store.writer()
    expected = b""
    for kind, at, n in plan:
        if kind == "copy":
            offset, length = at * MiB, min(n * MiB, len(old) - at * MiB)
            parts.copy(offset, length)
            expected += old[offset:offset + length]
        else:
            piece = bytes([at]) * n
            parts.data(piece)
            expected += piece
    parts.finish()
    store.check(parts, expected)
    new_bytes = sum(n for kind, _, n in plan if kind == "data")
    assert parts.sent <= new_bytes + 2 * MIN_PART * max(1, len(plan))
