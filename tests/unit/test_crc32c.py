"""Our CRC32C (``io/_crc32c.c``) against the ``crc32c`` package: on random data at every
alignment and around the lengths where the three-run loops start, continuing from random
CRCs, through each kind of buffer, in its hardware and its table forms; and it lets other
threads run while it works."""

from __future__ import annotations

import os

import crc32c as reference
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_bigfile.io import _crc32c
from airflow_bigfile.io.checksum import crc32c
from tests.gil import assert_releases_the_gil

FORMS = [_crc32c.crc32c, _crc32c.crc32c_tables]


def expected(data: bytes, value: int = 0) -> int:
    return reference.crc32c(data, value=value)


def test_the_check_value() -> None:
    """CRC-32C's published check: the CRC of the nine digits."""
    assert crc32c(b"123456789") == 0xE3069283
    assert _crc32c.crc32c_tables(b"123456789") == 0xE3069283


def test_the_crc_instruction_is_used_where_the_cpu_has_one() -> None:
    """SSE 4.2 on x86-64, CRC on ARMv8 (as /proc/cpuinfo lists the CPU's features)."""
    with open("/proc/cpuinfo") as f:
        features = set(f.read().split())
    assert _crc32c.hardware == int(bool({"sse4_2", "crc32"} & features))


@pytest.mark.parametrize("form", FORMS)
def test_lengths_around_the_runs_at_every_alignment(form) -> None:
    """Every length up to 300, and around one, two and three runs of 256 and of 8192 bytes
    (the three-run loops), each starting at all eight offsets of a word."""
    lengths = [*range(301)] + [n + d for n in (768, 3 * 8192, 6 * 8192 + 768, 1 << 20)
                               for d in (-9, -8, -1, 0, 1, 7, 8, 9)]
    data = os.urandom(max(lengths) + 8)
    for n in lengths:
        for skip in range(8):
            view = memoryview(data)[skip:skip + n]
            assert form(view) == expected(bytes(view)), (n, skip)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=70000), skip=st.integers(0, 7),
       value=st.integers(0, 2**32 - 1))
def test_random_data_continuing_from_a_random_crc(data: bytes, skip: int, value: int) -> None:
    view = memoryview(data)[min(skip, len(data)):]
    want = expected(bytes(view), value)
    assert [form(view, value) for form in FORMS] == [want, want]


@settings(max_examples=100, deadline=None)
@given(data=st.binary(max_size=50000), cut=st.integers(0, 50000))
def test_blocks_chain(data: bytes, cut: int) -> None:
    """The CRC of a whole equals the CRC of its tail continued from its head's."""
    cut = min(cut, len(data))
    assert crc32c(data[cut:], crc32c(data[:cut])) == crc32c(data) == expected(data)


def test_every_kind_of_buffer() -> None:
    data = os.urandom(100_000)
    want = expected(data[3:])
    for buf in (data[3:], bytearray(data)[3:], memoryview(data)[3:],
                memoryview(bytearray(data))[3:], pa.py_buffer(data)[3:]):
        assert crc32c(buf) == want


@pytest.mark.parametrize("value", [-1, 2**32, 2**70, "0", 1.0])
def test_a_bad_starting_crc_is_refused(value: object) -> None:
    for form in FORMS:
        with pytest.raises(ValueError, match="must be an int in 0..2"):
            form(b"abc", value)


@pytest.mark.parametrize("data", ["text", 5, None])
def test_data_that_is_not_a_buffer_is_refused(data: object) -> None:
    with pytest.raises(TypeError):
        _crc32c.crc32c(data)


def test_it_runs_without_the_gil() -> None:
    data = bytes(192 << 20)
    assert_releases_the_gil(lambda: _crc32c.crc32c(data))
