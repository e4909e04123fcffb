"""The local benchmarks, each ours against a reference tool on a fresh copy of the same data,
and :func:`measure`, which runs them all (and the S3 one) at every size.

Every measured command is its own process (the ``bigfile`` CLI, ``sed``, ``perl``, ``cp`` or
``python -c``), so interpreter start-up and imports count, and each of our outputs is
compared byte for byte with the reference tool's.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import REPO
from bench.azure import azure_edits
from bench.common import human, log
from bench.data import (
    fresh_copy,
    generate,
    holes_file,
    identical,
    patch_edits,
    payload_file,
    remove,
    sh,
)
from bench.launcher import Run, run_proc
from bench.results import Results
from bench.s3 import s3_bytes_moved, s3_patch

FIND = "@old.com"
DENSE_REPLACE = "@new.org"              # same length
SPARSE_REPLACE = "@new.example.org"     # length-changing
REGEX_FIND = r"(\d+)@old\.com"
REGEX_REPLACE = r"\1@new.org"
PERL_EXPR = r"s/(\d+)\@old\.com/$1\@new.org/g"
DATE_FIND = r"(\d{4})-(\d\d)-(\d\d)"  # the CSV's dates, 2024-01-07 -> 07.01.2024
DATE_REPLACE = r"\3.\2.\1"
DATE_PERL = r"s/(\d{4})-(\d\d)-(\d\d)/$3.$2.$1/g"
# bench name -> (find, replace, the same for perl -pi -e)
REGEXES = {"regex": (REGEX_FIND, REGEX_REPLACE, PERL_EXPR),
           "regex-date": (DATE_FIND, DATE_REPLACE, DATE_PERL)}
SED_DENSE = r"s/@old\.com/@new\.org/g"
SED_SPARSE = r"s/@old\.com/@new.example.org/g"
INSERT_OFFSET = 100
INSERT_DATA = "INSERTED-BY-BIGFILE,"
DELETE_OFFSET, DELETE_LENGTH = 100, 100
PAYLOAD_OFFSET = 4096  # where the --data-file benchmarks patch and insert

# A durable replace of F by a copy of itself (sh -c DURABLE_COPY F F2): copy, fsync, rename
# over F (which frees the old file, as every tool that replaces a file must).
DURABLE_COPY = 'cp --reflink=never "$0" "$1" && sync "$1" && mv "$1" "$0"'
DURABLE = "cp + fsync + mv"

RAW_PWRITE = (
    "import json, os, sys\n"
    "edits = json.load(open(sys.argv[2]))\n"
    "fd = os.open(sys.argv[1], os.O_WRONLY)\n"
    "for e in edits:\n"
    "    os.pwrite(fd, bytes.fromhex(e['data_hex']), e['offset'])\n"
    "os.fsync(fd)\n"
    "os.close(fd)\n"
)


def bigfile_cmd() -> list[str]:
    """The ``bigfile`` console script beside this interpreter, else the module."""
    script = Path(sys.executable).parent / "bigfile"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "airflow_bigfile"]


def compile_package() -> None:
    """Byte-compile the checkout's package, as pip does when it installs a wheel: run from
    an editable install under ``PYTHONDONTWRITEBYTECODE`` (set on some machines), each
    measured ``bigfile`` would otherwise compile every module of the package again, a
    start-up cost users do not pay."""
    import compileall

    for folder in ("airflow_bigfile", "operators", "hooks"):
        compileall.compile_dir(REPO / folder, quiet=1)


class Bench:
    """One repeat of each benchmark at a time; the figures gather in :attr:`results`."""

    def __init__(self, data_dir: Path) -> None:
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

    def _replace_rows(self, bench: str, size: int, src: Path, sed_expr: str,
                      replacement: str) -> None:
        """``sed -i`` and ours on the same replace (outputs compared), then ``cp`` and the
        durable copy of the same file."""
        r = self.results
        ref, out, cpy = (self.dir / n for n in ("ref.csv", "ours.csv", "cp.csv"))
        fresh_copy(src, ref)
        r.add(bench, size, "sed -i", self.timed(["sed", "-i", sed_expr, str(ref)], "sed"))
        fresh_copy(src, out)
        run = self.timed(self.ours("replace", out, "--find", FIND, "--replace", replacement),
                         "bigfile replace")
        r.add(bench, size, "bigfile", run, self.cmp_or_warn(out, ref, f"{bench} replace"))
        remove(ref, cpy)
        fresh_copy(src, out)
        r.add(bench, size, "cp", self.timed(["cp", str(out), str(cpy)], "cp"))
        self.durable_copy(bench, size, src, out, cpy)
        remove(out, cpy)

    def dense(self, size: int, src: Path) -> None:
        """Same-length replace on every line against ``sed -i`` and ``cp``; insert and
        delete near the start (checked against the source with ``cmp`` offsets)."""
        self._replace_rows("dense", size, src, SED_DENSE, DENSE_REPLACE)
        r, out = self.results, self.dir / "ours.csv"
        fresh_copy(src, out)
        run = self.timed(self.ours("insert", out, "--offset", str(INSERT_OFFSET),
                                   "--data", INSERT_DATA), "bigfile insert")
        r.add("insert", size, "bigfile", run,
              self._check_splice(out, src, INSERT_OFFSET, 0, INSERT_DATA.encode()))
        fresh_copy(src, out)
        run = self.timed(self.ours("delete", out, "--offset", str(DELETE_OFFSET),
                                   "--length", str(DELETE_LENGTH)), "bigfile delete")
        r.add("delete", size, "bigfile", run,
              self._check_splice(out, src, DELETE_OFFSET, DELETE_LENGTH))
        remove(out)

    @staticmethod
    def _check_splice(out: Path, src: Path, offset: int, removed: int,
                      inserted: bytes = b"") -> bool:
        """``out`` is ``src`` with ``removed`` bytes at ``offset`` replaced by ``inserted``:
        the head compared here, the tail by ``cmp`` with skips (no second copy in memory)."""
        with open(out, "rb") as f, open(src, "rb") as g:
            head_ok = f.read(offset + len(inserted)) == g.read(offset) + inserted
        tail_ok = subprocess.run(["cmp", "-s", f"--ignore-initial={offset + len(inserted)}:"
                                  f"{offset + removed}", str(out), str(src)]).returncode == 0
        return head_ok and tail_ok

    def sparse(self, size: int, src: Path) -> None:
        """Length-changing replace of one line per 10 MB against ``sed -i`` and ``cp``."""
        self._replace_rows("sparse", size, src, SED_SPARSE, SPARSE_REPLACE)

    def durable_copy(self, bench: str, size: int, src: Path, out: Path, cpy: Path) -> None:
        """Copy, fsync, rename over the original: the floor of any tool that, like ours,
        replaces the file and makes the result durable before it returns."""
        remove(cpy)
        fresh_copy(src, out)
        self.results.add(bench, size, DURABLE,
                         self.timed(["sh", "-c", DURABLE_COPY, str(out), str(cpy)], DURABLE))

    def holes(self, size: int) -> None:
        """Insert near the start of a sparse file: time against cp (which keeps holes too)
        and the bytes allocated after each."""
        src = holes_file(self.dir, size)
        out, cpy = self.dir / "ours.bin", self.dir / "cp.bin"
        fresh_copy(src, out)
        run = self.timed(self.ours("insert", out, "--offset", str(INSERT_OFFSET),
                                   "--data", INSERT_DATA), "bigfile insert (sparse file)")
        self.results.add("holes", size, "bigfile", run,
                         self._check_splice(out, src, INSERT_OFFSET, 0, INSERT_DATA.encode()))
        remove(cpy)
        fresh_copy(src, cpy)
        run = self.timed(["cp", str(cpy), str(out) + ".cp"], "cp (sparse file)")
        self.results.add("holes", size, "cp", run)
        allocated = {name: p.stat().st_blocks * 512 for name, p in
                     (("source", src), ("ours", out), ("cp", Path(str(out) + ".cp")))}
        self.holes_info = {"size": size, **allocated}
        remove(out, cpy, Path(str(out) + ".cp"))

    def patches(self, size: int, src: Path) -> None:
        """Scattered 8-byte patches against a raw pwrite loop and our own rewrite."""
        r = self.results
        edits = patch_edits(self.dir, src.stat().st_size)
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
        data = payload_file(self.dir, payload_size)
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
        """Each of :data:`REGEXES` against ``perl -pi``, on 1 and 2 workers (threads,
        processes)."""
        r = self.results
        ref, out = self.dir / "ref.csv", self.dir / "ours.csv"
        for bench, (find, replace, perl) in REGEXES.items():
            fresh_copy(src, ref)
            r.add(bench, size, "perl -pi", self.timed(["perl", "-pi", "-e", perl, str(ref)],
                                                      "perl"))
            for tool, extra in (("bigfile workers=1", ["--workers", "1"]),
                                ("bigfile workers=2 threads", ["--workers", "2"]),
                                ("bigfile workers=2 processes",
                                 ["--workers", "2", "--executor", "process"])):
                fresh_copy(src, out)
                run = self.timed(self.ours("replace", out, "--regex", "--find", find,
                                           "--replace", replace, *extra), tool)
                r.add(bench, size, tool, run, self.cmp_or_warn(out, ref, f"{bench} ({tool})"))
            remove(ref, out)


def default_data_dir(repo: Path) -> Path:
    """A temp dir beside the repo (same filesystem, so copies stay kernel copies)."""
    try:
        return Path(tempfile.mkdtemp(prefix=".bigfile-bench-", dir=repo.parent))
    except OSError:
        return Path(tempfile.mkdtemp(prefix="bigfile-bench-"))


def measure(args: argparse.Namespace, data_dir: Path, cleanup: bool, *, sizes: list[int],
            regex_sizes: list[int], s3_size: int, payload_size: int, command: str,
            info: dict[str, str]) -> dict[str, Any]:
    """Run every benchmark and save the raw results (JSON) before any reporting; returns
    what was saved."""
    for tool in ("sed", "perl", "cp", "cmp", "cat"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is needed on PATH")
    compile_package()
    t_start = time.perf_counter()
    log(f"data in {data_dir}; sizes {', '.join(human(s) for s in sizes)}; repeat {args.repeat}")
    bench = Bench(data_dir)
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
                bench.s3 = s3_patch(bench.big, s3_size, data_dir)
                bench.s3["moved"] = [s3_bytes_moved(s3_size, verify)
                                     for verify in ("fast", "full")]
            except Exception as exc:  # the local figures are still worth reporting
                log(f"S3 benchmark failed: {type(exc).__name__}: {exc}")
        if not args.no_azure:
            try:
                bench.azure = azure_edits(bench.big, s3_size, data_dir)
            except Exception as exc:  # as for S3
                log(f"Azure benchmark failed: {type(exc).__name__}: {exc}")
    finally:
        if cleanup:
            shutil.rmtree(data_dir, ignore_errors=True)
    saved = {"command": command, "date": _dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
             "sizes": sizes, "regex_sizes": regex_sizes, "repeat": args.repeat,
             "elapsed": time.perf_counter() - t_start, "info": info, "s3": bench.s3,
             "azure": bench.azure,
             "holes": bench.holes_info, "results": bench.results.to_json()}
    raw = (data_dir if not cleanup else Path(tempfile.gettempdir())) / "bigfile-bench-results.json"
    raw.write_text(json.dumps(saved, indent=1))
    log(f"raw results in {raw} (re-report with --report-from)")
    return saved
