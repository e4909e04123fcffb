#!/usr/bin/env python
"""airflow-bigfile benchmark suite: ratios against sed, cp, perl and the raw syscalls.

Run by ``make bench`` (``.venv/bin/python bench/run.py``). Every figure is a median over
``--repeat`` runs, and every ratio compares two tools measured side by side in the same run.

Method
------
* The data are generated here: a CSV of 100-byte lines, each with an e-mail like
  ``user0000000042@old.com`` (dense), and a variant where only one line per 10 MB holds
  ``@old.com`` (sparse). Both are written as repeated 1 MB / 10 MB blocks.
* Each measured command is its own process (the ``bigfile`` CLI, ``sed``, ``perl``, ``cp``
  or ``python -c``), so interpreter start-up and imports count. Each runs on a fresh copy of
  the data: the copy is made with ``cp``, then ``sync`` (so no tool pays for another's
  write-back) and read once with ``cat > /dev/null`` (so all start with a warm page cache);
  none of that is timed. Then a scratch file as large as the data is written and deleted
  (not timed either), so every tool starts with as much recently used free memory as its
  output needs: on a virtual machine, memory the guest has not used lately faults in slowly.
* Each command is forked by a small launcher process (``LAUNCHER``), which times fork to
  exit with ``time.perf_counter`` and takes the peak RSS from the child's ``ru_maxrss``
  (``wait4`` rusage; it covers the child and the children it waited for, e.g. a process
  pool's workers). Not spawned from this process: Linux would charge its size to the child.
* Each of our outputs is compared byte for byte (``cmp``) with the reference tool's output.
* S3: moto's ThreadedMotoServer on 127.0.0.1 behind a small TCP proxy that counts every
  byte the client sends (request lines, headers and bodies), so "bytes sent" is an upper
  bound of what reached the store.
* Azure Blob: Azurite (``make azurite`` installs it) on 127.0.0.1 behind the same proxy: a
  1-byte patch and a 1 MiB append, each counted the same way.

``--quick`` is a smoke run (8 MiB, one repeat) used by the tests.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import os
import platform
import random
import re
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
MB = 1_000_000
LINE = 100                      # bytes per CSV line
DENSE_BLOCK_LINES = 10_000      # 1 MB block
SPARSE_BLOCK_LINES = 100_000    # 10 MB block with one match
DATA_VERSION = "v1"
S3_BUCKET = "bigfile-bench"
AZURE_CONTAINER = "bigfile-bench"
AZURITE = REPO / ".azurite" / "node_modules" / ".bin" / "azurite-blob"
AZURE_ACCOUNT = "devstoreaccount1"      # Azurite's well-known development account and key
AZURE_KEY = ("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/"
             "KBHBeksoGMGw==")
APPEND_SIZE = 1 << 20
DEFAULT_OUT = REPO / "docs" / "benchmarks.md"
# bench/ltm.py writes its own section of the report between these markers
LTM_HEADING = "## Larger than memory (issue 15)"
LTM_START, LTM_END = "<!-- ltm:start -->", "<!-- ltm:end -->"

FIND = "@old.com"
DENSE_REPLACE = "@new.org"              # same length
SPARSE_REPLACE = "@new.example.org"     # length-changing
REGEX_FIND = r"(\d+)@old\.com"
REGEX_REPLACE = r"\1@new.org"
PERL_EXPR = r"s/(\d+)\@old\.com/$1\@new.org/g"
SED_DENSE = r"s/@old\.com/@new\.org/g"
SED_SPARSE = r"s/@old\.com/@new.example.org/g"
PATCHES = 10_000
PATCH_LEN = 8
INSERT_OFFSET = 100
INSERT_DATA = "INSERTED-BY-BIGFILE,"
DELETE_OFFSET, DELETE_LENGTH = 100, 100
PAYLOAD_OFFSET = 4096  # where the --data-file benchmarks patch and insert

# A durable replace of F by a copy of itself (sh -c DURABLE_COPY F F2): copy, fsync, rename
# over F (which frees the old file, as every tool that replaces a file must).
DURABLE_COPY = 'cp --reflink=never "$0" "$1" && sync "$1" && mv "$1" "$0"'
DURABLE = "cp + fsync + mv"
HOLE_DATA, HOLE_EVERY = 1 << 20, 64 << 20  # the sparse-file benchmark: 1 MiB of data per 64 MiB

RAW_PWRITE = (
    "import json, os, sys\n"
    "edits = json.load(open(sys.argv[2]))\n"
    "fd = os.open(sys.argv[1], os.O_WRONLY)\n"
    "for e in edits:\n"
    "    os.pwrite(fd, bytes.fromhex(e['data_hex']), e['offset'])\n"
    "os.fsync(fd)\n"
    "os.close(fd)\n"
)


# ----------------------------------------------------------------------------- helpers

_UNITS = {"": 1, "B": 1, "K": 1 << 10, "KB": 1000, "KIB": 1 << 10, "M": 1 << 20, "MB": MB,
          "MIB": 1 << 20, "G": 1 << 30, "GB": 1000 * MB, "GIB": 1 << 30, "T": 1 << 40,
          "TB": 10**12, "TIB": 1 << 40}


def parse_size(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", text)
    if not m or m.group(2).upper() not in _UNITS:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 1GiB, 512MiB)")
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


def human(n: float) -> str:
    for unit, div in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= div:
            v = n / div
            return f"{v:.0f}{unit}" if v == int(v) else f"{v:.1f}{unit}"
    return f"{int(n)}B"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def bigfile_cmd() -> list[str]:
    """The ``bigfile`` console script beside this interpreter, else the module."""
    script = Path(sys.executable).parent / "bigfile"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from airflow_bigfile.cli.command import main; "
            "sys.exit(main())"]


@dataclass
class Run:
    seconds: float
    rss: int            # bytes
    code: int
    stdout: str
    stderr: str


# Spawns the measured command and writes its wall time, peak RSS and exit code to the
# descriptor named first. A small process of its own, because Linux charges a child's peak
# RSS with the memory of whatever exec'd it: spawned straight from this process (large while
# it runs the S3 server), every command would inherit this process's size in ru_maxrss.
LAUNCHER = (
    "import os, sys, time\n"
    "report = int(sys.argv[1])\n"
    "t0 = time.perf_counter()\n"
    "pid = os.fork()\n"
    "if pid == 0:\n"
    "    os.close(report)\n"
    "    os.execvp(sys.argv[2], sys.argv[2:])\n"
    "_, status, usage = os.wait4(pid, 0)\n"
    "seconds = time.perf_counter() - t0\n"
    "code = os.waitstatus_to_exitcode(status)\n"
    "os.write(report, f'{seconds} {usage.ru_maxrss} {code}'.encode())\n"
)


def run_proc(cmd: list[str], *, env: dict[str, str] | None = None, scratch: Path) -> Run:
    """Run ``cmd`` through :data:`LAUNCHER`: its wall time (fork to exit) and peak RSS."""
    with tempfile.TemporaryFile(dir=scratch) as out, tempfile.TemporaryFile(dir=scratch) as err:
        report_r, report_w = os.pipe()
        with os.fdopen(report_r, "rb") as report:
            try:
                proc = subprocess.Popen(
                    [sys.executable, "-S", "-c", LAUNCHER, str(report_w), *cmd], stdout=out,
                    stderr=err, stdin=subprocess.DEVNULL, env=env, pass_fds=(report_w,))
            finally:
                os.close(report_w)
            text = report.read().decode()
        proc.wait()
        out.seek(0)
        err.seek(0)
        stderr = err.read().decode(errors="replace")
        if not text:
            raise SystemExit(f"could not run {shlex.join(cmd)}: {stderr}")
        seconds, rss_kb, code = text.split()
        return Run(float(seconds), int(rss_kb) * 1024, int(code),
                   out.read().decode(errors="replace"), stderr)


def sh(*cmd: str) -> None:
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
    tool finds that much recently used free memory. On a virtual machine, memory the guest
    has not used lately costs about 2 s/GiB to fault in (the host backs it anew); without
    this, whichever tool ran right after another one freed memory (``cp`` after our run, in
    the first version of this script) got warm pages and the others cold ones."""
    block = bytes(8 << 20)
    with open(path, "wb") as f:
        for _ in range(0, size, len(block)):
            f.write(block)
    path.unlink()


