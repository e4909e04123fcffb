"""The benchmark data: CSV files generated here, sparse files, patch lists and payloads, and
the fresh copy every measured command starts from.

The CSV has 100-byte lines, each with an e-mail like ``user0000000042@old.com`` (dense), and
a variant where only one line per 10 MB holds ``@old.com`` (sparse); both are written as
repeated 1 MB / 10 MB blocks and reused while their stamp file says they are complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import subprocess
import time
from pathlib import Path

from bench.common import human, log

LINE = 100                      # bytes per CSV line
DENSE_BLOCK_LINES = 10_000      # 1 MB block
SPARSE_BLOCK_LINES = 100_000    # 10 MB block with one match
DATA_VERSION = "v1"
HOLE_DATA, HOLE_EVERY = 1 << 20, 64 << 20  # the sparse file: 1 MiB of data per 64 MiB
PATCHES = 10_000
PATCH_LEN = 8


def dense_line(i: int, domain: str = "old.com") -> bytes:
    """Line ``i`` of the CSV, an e-mail at ``domain``, padded to :data:`LINE` bytes."""
    head = f"{i:010d},user{i:010d}@{domain},Jane Q. Example,2024-01-{1 + i % 28:02d},"
    tail = f"{(i * 7919) % 1000000 / 100:.2f},active"
    line = (head + tail).ljust(LINE - 1, "x") + "\n"
    assert len(line) == LINE, line
    return line.encode()


def make_block(lines: int, *, sparse: bool) -> bytes:
    """``lines`` CSV lines, all at ``old.com`` or (``sparse``) only the middle one."""
    if sparse:
        rows = [dense_line(i, "old.com" if i == lines // 2 else "mailbox.example")
                for i in range(lines)]
    else:
        rows = [dense_line(i) for i in range(lines)]
    return b"".join(rows)


def generate(path: Path, size: int, *, sparse: bool) -> Path:
    """``path`` holding ``size // 100`` lines, written as repeated blocks; reused if present."""
    stamp = path.with_name(path.name + ".ok")
    want = size - size % LINE
    if path.exists() and stamp.exists() and stamp.read_text() == f"{DATA_VERSION} {want}":
        return path
    t0 = time.perf_counter()
    block = make_block(SPARSE_BLOCK_LINES if sparse else DENSE_BLOCK_LINES, sparse=sparse)
    remove(stamp)
    with open(path, "wb") as f:
        left = want
        while left >= len(block):
            f.write(block)
            left -= len(block)
        f.write(block[:left])
    os.sync()
    stamp.write_text(f"{DATA_VERSION} {want}")
    log(f"generated {path.name} ({human(want)}) in {time.perf_counter() - t0:.1f} s")
    return path


def holes_file(folder: Path, size: int) -> Path:
    """A sparse file of ``size`` bytes: :data:`HOLE_DATA` random bytes every
    :data:`HOLE_EVERY`, holes between; reused if present."""
    path = folder / f"holes-{size}.bin"
    if not path.exists():
        chunk = random.Random(size).randbytes(HOLE_DATA)
        with open(path, "wb") as f:
            for at in range(0, size, HOLE_EVERY):
                f.seek(at)
                f.write(chunk[:size - at])
            f.truncate(size)
    return path


def patch_edits(folder: Path, size: int) -> Path:
    """An edits file of :data:`PATCHES` random :data:`PATCH_LEN`-byte patches, sorted and
    apart, inside a file of ``size`` bytes; reused if present."""
    path = folder / f"patches-{size}.json"
    if not path.exists():
        rng = random.Random(size)
        slots = (size - PATCH_LEN) // 16
        offsets = sorted(s * 16 + rng.randrange(8) for s in rng.sample(range(slots), PATCHES))
        edits = [{"op": "patch", "offset": o, "data_hex": rng.randbytes(PATCH_LEN).hex()}
                 for o in offsets]
        path.write_text(json.dumps(edits))
    return path


def payload_file(folder: Path, size: int) -> Path:
    """``size`` random bytes for ``--data-file``; reused if present."""
    path = folder / f"payload-{size}.bin"
    if not path.exists() or path.stat().st_size != size:
        block = random.Random(size).randbytes(1 << 20)
        with open(path, "wb") as f:
            for at in range(0, size, len(block)):
                f.write(block[:size - at])
    return path


def sh(*cmd: str) -> None:
    """Run ``cmd``; fail on a non-zero exit."""
    subprocess.run(cmd, check=True, stdin=subprocess.DEVNULL)


def fresh_copy(src: Path, dst: Path) -> None:
    """A fresh copy of ``src`` at ``dst``, flushed and in the page cache (not timed), then
    as much memory freed as the next tool needs for its output (see :func:`free_warm`)."""
    remove(dst)
    sh("cp", "--reflink=never", str(src), str(dst))
    os.sync()
    with open(os.devnull, "wb") as null:
        subprocess.run(["cat", str(dst)], stdout=null, check=True)
    free_warm(dst.with_name(dst.name + ".ballast"), src.stat().st_size)


def free_warm(path: Path, size: int) -> None:
    """Write ``size`` bytes to a file and delete it before it reaches the disk, so the next
    tool finds that much recently used free memory: on a virtual machine, memory the guest
    has not used lately faults in slowly (bench/notes.md), and whichever tool ran right
    after another one freed memory would otherwise get warm pages and the others cold ones."""
    block = bytes(8 << 20)
    with open(path, "wb") as f:
        for _ in range(0, size, len(block)):
            f.write(block)
    path.unlink()


def remove(*paths: Path) -> None:
    """Delete each of ``paths`` that exists."""
    for p in paths:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def identical(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` hold the same bytes (``cmp``)."""
    return subprocess.run(["cmp", "-s", str(a), str(b)]).returncode == 0
