"""The staged shard file (``patch/shardfile.py``): a 72-byte header with its CRC32Cs, then
records (``D`` new bytes, ``C`` runs of the source, ``W`` bytes already in the new file).
Written by :class:`RecordWriter`, read back by :func:`iter_records`; every flipped,
missing or extra byte is refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from airflow_bigfile.exceptions import ShardChecksumError, StagingError
from airflow_bigfile.io.checksum import crc32c
from airflow_bigfile.patch.shardfile import (
    COPY_MIN,
    HEADER_SIZE,
    MAGIC,
    VERSION,
    Placement,
    RecordWriter,
    ShardHeader,
    iter_records,
)

SOURCE = bytes(range(256)) * 64          # 16 KiB of original bytes


def header(**fields: int) -> ShardHeader:
    values = {"index": 3, "job": 0xDEADBEEF, "source_offset": 4096, "source_length": 8192,
              "output_start": 5000, "output_length": 9000, "payload_length": 123,
              "source_crc": 0x1234, "payload_crc": 0x5678}
    return ShardHeader(**{**values, **fields})


# -- the header -------------------------------------------------------------------------------

def test_header_round_trip() -> None:
    raw = header().pack()
    assert len(raw) == HEADER_SIZE == 72
    assert raw[:8] == MAGIC and int.from_bytes(raw[8:10], "little") == VERSION
    assert int.from_bytes(raw[-4:], "little") == crc32c(raw[:-4])
    assert ShardHeader.unpack(raw, "s") == header()
    unchecked = header(written_crcs=False)
    assert ShardHeader.unpack(unchecked.pack(), "s") == unchecked != header()


@pytest.mark.parametrize("at", range(HEADER_SIZE))
def test_any_flipped_header_byte_is_refused(at: int) -> None:
    raw = bytearray(header().pack())
    raw[at] ^= 0x01
    with pytest.raises(ShardChecksumError, match="s: header CRC32C mismatch"):
        ShardHeader.unpack(bytes(raw), "s")


@pytest.mark.parametrize("length", [0, 1, HEADER_SIZE - 1, HEADER_SIZE + 1])
def test_a_header_of_the_wrong_length_is_refused(length: int) -> None:
    raw = (header().pack() * 2)[:length]
    with pytest.raises(StagingError, match="is truncated"):
        ShardHeader.unpack(raw, "s")


def _resealed(head: bytes) -> bytes:
    """``head`` (all but the CRC) with a correct header CRC32C."""
    return head + crc32c(head).to_bytes(4, "little")


def test_bad_magic_and_unknown_version_are_refused_even_with_a_good_crc() -> None:
    raw = header().pack()[:-4]
    with pytest.raises(StagingError, match="not a bigfile shard"):
        ShardHeader.unpack(_resealed(b"NOTSHARD" + raw[8:]), "s")
    later = raw[:8] + (VERSION + 1).to_bytes(2, "little") + raw[10:]
    with pytest.raises(StagingError, match=f"format version {VERSION + 1}"):
        ShardHeader.unpack(_resealed(later), "s")


# -- records --------------------------------------------------------------------------------

class Staged:
    """One staged shard file under ``folder``, written by a :class:`RecordWriter`."""

    def __init__(self, folder: Path, place: Placement | None = None) -> None:
        self.path = folder / "shard-00003"
        self.opened = 0

        def open_sink():
            self.opened += 1
            return open(self.path, "wb")

        self.writer = RecordWriter(open_sink, place)

    def finish(self) -> ShardHeader | None:
        return self.writer.finish(lambda w: header(
            output_length=w.output_length, payload_length=w.payload_length,
            payload_crc=w.payload_crc))

    def records(self, head: ShardHeader) -> list[tuple[str, int, object]]:
        with open(self.path, "rb") as f:
            assert ShardHeader.unpack(f.read(HEADER_SIZE), "s") == head
            return [(tag, n, bytes(v) if tag == "D" else v)
                    for tag, n, v in iter_records(f, head, "s", chunk=1000)]


def rebuild(records: list[tuple[str, int, object]], new_file: bytes = b"") -> bytes:
    """The shard's output from its records: source runs, new bytes, bytes in the new file."""
    out = b""
    for tag, n, value in records:
        if tag == "C":
            out += SOURCE[value:value + n]
        elif tag == "D":
            out += value
        else:
            offset, crc = value
            assert crc == crc32c(new_file[offset:offset + n])
            out += new_file[offset:offset + n]
    return out