def remove(*paths: Path) -> None:
    for p in paths:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def identical(a: Path, b: Path) -> bool:
    return subprocess.run(["cmp", "-s", str(a), str(b)]).returncode == 0


# ----------------------------------------------------------------------------- data


def dense_line(i: int, domain: str = "old.com") -> bytes:
    head = f"{i:010d},user{i:010d}@{domain},Jane Q. Example,2024-01-{1 + i % 28:02d},"
    tail = f"{(i * 7919) % 1000000 / 100:.2f},active"
    line = (head + tail).ljust(LINE - 1, "x") + "\n"
    assert len(line) == LINE, line
    return line.encode()


def make_block(lines: int, *, sparse: bool) -> bytes:
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


# ----------------------------------------------------------------------------- results


@dataclass
class Series:
    runs: list[Run] = field(default_factory=list)
    identical: list[bool] = field(default_factory=list)
    engine_seconds: list[float] = field(default_factory=list)
    commit_mode: str = ""

    @property
    def median(self) -> float:
        return statistics.median(r.seconds for r in self.runs)

    @property
    def peak_rss(self) -> int:
        return max(r.rss for r in self.runs)


class Results:
    def __init__(self) -> None:
        self.series: dict[tuple[str, int, str], Series] = defaultdict(Series)

    def add(self, bench: str, size: int, tool: str, run: Run, same: bool | None = None) -> None:
        s = self.series[(bench, size, tool)]
        s.runs.append(run)
        if same is not None:
            s.identical.append(same)
        if tool.startswith("bigfile"):
            with contextlib.suppress(ValueError, IndexError):
                info = json.loads(run.stdout.strip().splitlines()[-1])
                s.engine_seconds.append(float(info["seconds"]))
                s.commit_mode = info.get("commit_mode", "")

    def get(self, bench: str, size: int, tool: str) -> Series | None:
        return self.series.get((bench, size, tool))

    def to_json(self) -> list[dict[str, Any]]:
        return [{"bench": b, "size": n, "tool": t, "commit_mode": s.commit_mode,
                 "identical": s.identical, "engine_seconds": s.engine_seconds,
                 "runs": [{"seconds": r.seconds, "rss": r.rss} for r in s.runs]}
                for (b, n, t), s in self.series.items()]

    @classmethod
    def from_json(cls, items: list[dict[str, Any]]) -> Results:
        res = cls()
        for it in items:
            s = res.series[(it["bench"], it["size"], it["tool"])]
            s.runs = [Run(r["seconds"], r["rss"], 0, "", "") for r in it["runs"]]
            s.identical, s.engine_seconds = it["identical"], it["engine_seconds"]
            s.commit_mode = it["commit_mode"]
        return res


# ----------------------------------------------------------------------------- benchmarks