def test_an_unchanged_shard_stages_nothing(tmp_path: Path) -> None:
    staged = Staged(tmp_path)
    staged.writer.original(0, 8000)
    staged.writer.original(8000, 8000)
    assert staged.finish() is None
    assert staged.opened == 0 and not staged.path.exists()


def test_records_rebuild_the_output(tmp_path: Path) -> None:
    staged = Staged(tmp_path)
    w = staged.writer
    w.original(0, 6000)                                    # long run: a copy record
    w.new(b"NEW")
    w.original(6010, 100, memoryview(SOURCE)[6010:6110])   # short run after a change: verbatim
    w.new(b"")                                             # a delete leaves nothing new
    w.original(6200, 9000)
    head = staged.finish()
    assert head is not None and staged.path.stat().st_size == HEADER_SIZE + head.payload_length
    expected = SOURCE[:6000] + b"NEW" + SOURCE[6010:6110] + SOURCE[6200:15200]
    records = staged.records(head)
    assert rebuild(records) == expected and head.output_length == len(expected)
    assert [tag for tag, _, _ in records].count("C") == 2  # the runs longer than COPY_MIN
    assert 100 < COPY_MIN < 6000


def test_everything_deleted_is_a_changed_empty_shard(tmp_path: Path) -> None:
    staged = Staged(tmp_path)
    staged.writer.new(b"")
    head = staged.finish()
    assert head is not None and head.output_length == 0 and head.payload_length == 0
    assert staged.records(head) == []


def test_placed_bytes_go_into_the_new_file_and_only_their_crc_is_staged(tmp_path: Path
                                                                        ) -> None:
    fd = os.open(tmp_path / "new-file", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        staged = Staged(tmp_path, Placement(fd, start=100, limit=100 + 5000))
        staged.writer.original(0, 50, memoryview(SOURCE)[:50])
        staged.writer.new(b"x" * 6000)                     # crosses the placement's limit
        head = staged.finish()
        new_file = os.pread(fd, 10_000, 0)
    finally:
        os.close(fd)
    assert head is not None
    records = staged.records(head)
    assert [tag for tag, _, _ in records] == ["C", "W", "D", "D"]   # D read in 1000s
    assert [n for tag, n, _ in records if tag == "W"] == [5100 - 150]  # up to the limit
    assert rebuild(records, new_file) == SOURCE[:50] + b"x" * 6000
    assert head.payload_length < 6000 - 4950 + 64          # the written bytes are not staged


def _staged_example(folder: Path) -> tuple[Staged, ShardHeader, bytes]:
    staged = Staged(folder)
    staged.writer.original(0, 5000)
    staged.writer.new(b"patched")
    staged.writer.original(5007, 3000)
    head = staged.finish()
    assert head is not None
    return staged, head, staged.path.read_bytes()


def test_every_flipped_payload_byte_is_refused(tmp_path: Path) -> None:
    staged, head, raw = _staged_example(tmp_path)
    for at in range(HEADER_SIZE, len(raw)):
        broken = bytearray(raw)
        broken[at] ^= 0x20
        staged.path.write_bytes(broken)
        with pytest.raises(StagingError):                  # ShardChecksumError is one
            staged.records(head)


def test_a_truncated_or_padded_payload_is_refused(tmp_path: Path) -> None:
    staged, head, raw = _staged_example(tmp_path)
    for cut in (len(raw) - 1, HEADER_SIZE + 3, HEADER_SIZE):
        staged.path.write_bytes(raw[:cut])
        with pytest.raises(StagingError, match="truncated"):
            staged.records(head)
    longer = header(output_length=head.output_length, payload_length=head.payload_length + 9,
                    payload_crc=head.payload_crc)
    staged.path.write_bytes(longer.pack() + raw[HEADER_SIZE:] + b"D" + bytes(8))
    with pytest.raises(StagingError, match="payload CRC32C mismatch"):
        staged.records(longer)


def test_records_that_disagree_with_the_header_are_refused(tmp_path: Path) -> None:
    staged, head, raw = _staged_example(tmp_path)
    wrong = header(output_length=head.output_length + 1, payload_length=head.payload_length,
                   payload_crc=head.payload_crc)
    staged.path.write_bytes(wrong.pack() + raw[HEADER_SIZE:])
    with pytest.raises(StagingError, match="header says"):
        staged.records(wrong)