class Bench:
    def __init__(self, args: argparse.Namespace, data_dir: Path) -> None:
        self.args = args
        self.dir = data_dir
        self.results = Results()
        self.big = bigfile_cmd()
        self.s3: dict[str, Any] = {}
        self.azure: dict[str, Any] = {}
        self.holes_info: dict[str, int] = {}

    def ours(self, verb: str, path: Path, *extra: str) -> list[str]:
        return [*self.big, verb, str(path), *extra, "--json", "--no-progress"]

    def timed(self, cmd: list[str], what: str) -> Run:
        run = run_proc(cmd, scratch=self.dir)
        if run.code != 0:
            raise SystemExit(f"{what} failed ({run.code}): {shlex.join(cmd)}\n{run.stderr}")
        return run

    def cmp_or_warn(self, ours: Path, ref: Path, label: str) -> bool:
        same = identical(ours, ref)
        if not same:
            log(f"WARNING: {label}: output differs from the reference")
        return same

    # -- one repeat of every local benchmark at one size

    def dense(self, size: int, src: Path) -> None:
        r = self.results
        ref, out, cpy = (self.dir / n for n in ("ref.csv", "ours.csv", "cp.csv"))
        fresh_copy(src, ref)
        r.add("dense", size, "sed -i", self.timed(["sed", "-i", SED_DENSE, str(ref)], "sed"))
        fresh_copy(src, out)
        run = self.timed(self.ours("replace", out, "--find", FIND, "--replace", DENSE_REPLACE),
                         "bigfile replace")
        r.add("dense", size, "bigfile", run, self.cmp_or_warn(out, ref, "dense replace"))
        remove(ref, out)
        fresh_copy(src, out)
        remove(cpy)
        r.add("dense", size, "cp", self.timed(["cp", str(out), str(cpy)], "cp"))
        self.durable_copy("dense", size, src, out, cpy)
        # insert / delete near the start, checked against the source with cmp offsets
        fresh_copy(src, out)
        run = self.timed(self.ours("insert", out, "--offset", str(INSERT_OFFSET),
                                   "--data", INSERT_DATA), "bigfile insert")
        r.add("insert", size, "bigfile", run, self._check_insert(out, src))
        fresh_copy(src, out)
        run = self.timed(self.ours("delete", out, "--offset", str(DELETE_OFFSET),
                                   "--length", str(DELETE_LENGTH)), "bigfile delete")
        r.add("delete", size, "bigfile", run, self._check_delete(out, src))
        remove(out, cpy)

    def _check_insert(self, out: Path, src: Path) -> bool:
        data = INSERT_DATA.encode()
        with open(out, "rb") as f, open(src, "rb") as g:
            head_ok = f.read(INSERT_OFFSET + len(data)) == g.read(INSERT_OFFSET) + data
        tail_ok = subprocess.run(["cmp", "-s", f"--ignore-initial={INSERT_OFFSET + len(data)}:"
                                  f"{INSERT_OFFSET}", str(out), str(src)]).returncode == 0
        return head_ok and tail_ok

    def _check_delete(self, out: Path, src: Path) -> bool:
        with open(out, "rb") as f, open(src, "rb") as g:
            head_ok = f.read(DELETE_OFFSET) == g.read(DELETE_OFFSET)
        tail_ok = subprocess.run(["cmp", "-s", f"--ignore-initial={DELETE_OFFSET}:"
                                  f"{DELETE_OFFSET + DELETE_LENGTH}", str(out), str(src)]
                                 ).returncode == 0
        return head_ok and tail_ok

    def sparse(self, size: int, src: Path) -> None:
        r = self.results
        ref, out, cpy = (self.dir / n for n in ("ref.csv", "ours.csv", "cp.csv"))
        fresh_copy(src, ref)
        r.add("sparse", size, "sed -i", self.timed(["sed", "-i", SED_SPARSE, str(ref)], "sed"))
        fresh_copy(src, out)
        run = self.timed(self.ours("replace", out, "--find", FIND, "--replace", SPARSE_REPLACE),
                         "bigfile replace")
        r.add("sparse", size, "bigfile", run, self.cmp_or_warn(out, ref, "sparse replace"))
        remove(ref)
        remove(cpy)
        fresh_copy(src, out)
        r.add("sparse", size, "cp", self.timed(["cp", str(out), str(cpy)], "cp"))
        self.durable_copy("sparse", size, src, out, cpy)
        remove(out, cpy)

    def durable_copy(self, bench: str, size: int, src: Path, out: Path, cpy: Path) -> None:
        """Copy, fsync, rename over the original: the floor of any tool that, like ours,
        replaces the file and makes the result durable before it returns."""
        remove(cpy)
        fresh_copy(src, out)
        self.results.add(bench, size, DURABLE,
                         self.timed(["sh", "-c", DURABLE_COPY, str(out), str(cpy)], DURABLE))

    def holes(self, size: int) -> None:
        """Insert near the start of a sparse file (1 MiB of data per 64 MiB, the rest holes):
        time against cp (which keeps holes too) and the bytes allocated after each."""
        src = self.dir / f"holes-{size}.bin"
        if not src.exists():
            chunk = random.Random(size).randbytes(HOLE_DATA)
            with open(src, "wb") as f:
                for at in range(0, size, HOLE_EVERY):
                    f.seek(at)
                    f.write(chunk[:size - at])
                f.truncate(size)
        out, cpy = self.dir / "ours.bin", self.dir / "cp.bin"
        fresh_copy(src, out)
        run = self.timed(self.ours("insert", out, "--offset", str(INSERT_OFFSET),
                                   "--data", INSERT_DATA), "bigfile insert (sparse file)")
        self.results.add("holes", size, "bigfile", run, self._check_insert(out, src))
        remove(cpy)
        fresh_copy(src, cpy)
        run = self.timed(["cp", str(cpy), str(out) + ".cp"], "cp (sparse file)")
        self.results.add("holes", size, "cp", run)
        allocated = {name: p.stat().st_blocks * 512 for name, p in
                     (("source", src), ("ours", out), ("cp", Path(str(out) + ".cp")))}
        self.holes_info = {"size": size, **allocated}
        remove(out, cpy, Path(str(out) + ".cp"))

    def patch_edits(self, size: int) -> Path:
        path = self.dir / f"patches-{size}.json"
        if not path.exists():
            rng = random.Random(size)
            slots = (size - PATCH_LEN) // 16
            offsets = sorted(s * 16 + rng.randrange(8) for s in rng.sample(range(slots), PATCHES))
            edits = [{"op": "patch", "offset": o, "data_hex": rng.randbytes(PATCH_LEN).hex()}
                     for o in offsets]
            path.write_text(json.dumps(edits))
        return path

    def patches(self, size: int, src: Path) -> None:
        r = self.results
        edits = self.patch_edits(src.stat().st_size)
        ref, out = self.dir / "ref.csv", self.dir / "ours.csv"
        fresh_copy(src, ref)
        r.add("patches", size, "python pwrite+fsync",
              self.timed([sys.executable, "-c", RAW_PWRITE, str(ref), str(edits)], "pwrite"))
        fresh_copy(src, out)
        run = self.timed(self.ours("apply", out, "--edits", str(edits)), "bigfile apply")
        r.add("patches", size, "bigfile", run, self.cmp_or_warn(out, ref, "patches"))
        fresh_copy(src, out)
        run = self.timed(self.ours("apply", out, "--edits", str(edits), "--mode", "rewrite"),
                         "bigfile apply --mode rewrite")
        r.add("patches", size, "bigfile --mode rewrite", run,
              self.cmp_or_warn(out, ref, "patches (rewrite)"))
        remove(ref, out)

    def payloads(self, size: int, src: Path, payload_size: int) -> None:
        """``bigfile patch`` and ``bigfile insert`` with a ``--data-file`` of
        ``payload_size`` bytes: time, peak RSS, and the output against ``dd``/``cat``."""
        data = self.dir / f"payload-{payload_size}.bin"
        if not data.exists() or data.stat().st_size != payload_size:
            block = random.Random(payload_size).randbytes(1 << 20)
            with open(data, "wb") as f:
                for at in range(0, payload_size, len(block)):
                    f.write(block[:payload_size - at])
        ref, out = self.dir / "ref.csv", self.dir / "ours.csv"
        patch_ref = (f"cp {src} {ref} && dd if={data} of={ref} bs=1M conv=notrunc "
                     f"oflag=seek_bytes seek={PAYLOAD_OFFSET} status=none")
        insert_ref = (f"{{ head -c {PAYLOAD_OFFSET} {src}; cat {data}; "
                      f"tail -c +{PAYLOAD_OFFSET + 1} {src}; }} > {ref}")
        for verb, make_ref in (("patch", patch_ref), ("insert", insert_ref)):
            if verb == "patch" and payload_size > size - PAYLOAD_OFFSET:
                continue  # a patch must lie inside the file
            fresh_copy(src, out)
            run = self.timed(self.ours(verb, out, "--offset", str(PAYLOAD_OFFSET),
                                       "--data-file", str(data)), f"bigfile {verb} --data-file")
            sh("sh", "-c", make_ref)
            self.results.add(f"payload-{verb}", size, "bigfile", run,
                             self.cmp_or_warn(out, ref, f"{verb} --data-file"))
            remove(ref, out)

    def regex(self, size: int, src: Path) -> None:
        r = self.results
        ref, out = self.dir / "ref.csv", self.dir / "ours.csv"
        fresh_copy(src, ref)
        r.add("regex", size, "perl -pi", self.timed(["perl", "-pi", "-e", PERL_EXPR, str(ref)],
                                                    "perl"))
        for tool, extra in (("bigfile workers=1", ["--workers", "1"]),
                            ("bigfile workers=2 threads", ["--workers", "2"]),
                            ("bigfile workers=2 processes",
                             ["--workers", "2", "--executor", "process"])):
            fresh_copy(src, out)
            run = self.timed(self.ours("replace", out, "--regex", "--find", REGEX_FIND,
                                       "--replace", REGEX_REPLACE, *extra), tool)
            r.add("regex", size, tool, run, self.cmp_or_warn(out, ref, f"regex ({tool})"))
        remove(ref, out)

    # -- S3

    def s3_patch(self, object_size: int) -> None:
        log(f"S3: moto server, 1-byte patch of a {human(object_size)} object")
        env = dict(os.environ, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                   AWS_SECURITY_TOKEN="testing", AWS_SESSION_TOKEN="testing")
        env.setdefault("AWS_DEFAULT_REGION", "us-east-1")
        for key in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
            env.pop(key, None)
        saved = dict(os.environ)
        os.environ.update({k: env[k] for k in env if k.startswith("AWS_")})
        for key in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
            os.environ.pop(key, None)
        import logging

        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)

        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        try:
            host, port = server.get_host_and_port()
            proxy = CountingProxy(host, port)
            proxy.start()
            try:
                self._s3_measure(object_size, f"http://{host}:{port}",
                                 f"http://127.0.0.1:{proxy.port}", proxy, env)
            finally:
                proxy.stop()
        finally:
            server.stop()
            os.environ.clear()
            os.environ.update(saved)

    def _s3_measure(self, object_size: int, direct: str, counted: str, proxy: CountingProxy,
                    env: dict[str, str]) -> None:
        import s3fs

        fs = s3fs.S3FileSystem(endpoint_url=direct, key="testing", secret="testing")
        with contextlib.suppress(FileExistsError):
            fs.mkdir(S3_BUCKET)
        block = make_block(DENSE_BLOCK_LINES, sparse=False)
        body = (block * (object_size // len(block) + 1))[:object_size]
        key = f"{S3_BUCKET}/object.csv"
        fs.pipe_file(key, body)
        offset = object_size // 2 + 12345
        proxy.reset()
        cmd = [*self.big, "patch", f"s3://{key}", "--offset", str(offset), "--hex", "5a",
               "--storage-option", f"endpoint_url={counted}", "--json", "--no-progress"]
        run = run_proc(cmd, env=env, scratch=self.dir)
        if run.code != 0:
            raise SystemExit(f"S3 patch failed: {run.stderr}")
        sent, received, conns = proxy.sent, proxy.received, proxy.connections
        fs.invalidate_cache()
        after = fs.cat_file(key)
        expected = body[:offset] + b"\x5a" + body[offset + 1:]
        info = json.loads(run.stdout.strip().splitlines()[-1])
        self.s3 = {"object_size": object_size, "sent": sent, "received": received,
                   "connections": conns, "seconds": run.seconds, "rss": run.rss,
                   "identical": after == expected, "commit_mode": info.get("commit_mode"),
                   "bytes_written": info.get("bytes_written")}
        log(f"S3: sent {sent} bytes ({sent / object_size:.1%} of the object), "
            f"received {received}, identical={after == expected}")
        fs.rm(S3_BUCKET, recursive=True)


    # -- Azure Blob

    def azure_edits(self, object_size: int) -> None:
        """A 1-byte patch and a 1 MiB append of an ``object_size`` blob on Azurite, through
        the counting proxy."""
        log(f"Azure: Azurite, 1-byte patch and {human(APPEND_SIZE)} append of a "
            f"{human(object_size)} blob")
        if not AZURITE.exists():
            raise SystemExit(f"Azurite is not installed at {AZURITE}: run `make azurite`")
        with tempfile.TemporaryDirectory() as home:
            server = subprocess.Popen(
                [str(AZURITE), "--blobHost", "127.0.0.1", "--blobPort", "0",
                 "--inMemoryPersistence", "--silent", "--loose", "--skipApiVersionCheck"],
                cwd=home, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            try:
                assert server.stdout is not None
                port = None
                for line in server.stdout:
                    found = re.search(r"listens on http://127\.0\.0\.1:(\d+)", line)
                    if found:
                        port = int(found.group(1))
                        break
                if port is None:
                    raise SystemExit("Azurite did not start")
                threading.Thread(target=server.stdout.read, daemon=True).start()
                proxy = CountingProxy("127.0.0.1", port)
                proxy.start()
                try:
                    self._azure_measure(object_size, port, proxy)
                finally:
                    proxy.stop()
            finally:
                server.kill()
                server.wait()

    def _azure_measure(self, object_size: int, port: int, proxy: CountingProxy) -> None:
        from azure.storage.blob import BlobServiceClient

        def connection(port: int) -> str:
            return (f"DefaultEndpointsProtocol=http;AccountName={AZURE_ACCOUNT};"
                    f"AccountKey={AZURE_KEY};BlobEndpoint=http://127.0.0.1:{port}/"
                    f"{AZURE_ACCOUNT};")

        container = BlobServiceClient.from_connection_string(connection(port)) \
            .create_container(AZURE_CONTAINER)
        blob = container.get_blob_client("object.csv")
        block = make_block(DENSE_BLOCK_LINES, sparse=False)
        body = (block * (object_size // len(block) + 1))[:object_size]
        blob.upload_blob(body)
        offset = object_size // 2 + 12345
        appended = random.Random(1).randbytes(APPEND_SIZE)
        data = self.dir / "append.bin"
        data.write_bytes(appended)
        option = ["--storage-option", f"connection_string={connection(proxy.port)}"]
        url = f"az://{AZURE_CONTAINER}/object.csv"
        expected = body
        for edit, args, expect in (
                ("patch", ["--offset", str(offset), "--hex", "5a"],
                 lambda b: b[:offset] + b"\x5a" + b[offset + 1:]),
                ("append", ["--data-file", str(data)], lambda b: b + appended)):
            proxy.reset()
            run = run_proc([*self.big, edit, url, *args, *option, "--json", "--no-progress"],
                           scratch=self.dir)
            if run.code != 0:
                raise SystemExit(f"Azure {edit} failed: {run.stderr}")
            expected = expect(expected)
            info = json.loads(run.stdout.strip().splitlines()[-1])
            self.azure[edit] = {
                "object_size": object_size, "sent": proxy.sent, "received": proxy.received,
                "connections": proxy.connections, "seconds": run.seconds, "rss": run.rss,
                "identical": blob.download_blob().readall() == expected,
                "commit_mode": info.get("commit_mode"), "bytes_written": info.get("bytes_written")}
            log(f"Azure {edit}: sent {proxy.sent} bytes, received {proxy.received}, "
                f"identical={self.azure[edit]['identical']}")
        remove(data)
        container.delete_container()


class CountingProxy:
    """A TCP forwarder on 127.0.0.1 that counts the bytes each side sends."""

    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.sent = self.received = self.connections = 0
        self.lock = threading.Lock()
        self.stopping = False

    def reset(self) -> None:
        with self.lock:
            self.sent = self.received = self.connections = 0

    def start(self) -> None:
        threading.Thread(target=self._accept, daemon=True).start()

    def stop(self) -> None:
        """Stop accepting. The shutdown wakes the thread blocked in accept(): a bare close
        would leave it waiting on a descriptor number the next proxy's socket may reuse."""
        self.stopping = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self.sock.close()

    def _accept(self) -> None:
        while not self.stopping:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.upstream)
            with self.lock:
                self.connections += 1
            threading.Thread(target=self._pump, args=(client, upstream, "sent"),
                             daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, "received"),
                             daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, counter: str) -> None:
        try:
            while True:
                data = src.recv(1 << 16)
                if not data:
                    break
                with self.lock:
                    setattr(self, counter, getattr(self, counter) + len(data))
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)


# ----------------------------------------------------------------------------- report


def machine_info(data_dir: Path) -> dict[str, str]:
    cpu = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    # df names ext4 as such; stat -f calls every ext* "ext2/ext3"
    df = subprocess.run(["df", "--output=fstype", str(data_dir)], capture_output=True,
                        text=True).stdout.split()
    fs = df[-1] if len(df) > 1 else subprocess.run(
        ["stat", "-f", "-c", "%T", str(data_dir)], capture_output=True, text=True).stdout.strip()
    mem = ""
    with contextlib.suppress(OSError), open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / (1 << 20):.1f} GiB"
    return {"cores": str(os.cpu_count()), "cpu": cpu or platform.processor(), "memory": mem,
            "filesystem": fs, "kernel": platform.release(),
            "python": platform.python_version(),
            "load average at start": " ".join(f"{x:.2f}" for x in os.getloadavg())}


@dataclass
class Row:
    bench: str
    size: int
    ours_tool: str
    ref_tool: str
    ours: float
    ref: float
    rss: int
    same: str

    @property
    def ratio(self) -> float:
        return self.ref / self.ours if self.ours else float("nan")


ROW_SPECS = [  # (bench, ours tool, reference tool, label)
    ("dense", "bigfile", "sed -i", "dense same-length replace"),
    ("dense", "bigfile", "cp", "dense same-length replace"),
    ("dense", "bigfile", DURABLE, "dense same-length replace"),
    ("sparse", "bigfile", "sed -i", "sparse length-changing replace"),
    ("sparse", "bigfile", "cp", "sparse length-changing replace"),
    ("sparse", "bigfile", DURABLE, "sparse length-changing replace"),
    ("patches", "bigfile", "python pwrite+fsync", "10,000 8-byte patches"),
    ("patches", "bigfile", "bigfile --mode rewrite", "10,000 8-byte patches"),
    ("patches", "python pwrite+fsync", "bigfile --mode rewrite",
     "bound: raw pwrite loop vs a rewrite"),
    ("insert", "bigfile", "cp", "insert at offset 100"),
    ("insert", "bigfile", DURABLE, "insert at offset 100"),
    ("delete", "bigfile", "cp", "delete 100 B at offset 100"),
    ("delete", "bigfile", DURABLE, "delete 100 B at offset 100"),
    ("holes", "bigfile", "cp", "insert into a sparse file (holes)"),
    ("payload-patch", "bigfile", "cp", "patch from a --data-file"),
    ("payload-insert", "bigfile", "cp", "insert from a --data-file"),
    ("regex", "bigfile workers=1", "perl -pi", "regex replace"),
    ("regex", "bigfile workers=2 threads", "perl -pi", "regex replace"),
    ("regex", "bigfile workers=2 processes", "perl -pi", "regex replace"),
    ("regex", "bigfile workers=2 threads", "bigfile workers=1", "regex scaling"),
    ("regex", "bigfile workers=2 processes", "bigfile workers=1", "regex scaling"),
]


def build_rows(res: Results, sizes: list[int], regex_sizes: list[int]) -> list[tuple[str, Row]]:
    rows = []
    for bench, ours_tool, ref_tool, label in ROW_SPECS:
        for size in (regex_sizes if bench == "regex" else sizes):
            ref_bench = "dense" if bench in ("insert", "delete") or bench.startswith(
                "payload") else bench
            o, f = res.get(bench, size, ours_tool), res.get(ref_bench, size, ref_tool)
            if not o or not f or not o.runs or not f.runs:
                continue
            same = "yes" if o.identical and all(o.identical) else (
                "NO" if o.identical else "n/a")
            rows.append((label, Row(bench, size, ours_tool, ref_tool, o.median, f.median,
                                    o.peak_rss, same)))
    return rows


def evaluate(res: Results, sizes: list[int], regex_sizes: list[int], s3: dict[str, Any],
             azure: dict[str, Any],
             payload_size: int = 512 << 20) -> list[tuple[str, str, str]]:
    """(target, measured, PASS/FAIL/NOT MEASURED) for each target of issue 6."""
    out: list[tuple[str, str, str]] = []
    big = max(sizes)
    label = human(big)

    def ratio(bench: str, ours: str, ref: str, size: int) -> float | None:
        o = res.get(bench, size, ours)
        f = res.get("dense" if bench in ("insert", "delete") else bench, size, ref)
        if not o or not f or not o.runs or not f.runs:
            return None
        return f.median / o.median

    def verdict(ok: bool) -> str:
        return "PASS" if ok else "FAIL"

    def durable(bench: str, size: int) -> str:
        r = ratio(bench, "bigfile", DURABLE, size)
        return "" if r is None else f" ({DURABLE}: {r:.2f}x)"

    two_gib = [s for s in sizes if s >= 2 << 30]
    for name, ref, need in (("sed -i", "sed -i", 3.0), ("cp", "cp", 0.35)):
        target = f"dense same-length replace on >= 2 GiB: >= {need}x {name}"
        if not two_gib:
            r = ratio("dense", "bigfile", ref, big)
            out.append((target, f"{r:.2f}x at {label} (no size >= 2 GiB in this run)",
                        "NOT MEASURED"))
        else:
            each = [(ratio("dense", "bigfile", ref, s), s) for s in two_gib]
            passed = [r >= need for r, _ in each]
            out.append((target, ", ".join(f"{r:.2f}x at {human(s)}"
                                          + (durable("dense", s) if ref == "cp" else "")
                                          for r, s in each),
                        verdict(all(passed)) if all(passed) or not any(passed) else
                        "PARTIAL"))
    r = ratio("sparse", "bigfile", "cp", big)
    out.append(("sparse length-changing replace: >= 0.8x cp",
                f"{r:.2f}x at {label}{durable('sparse', big)}", verdict(r >= 0.8)))
    r = ratio("patches", "bigfile", "python pwrite+fsync", big)
    out.append(("10,000 8-byte patches: within 3x of raw pwrite+fsync (ratio >= 0.33)",
                f"{r:.2f}x at {label} (ours {1 / r:.1f}x slower)", verdict(r >= 1 / 3)))
    r = ratio("patches", "bigfile", "bigfile --mode rewrite", big)
    bound = ratio("patches", "python pwrite+fsync", "bigfile --mode rewrite", big)
    out.append(("10,000 8-byte patches: > 100x faster than a rewrite",
                f"{r:.1f}x at {label}" + (f" (the raw pwrite loop itself: {bound:.1f}x)"
                                          if bound else ""), verdict(r > 100)))
    r = ratio("insert", "bigfile", "cp", big)
    out.append(("insert near the start: >= 0.8x cp", f"{r:.2f}x at {label}"
                f"{durable('insert', big)}", verdict(r >= 0.8)))
    r = ratio("delete", "bigfile", "cp", big)
    out.append(("delete near the start: >= 0.8x cp (same bar as insert)",
                f"{r:.2f}x at {label}{durable('delete', big)}", verdict(r >= 0.8)))
    # RSS: every one of ours run with default settings
    defaults = ("dense", "sparse", "patches", "insert", "delete")
    for size in sizes:
        peaks = [(res.get(b, size, "bigfile").peak_rss, b) for b in defaults
                 if res.get(b, size, "bigfile")]
        worst, which = max(peaks)
        out.append((f"peak RSS < 300 MB at {human(size)} (default settings)",
                    f"max {worst / MB:.0f} MB ({which})", verdict(worst < 300 * MB)))
    if not any(s >= 4 << 30 for s in sizes):
        out.append(("peak RSS < 300 MB at 4 GiB", "4 GiB not in --sizes", "NOT MEASURED"))
    payload = [(s.peak_rss, b) for b in ("payload-patch", "payload-insert")
               if (s := res.get(b, big, "bigfile")) and s.runs]
    if payload:
        worst, which = max(payload)
        out.append((f"peak RSS < 300 MB with a {human(payload_size)} --data-file",
                    f"max {worst / MB:.0f} MB ({which.split('-')[1]})",
                    verdict(worst < 300 * MB)))
    if len(sizes) > 1:
        lo, hi = min(sizes), max(sizes)
        grow = []
        for b in defaults:
            a, z = res.get(b, lo, "bigfile"), res.get(b, hi, "bigfile")
            if a and z:
                grow.append((z.peak_rss - a.peak_rss, b))
        d, which = max(grow)
        out.append((f"peak RSS does not grow with the file ({human(lo)} -> {human(hi)})",
                    f"largest growth {d / MB:+.0f} MB ({which})", verdict(d < 32 * MB)))
    rs = max(regex_sizes)
    best = []
    for tool in ("bigfile workers=2 threads", "bigfile workers=2 processes"):
        r = ratio("regex", tool, "bigfile workers=1", rs)
        if r is not None:
            best.append((r, tool.split()[-1]))
    r, how = max(best)
    detail = ", ".join(f"{v:.2f}x {k}" for v, k in best)
    out.append(("CPU-bound regex, 2 workers >= 1.6x of 1 worker", f"{detail} at {human(rs)}",
                verdict(r >= 1.6)))
    if s3:
        out.append(("S3 1-byte patch of a 64 MiB object sends < 12 MiB",
                    f"{s3['sent'] / (1 << 20):.2f} MiB sent for a {human(s3['object_size'])} "
                    "object", verdict(s3["sent"] < 12 << 20) if s3["object_size"] >= 64 << 20
                    else "NOT MEASURED (object < 64 MiB)"))
    if azure:
        patch, append = azure["patch"], azure["append"]
        out.append(("Azure 1-byte patch of a 64 MiB blob sends < 64 KiB (headers included)",
                     f"{patch['sent']:,} bytes sent for a {human(patch['object_size'])} blob",
                     verdict(patch["sent"] < 64 << 10) if patch["object_size"] >= 64 << 20
                     else "NOT MEASURED (blob < 64 MiB)"))
        out.append(("Azure append of 1 MiB sends < 1.1 MiB (headers included)",
                     f"{append['sent']:,} bytes sent",
                     verdict(append["sent"] < 1.1 * APPEND_SIZE)))
    all_same = all(all(s.identical) for s in res.series.values() if s.identical)
    out.append(("every output byte-identical to the reference", "cmp on every run",
                verdict(all_same and (not s3 or s3["identical"])
                        and all(a["identical"] for a in azure.values()))))
    return out


def format_table(rows: list[tuple[str, Row]]) -> list[list[str]]:
    table = [["benchmark", "size", "ours", "ours s", "reference", "reference s", "ratio",
              "our peak RSS MB", "identical"]]
    for label, r in rows:
        table.append([label, human(r.size), r.ours_tool, f"{r.ours:.3f}", r.ref_tool,
                      f"{r.ref:.3f}", f"{r.ratio:.2f}x", f"{r.rss / MB:.0f}", r.same])
    return table


def print_table(table: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for n, row in enumerate(table):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
        if n == 0:
            print("  ".join("-" * w for w in widths))


def markdown_table(table: list[list[str]]) -> str:
    lines = ["| " + " | ".join(table[0]) + " |",
             "|" + "|".join("---" for _ in table[0]) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in table[1:]]
    return "\n".join(lines)


README_START, README_END = "<!-- bench:start -->", "<!-- bench:end -->"


def update_readme(path: Path, rows: list[tuple[str, Row]], s3: dict[str, Any],
                  azure: dict[str, Any], holes: dict[str, int], command: str, date: str
                  ) -> bool:
    """Put the figures at the largest size (and regex, S3) between the README's markers."""
    text = path.read_text()
    if README_START not in text or README_END not in text:
        log(f"{path} has no {README_START} ... {README_END} markers: not updated")
        return False
    big = max(r.size for label, r in rows if not label.startswith("regex"))
    table = [["benchmark", "size", "ours (s)", "reference", "ref (s)", "ratio", "peak RSS"]]
    for label, r in rows:
        if r.size == big or label.startswith("regex"):
            name = label if r.ours_tool == "bigfile" else \
                f"{label}, {r.ours_tool.removeprefix('bigfile ')}"
            table.append([name, human(r.size), f"{r.ours:.2f}", r.ref_tool, f"{r.ref:.2f}",
                          f"{r.ratio:.2f}x", f"{r.rss / MB:.0f} MB"])
    lines = [f"`{command}`, {date}; ratio = reference time / ours (> 1: we are faster).",
             "", markdown_table(table)]
    if s3:
        lines += ["", f"S3 (moto server): a 1-byte patch of a {human(s3['object_size'])} "
                  f"object sent {s3['sent'] / (1 << 20):.2f} MiB to the store."]
    if azure:
        lines += ["", azure_sentence(azure)]
    if holes:
        lines += ["", holes_sentence(holes)]
    head, rest = text.split(README_START, 1)
    tail = rest.split(README_END, 1)[1]
    path.write_text(head + README_START + "\n" + "\n".join(lines) + "\n" + README_END + tail)
    return True


def azure_sentence(azure: dict[str, Any]) -> str:
    patch, append = azure["patch"], azure["append"]
    return (f"Azure Blob (Azurite): a 1-byte patch of a {human(patch['object_size'])} blob sent "
            f"{patch['sent']:,} bytes to the store, a {human(APPEND_SIZE)} append "
            f"{append['sent']:,} bytes ({append['sent'] / APPEND_SIZE:.3f}x the appended "
            "bytes), request headers included.")


def holes_sentence(holes: dict[str, int]) -> str:
    return (f"Sparse file ({human(holes['size'])}, {holes['source'] / MB:.0f} MB allocated): "
            f"after the insert ours has {holes['ours'] / MB:.0f} MB allocated, cp's copy "
            f"{holes['cp'] / MB:.0f} MB (the holes stay holes).")


def chart(res: Results, sizes: list[int], path: Path) -> bool:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib is not installed: no chart (pip install '.[bench]')")
        return False
    fig, ax = plt.subplots(figsize=(8, 5))
    curves = [("dense", "bigfile", "ours: dense same-length replace", "-o"),
              ("dense", "sed -i", "sed -i: dense replace", "--o"),
              ("sparse", "bigfile", "ours: sparse length-changing replace", "-s"),
              ("sparse", "sed -i", "sed -i: sparse replace", "--s"),
              ("insert", "bigfile", "ours: insert at offset 100", "-^"),
              ("dense", "cp", "cp", ":d")]
    xs = [s / (1 << 30) for s in sizes]
    for bench, tool, label, style in curves:
        ys = []
        for s in sizes:
            series = res.get(bench, s, tool)
            ys.append(s / series.median / MB if series and series.runs else float("nan"))
        ax.plot(xs, ys, style, label=label)
    ax.set_xlabel("file size (GiB)")
    ax.set_ylabel("throughput (MB/s, file size / wall time)")
    ax.set_yscale("log")
    ax.set_title("airflow-bigfile vs sed and cp (medians, start-up included)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write_markdown(path: Path, *, command: str, info: dict[str, str], table: list[list[str]],
                   targets: list[tuple[str, str, str]], res: Results, s3: dict[str, Any],
                   azure: dict[str, Any],
                   holes: dict[str, int], chart_name: str | None, args: argparse.Namespace,
                   elapsed: float, regex_sizes: list[int], saved_date: str | None = None) -> None:
    day = saved_date or _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    parts = [
        "# Benchmarks",
        "",
        f"Produced by `{command}` on {day} (whole run: {elapsed / 60:.1f} min). "
        f"Every time is the median of {args.repeat} run(s); every ratio compares two tools "
        "measured side by side in the same run. `make bench` runs `bench/run.py` with its "
        "defaults.",
        "",
        "## Machine",
        "",
        *[f"- {k}: {v}" for k, v in info.items()],
        "",
        "## Method",
        "",
        "- Data: generated by the script. A CSV of 100-byte lines, each with an e-mail "
        "`userNNNNNNNNNN@old.com` (dense: a match on every line), and a sparse variant with "
        "`@old.com` on one line per 10 MB. Written as repeated blocks.",
        "- Each command is a separate process (`bigfile` CLI, `sed`, `perl`, `cp`, `python -c`):"
        " start-up and imports count. Each runs on a fresh copy of the data, flushed with "
        "`sync` and read once (`cat > /dev/null`) so every tool starts with a warm page cache; "
        "then a scratch file as large as the data is written and deleted, so every tool finds "
        "as much recently used free memory as its output needs (on this virtual machine, "
        "memory the guest has not used lately faults in at about 2 s/GiB, and the first "
        "version of this script handed warm memory to whichever tool ran after another one "
        "freed some). None of that is timed.",
        "- Ours always fsyncs what it commits (and rewrites go through a new file and a rename);"
        " `sed -i`, `perl -pi` and `cp` do not fsync. The figures are as measured, not adjusted."
        f" `{DURABLE}` (`sh -c '{DURABLE_COPY}' F F2`) is the floor of any tool that"
        " replaces the file and makes the result durable before it returns; the `bound` row"
        " is the raw pwrite loop against a rewrite, the most any patch can gain over one.",
        "- ratio = reference time / our time, so > 1 means we are faster. For the regex scaling"
        " rows the reference is our own 1-worker run.",
        "- Peak RSS: `ru_maxrss` of the child from `os.wait4` in a small launcher process that "
        "forks it (the largest over the repeats); spawned straight from the benchmark "
        "process, a child is charged with that process's size.",
        "- identical: `cmp` of our output against the reference tool's output on every run "
        "(insert/delete: against the source with the expected offsets).",
        "- `--data-file` rows: `bigfile patch` and `bigfile insert` of a file of random "
        "bytes (`--payload-size`, default 512 MiB) at offset 4096 of the largest data file; "
        "the peak RSS is the figure that matters (the target: under 300 MB whatever the "
        "payload size, as the CLI streams the file in chunks and stages it once for the "
        "workers). The reference output is made with `dd conv=notrunc` (patch) or "
        "`head`/`cat`/`tail` (insert) and compared with `cmp`.",
        "- The regex benchmark runs on a separate, smaller file "
        f"({', '.join(human(s) for s in regex_sizes)}; `--regex-size`): at the regex speed "
        "measured here (about 40 s/GiB on one worker, 4x slower than perl), a GiB-sized regex "
        "run would take longer than the rest of the suite together.",
        "",
        "Commands measured (F is the fresh copy):",
        "",
        "```",
        f"bigfile replace F --find '{FIND}' --replace '{DENSE_REPLACE}'        "
        f"# vs sed -i '{SED_DENSE}' F; cp F F2; cp F F2 && sync F2 && mv F2 F",
        f"bigfile replace F --find '{FIND}' --replace '{SPARSE_REPLACE}'  "
        f"# sparse file; vs sed -i '{SED_SPARSE}' F",
        "bigfile apply F --edits patches.json  # 10,000 8-byte patches; vs python -c "
        "'pwrite loop + fsync' and --mode rewrite",
        f"bigfile replace F --regex --find '{REGEX_FIND}' --replace '{REGEX_REPLACE}' "
        f"[--workers 1|2] [--executor process]  # vs perl -pi -e '{PERL_EXPR}' F",
        f"bigfile insert F --offset {INSERT_OFFSET} --data '{INSERT_DATA}'    # vs cp",
        f"bigfile delete F --offset {DELETE_OFFSET} --length {DELETE_LENGTH}                "
        "# vs cp",
        f"bigfile patch|insert F --offset {PAYLOAD_OFFSET} --data-file P  # P: --payload-size "
        "random bytes (default 512MiB) on the largest F; vs cp, output cmp'd with dd/cat",
        "(all with --json --no-progress)",
        "```",
        "",
        "## Results",
        "",
        markdown_table(table),
        "",
    ]
    if s3:
        parts += [
            "### S3 (moto server)",
            "",
            f"`bigfile patch s3://{S3_BUCKET}/object.csv --offset N --hex 5a` on a "
            f"{human(s3['object_size'])} object, through a TCP proxy counting every byte sent "
            "to the store (headers included):",
            "",
            f"- bytes sent: {s3['sent']:,} ({s3['sent'] / (1 << 20):.2f} MiB, "
            f"{s3['sent'] / s3['object_size']:.1%} of the object)",
            f"- bytes received: {s3['received']:,}; TCP connections: {s3['connections']}",
            f"- commit mode: {s3['commit_mode']}; engine-reported bytes_written: "
            f"{s3['bytes_written']}",
            f"- wall time {s3['seconds']:.2f} s, peak RSS {s3['rss'] / MB:.0f} MB, "
            f"object identical to the expected bytes: {'yes' if s3['identical'] else 'NO'}",
            "",
        ]
    if azure:
        parts += ["### Azure Blob (Azurite)", "",
                  f"`bigfile patch az://{AZURE_CONTAINER}/object.csv --offset N --hex 5a`, then "
                  f"`bigfile append az://{AZURE_CONTAINER}/object.csv --data-file F` "
                  f"({human(APPEND_SIZE)}), through the same proxy (headers included):", ""]
        for edit, a in azure.items():
            parts.append(
                f"- {edit}: {a['sent']:,} bytes sent, {a['received']:,} received, "
                f"{a['connections']} TCP connections; commit mode {a['commit_mode']}, "
                f"bytes_written {a['bytes_written']}; wall time {a['seconds']:.2f} s, peak RSS "
                f"{a['rss'] / MB:.0f} MB; blob identical to the expected bytes: "
                f"{'yes' if a['identical'] else 'NO'}")
        parts += [""]
    if holes:
        parts += ["### Sparse files", "", f"`bigfile insert F --offset {INSERT_OFFSET}` on a "
                  f"file with {human(HOLE_DATA)} of data every {human(HOLE_EVERY)} and holes "
                  "between, against `cp` (which keeps holes as well). "
                  + holes_sentence(holes), ""]
    parts += ["## Targets (issue 6)", "", "| target | measured | verdict |", "|---|---|---|"]
    parts += [f"| {t} | {m} | **{v}** |" for t, m, v in targets]
    parts += [""]
    if chart_name:
        parts += ["## Throughput", "", f"![throughput against file size]({chart_name})", "",
                  "File size / median wall time (start-up included), log scale.", ""]
    notes = Path(__file__).with_name("notes.md")
    if notes.exists():
        parts += ["## Notes (hand-written in bench/notes.md, not measured by this run)", "",
                  notes.read_text().strip(), ""]
    parts += ["## All runs", "", "Wall seconds of every run; for ours also the time the engine "
              "reports for itself (the rest is interpreter start-up and imports) and the "
              "commit mode.", "", "| benchmark | size | tool | runs (s) | engine s | commit |",
              "|---|---|---|---|---|---|"]
    for (bench, size, tool), s in sorted(res.series.items(), key=lambda kv: (kv[0][0],
                                                                               kv[0][1])):
        runs = ", ".join(f"{r.seconds:.3f}" for r in s.runs)
        eng = ", ".join(f"{e:.3f}" for e in s.engine_seconds)
        parts.append(f"| {bench} | {human(size)} | {tool} | {runs} | {eng} | {s.commit_mode} |")
    parts.append("")
    old = path.read_text() if path.exists() else ""
    if LTM_START in old and LTM_END in old:  # bench/ltm.py's section, measured apart: kept
        kept = old.split(LTM_START, 1)[1].split(LTM_END, 1)[0]
        parts += [LTM_HEADING, "", LTM_START + kept + LTM_END, ""]
    path.write_text("\n".join(parts))


# ----------------------------------------------------------------------------- main


def default_data_dir() -> tuple[Path, bool]:
    """A temp dir beside the repo (same filesystem, so copies stay kernel copies)."""
    parent = REPO.parent
    try:
        return Path(tempfile.mkdtemp(prefix=".bigfile-bench-", dir=parent)), True
    except OSError:
        return Path(tempfile.mkdtemp(prefix="bigfile-bench-")), True


def measure(args: argparse.Namespace, sizes: list[int], regex_sizes: list[int], s3_size: int,
            command: str) -> tuple[Results, dict[str, Any], dict[str, Any], dict[str, int],
                                   dict[str, str], float]:
    """Run every benchmark; save the raw results (JSON) before any reporting."""
    if args.data_dir:
        data_dir, cleanup = args.data_dir.resolve(), False
        data_dir.mkdir(parents=True, exist_ok=True)
    else:
        data_dir, cleanup = default_data_dir()
    for tool in ("sed", "perl", "cp", "cmp", "cat"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is needed on PATH")
    t_start = time.perf_counter()
    info = machine_info(data_dir)
    log(f"data in {data_dir}; sizes {', '.join(human(s) for s in sizes)}; repeat {args.repeat}")
    bench = Bench(args, data_dir)
    try:
        for size in sizes:
            dense = generate(data_dir / f"dense-{size}.csv", size, sparse=False)
            sparse = generate(data_dir / f"sparse-{size}.csv", size, sparse=True)
            for rep in range(args.repeat):
                log(f"{human(size)} repeat {rep + 1}/{args.repeat}: dense, insert, delete")
                bench.dense(size, dense)
                log(f"{human(size)} repeat {rep + 1}/{args.repeat}: sparse")
                bench.sparse(size, sparse)
                log(f"{human(size)} repeat {rep + 1}/{args.repeat}: patches")
                bench.patches(size, dense)
        for rep in range(args.repeat):
            log(f"sparse file (holes) {human(max(sizes))} repeat {rep + 1}/{args.repeat}")
            bench.holes(max(sizes))
        payload_size = parse_size(args.payload_size)
        for rep in range(args.repeat):
            log(f"{human(payload_size)} --data-file into {human(max(sizes))} repeat "
                f"{rep + 1}/{args.repeat}")
            bench.payloads(max(sizes), data_dir / f"dense-{max(sizes)}.csv", payload_size)
        for size in regex_sizes:
            src = generate(data_dir / f"dense-{size}.csv", size, sparse=False)
            for rep in range(args.repeat):
                log(f"regex {human(size)} repeat {rep + 1}/{args.repeat}")
                bench.regex(size, src)
        if not args.no_s3:
            try:
                bench.s3_patch(s3_size)
            except Exception as exc:  # the local figures are still worth reporting
                log(f"S3 benchmark failed or skipped: {type(exc).__name__}: {exc}")
        if not args.no_azure:
            try:
                bench.azure_edits(s3_size)
            except Exception as exc:
                log(f"Azure benchmark failed or skipped: {type(exc).__name__}: {exc}")
    finally:
        if cleanup:
            shutil.rmtree(data_dir, ignore_errors=True)
    elapsed = time.perf_counter() - t_start
    saved = {"command": command, "date": _dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
             "sizes": sizes, "regex_sizes": regex_sizes,
             "repeat": args.repeat, "elapsed": elapsed, "info": info, "s3": bench.s3,
             "azure": bench.azure,
             "holes": bench.holes_info, "results": bench.results.to_json()}
    raw = (data_dir if not cleanup else Path(tempfile.gettempdir())) / "bigfile-bench-results.json"
    raw.write_text(json.dumps(saved, indent=1))
    log(f"raw results in {raw} (re-report with --report-from)")
    return bench.results, bench.s3, bench.azure, bench.holes_info, info, elapsed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="1GiB,2GiB",
                   help="comma-separated file sizes (default: 1GiB,2GiB)")
    p.add_argument("--repeat", type=int, default=3, help="runs per figure; medians (default 3)")
    p.add_argument("--regex-size", default="128MiB",
                   help="file size for the regex benchmark (default 128MiB: enough that starting "
                        "worker processes does not dominate; it is slow)")
    p.add_argument("--s3-size", default="64MiB",
                   help="S3 object and Azure blob size (default 64MiB)")
    p.add_argument("--no-s3", action="store_true", help="skip the S3 benchmark")
    p.add_argument("--no-azure", action="store_true", help="skip the Azure benchmark")
    p.add_argument("--payload-size", default="512MiB",
                   help="--data-file size for the patch/insert payload rows (default 512MiB)")
    p.add_argument("--data-dir", type=Path,
                   help="scratch folder for data (kept and reused); default: a temp dir "
                        "beside the repo, removed at the end")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT,
                   help="markdown report (the chart goes beside it as throughput.png)")
    p.add_argument("--readme", type=Path,
                   help="README whose benchmark table to update (default: the repo's "
                        "README.md when --out is the default report)")
    p.add_argument("--report-from", type=Path, metavar="RESULTS.json",
                   help="measure nothing: rewrite the report from a saved results file")
    p.add_argument("--quick", action="store_true",
                   help="tiny smoke run: 8MiB, 1 repeat, 2MiB regex, 8MiB S3 object")
    args = p.parse_args(argv)
    if args.quick:
        args.sizes, args.repeat, args.regex_size, args.s3_size = "8MiB", 1, "2MiB", "8MiB"
        args.payload_size = "4MiB"
    sizes = sorted({parse_size(s) for s in args.sizes.split(",") if s.strip()})
    regex_sizes = [parse_size(args.regex_size)]
    s3_size = parse_size(args.s3_size)
    if args.repeat < 1:
        p.error("--repeat must be >= 1")
    command = " ".join(["python bench/run.py", *(shlex.quote(a) for a in (
        argv if argv is not None else sys.argv[1:]))])
    if args.report_from:
        saved = json.loads(args.report_from.read_text())
        res = Results.from_json(saved["results"])
        s3, info, elapsed = saved["s3"], saved["info"], saved["elapsed"]
        azure = saved.get("azure", {})
        holes = saved.get("holes", {})
        sizes, regex_sizes, command = saved["sizes"], saved["regex_sizes"], saved["command"]
        args.repeat = saved["repeat"]
    else:
        res, s3, azure, holes, info, elapsed = measure(args, sizes, regex_sizes, s3_size,
                                                       command)
        saved = {}
    rows = build_rows(res, sizes, regex_sizes)
    table = format_table(rows)
    targets = evaluate(res, sizes, regex_sizes, s3, azure, parse_size(args.payload_size))
    print()
    print_table(table)
    if s3:
        print(f"\nS3: 1-byte patch of a {human(s3['object_size'])} object sent {s3['sent']:,} "
              f"bytes ({s3['sent'] / s3['object_size']:.1%}); identical: {s3['identical']}")
    if azure:
        print(azure_sentence(azure))
    print("\nTargets (issue 6):")
    for t, m, v in targets:
        print(f"  {v:<13} {t}: {m}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    png = args.out.parent / "throughput.png"
    drawn = chart(res, sizes, png)
    write_markdown(args.out, command=command, info=info, table=table, targets=targets,
                   res=res, s3=s3, azure=azure, holes=holes,
                   chart_name=png.name if drawn else None, args=args,
                   elapsed=elapsed, regex_sizes=regex_sizes, saved_date=saved.get("date"))
    print(f"\nwrote {args.out}" + (f" and {png}" if drawn else ""))
    readme = args.readme or (REPO / "README.md" if args.out == DEFAULT_OUT else None)
    if readme is not None and update_readme(readme, rows, s3, azure, holes, command,
                                            saved.get("date") or _dt.date.today().isoformat()):
        print(f"updated the benchmark table in {readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
