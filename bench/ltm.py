#!/usr/bin/env python
"""Files larger than memory: each rewrite against the durable-copy floor, in a memory cgroup.

Run by ``make bench-ltm`` (``.venv/bin/python bench/ltm.py``, as root: it creates a cgroup
and drops the page cache).

Method
------
* A memory cgroup of its own (cgroup v2 ``/sys/fs/cgroup/<name>`` with ``memory.max``, or
  v1 ``/sys/fs/cgroup/memory/<name>`` with ``memory.limit_in_bytes``, whichever the machine
  has), limited to ``--limit``. The page cache a process fills is charged to its cgroup, so
  a file of ``--size`` (default four times the limit) cannot stay cached.
* The data are the bench package's (``bench/data.py``): a dense CSV (every 100-byte line
  holds ``@old.com``) and a sparse one (one match per 10 MB). Reference outputs come from
  ``sed`` (the replaces) and ``head``/``printf``/``tail`` (the insert), made once, outside
  the cgroup.
* Every run starts from a fresh copy of the data (not timed), then ``sync`` and
  ``echo 3 > /proc/sys/vm/drop_caches``: nothing is cached. The measured command joins the
  cgroup before it execs (``cgroup.procs``); it is timed fork to exit with its peak RSS,
  CPU seconds and the bytes it read from and wrote to the disk (``bench/launcher.py``):
  on a shared machine the times move with the neighbours' load, the bytes do not.
* Rows: the floor, ``cp --reflink=never`` + ``sync FILE`` + ``mv`` (a durable copy that
  replaces the file: ``--reflink=never`` makes GNU ``cp`` copy through 128 KiB reads and
  writes, a real copy of the data, where plain ``cp`` would try a clone, then
  ``copy_file_range``); a dense same-length replace; the same with
  ``--verify full``; a sparse length-changing replace; an insert near the start. Rounds take
  the rows in turn, ``--runs`` rounds; each figure is a median; ratio = floor / row (1.00x: as
  fast as the durable copy). Each output is compared with its reference (``cmp``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

# Run as a script, this folder is on sys.path; the bench package needs the repository.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench import REPO  # noqa: E402
from bench.common import human, log, size_arg  # noqa: E402
from bench.data import generate, identical, remove  # noqa: E402
from bench.launcher import run_proc  # noqa: E402
from bench.report import LTM_END, LTM_HEADING, LTM_START  # noqa: E402
from bench.suite import (  # noqa: E402
    DENSE_REPLACE,
    DURABLE_COPY,
    FIND,
    INSERT_DATA,
    INSERT_OFFSET,
    SED_DENSE,
    SED_SPARSE,
    SPARSE_REPLACE,
    bigfile_cmd,
    compile_package,
)

DEFAULT_OUT = REPO / "docs" / "benchmarks.md"
BAR = 0.8  # issue 15: each rewrite at least this share of the floor's speed
RSS_BAR = 300 * 1000 * 1000
ROWS = ("dense", "dense-full", "sparse", "insert")  # the floor always runs: ratios need it

# Joins the cgroup named first (its cgroup.procs file), then execs the rest.
JOIN = ("import os, sys\n"
        "with open(sys.argv[1], 'w') as f:\n"
        "    f.write(str(os.getpid()))\n"
        "os.execvp(sys.argv[2], sys.argv[2:])\n")


class MemoryCgroup:
    """A memory cgroup limited to ``limit`` bytes, removed on exit."""

    def __init__(self, limit: int) -> None:
        name = f"bigfile-ltm-{os.getpid()}"
        if Path("/sys/fs/cgroup/cgroup.controllers").exists():
            self.version, self.path = 2, Path("/sys/fs/cgroup") / name
            root = Path("/sys/fs/cgroup/cgroup.subtree_control")
            if "memory" not in root.read_text().split():
                root.write_text("+memory")
        else:
            self.version, self.path = 1, Path("/sys/fs/cgroup/memory") / name
        self.path.mkdir()
        if self.version == 2:
            (self.path / "memory.max").write_text(str(limit))
            with contextlib.suppress(FileNotFoundError):
                (self.path / "memory.swap.max").write_text("0")
        else:
            (self.path / "memory.limit_in_bytes").write_text(str(limit))
        self.procs = self.path / "cgroup.procs"

    def wrap(self, cmd: list[str]) -> list[str]:
        """``cmd`` run inside the cgroup."""
        return [sys.executable, "-S", "-c", JOIN, str(self.procs), *cmd]

    def close(self) -> None:
        for _ in range(50):  # the last process may still be leaving
            try:
                self.path.rmdir()
                return
            except OSError:
                time.sleep(0.1)
        log(f"could not remove {self.path}")


def drop_caches() -> None:
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3")


@dataclass
class Row:
    key: str                # what --rows names it by
    label: str
    source: Path
    reference: Path
    cmd: list[str]          # {work} stands for the file being rewritten
    seconds: list[float] = field(default_factory=list)
    rss: list[int] = field(default_factory=list)
    identical: list[bool] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    disk_read: list[int] = field(default_factory=list)
    disk_written: list[int] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    def per_byte(self, counts: list[int]) -> float:
        """A median byte count per byte of the source file."""
        return statistics.median(counts) / self.source.stat().st_size


def references(data: Path, dense: Path, sparse: Path) -> dict[str, Path]:
    """The reference outputs, made once (reused while the data are)."""
    refs = {"dense": data / "ref-dense.csv", "sparse": data / "ref-sparse.csv",
            "insert": data / "ref-insert.csv"}
    scripts = {
        "dense": f"sed {shlex.quote(SED_DENSE)} {dense}",
        "sparse": f"sed {shlex.quote(SED_SPARSE)} {sparse}",
        "insert": f"head -c {INSERT_OFFSET} {dense}; printf %s {shlex.quote(INSERT_DATA)}; "
                  f"tail -c +{INSERT_OFFSET + 1} {dense}",
    }
    for key, path in refs.items():
        src = sparse if key == "sparse" else dense
        stamp = path.with_name(path.name + ".ok")
        if path.exists() and stamp.exists() and stamp.read_text() == str(src.stat().st_mtime_ns):
            continue
        log(f"making the reference {path.name}")
        with open(path, "wb") as out:
            subprocess.run(["sh", "-c", scripts[key]], stdout=out, check=True)
        stamp.write_text(str(src.stat().st_mtime_ns))
    return refs


def measure(args: argparse.Namespace) -> tuple[list[Row], dict[str, str]]:
    data = args.data_dir.resolve()
    data.mkdir(parents=True, exist_ok=True)
    dense = generate(data / f"dense-{args.size}.csv", args.size, sparse=False)
    sparse = generate(data / f"sparse-{args.size}.csv", args.size, sparse=True)
    refs = references(data, dense, sparse)
    compile_package()
    work = data / "work.csv"
    bigfile = [*bigfile_cmd()]
    rows = [
        Row("floor", "cp + sync + mv (the durable-copy floor)", dense, dense,
            ["sh", "-c", DURABLE_COPY, "{work}", "{work}.copy"]),
        Row("dense", "dense same-length replace", dense, refs["dense"],
            [*bigfile, "replace", "{work}", "--find", FIND, "--replace", DENSE_REPLACE,
             "--no-progress"]),
        Row("dense-full", "dense same-length replace, --verify full", dense, refs["dense"],
            [*bigfile, "replace", "{work}", "--find", FIND, "--replace", DENSE_REPLACE,
             "--no-progress", "--verify", "full"]),
        Row("sparse", "sparse length-changing replace", sparse, refs["sparse"],
            [*bigfile, "replace", "{work}", "--find", FIND, "--replace", SPARSE_REPLACE,
             "--no-progress"]),
        Row("insert", f"insert at offset {INSERT_OFFSET}", dense, refs["insert"],
            [*bigfile, "insert", "{work}", "--offset", str(INSERT_OFFSET), "--data",
             INSERT_DATA, "--no-progress"]),
    ]
    rows = [row for row in rows if row.key == "floor" or row.key in args.rows]
    cgroup = MemoryCgroup(args.limit)
    load = []
    try:
        for rnd in range(args.runs):
            for row in rows:
                remove(work)
                subprocess.run(["cp", "--reflink=never", str(row.source), str(work)],
                               check=True)
                drop_caches()
                load.append(os.getloadavg()[0])
                cmd = [part.replace("{work}", str(work)) for part in row.cmd]
                run = run_proc(cgroup.wrap(cmd), scratch=data)
                if run.code != 0:
                    raise SystemExit(f"{row.label} failed ({run.code}): {run.stderr[-2000:]}")
                row.seconds.append(run.seconds)
                row.rss.append(run.rss)
                row.cpu.append(run.cpu)
                row.disk_read.append(run.disk_read)
                row.disk_written.append(run.disk_written)
                row.identical.append(identical(work, row.reference))
                log(f"round {rnd + 1}/{args.runs} {row.label}: {run.seconds:.2f} s, "
                    f"CPU {run.cpu:.2f} s, read {run.disk_read / 2**30:.2f} GiB, written "
                    f"{run.disk_written / 2**30:.2f} GiB, RSS {run.rss / 1e6:.0f} MB, "
                    f"identical {row.identical[-1]}")
    finally:
        cgroup.close()
        remove(work, Path(f"{work}.copy"))
    info = {"cgroup": f"v{cgroup.version}", "kernel": os.uname().release,
            "load": f"{min(load):.2f}-{max(load):.2f} (1-min load average at each run's start)",
            "filesystem": subprocess.run(["df", "-T", str(data)], capture_output=True,
                                         text=True).stdout.splitlines()[-1].split()[1]}
    return rows, info


def table(rows: list[Row]) -> list[str]:
    floor = rows[0].median
    lines = ["| run | median s | runs s | vs floor | CPU s | disk read / written per byte "
             "| peak RSS | identical |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        runs = ", ".join(f"{s:.2f}" for s in row.seconds)
        lines.append(f"| {row.label} | {row.median:.2f} | {runs} | {floor / row.median:.2f}x "
                     f"| {statistics.median(row.cpu):.2f} | {row.per_byte(row.disk_read):.2f} / "
                     f"{row.per_byte(row.disk_written):.2f} | {max(row.rss) / 1e6:.0f} MB "
                     f"| {'yes' if all(row.identical) else 'NO'} |")
    return lines


def verdict(rows: list[Row]) -> list[str]:
    """The issue's bar, row by row (the full-verify row is informative)."""
    floor = rows[0].median
    out = []
    for row in rows[1:]:
        if "verify full" in row.label:
            continue
        ratio, rss = floor / row.median, max(row.rss)
        met = ratio >= BAR and rss < RSS_BAR and all(row.identical)
        out.append(f"- {row.label}: {ratio:.2f}x of the floor (bar {BAR}x), peak RSS "
                   f"{rss / 1e6:.0f} MB: {'met' if met else 'NOT met'}")
    return out


METHOD = ("Each row runs inside a memory cgroup that bench/ltm.py creates (v2 `memory.max`, "
          "or v1 `memory.limit_in_bytes`), on a fresh copy of the data with the page cache "
          "dropped (`sync; echo 3 > /proc/sys/vm/drop_caches`); the page cache is charged to "
          "the cgroup, so the file cannot stay cached. The floor is `cp --reflink=never` + "
          "`sync FILE` + `mv` over the original, measured the same way in the same rounds "
          "(`--reflink=never`: GNU `cp` copies through 128 KiB reads and writes, so the "
          "data are really read and written). Ratio = floor / row. Outputs are compared with `sed` "
          "(replaces) and `head`/`printf`/`tail` (insert). Peak RSS, CPU seconds (user + "
          "system) and the bytes read from and written to the disk (`ru_inblock`, "
          "`ru_oublock`: the kernel's per-task I/O accounting, over the file's size) from "
          "`wait4`: CPU and bytes hold when the neighbours' load moves the times.")


def report(path: Path, command: str, args: argparse.Namespace, rows: list[Row],
           info: dict[str, str]) -> None:
    """Write the section between the ltm markers of ``path`` (appended if absent)."""
    body = [LTM_START, "", f"`{command}`, {time.strftime('%Y-%m-%d %H:%M')} UTC: a "
            f"{human(args.size)} file in a {human(args.limit)} memory cgroup "
            f"({info['cgroup']}, {info['filesystem']}, kernel {info['kernel']}), caches "
            f"dropped before each run, median of {args.runs}; load {info['load']}.", "",
            METHOD, "",
            *table(rows), "", *verdict(rows), "", LTM_END]
    text = path.read_text() if path.exists() else ""
    if LTM_START in text and LTM_END in text:
        head, rest = text.split(LTM_START, 1)
        text = head + "\n".join(body) + rest.split(LTM_END, 1)[1]
    else:
        text = text.rstrip("\n") + f"\n\n{LTM_HEADING}\n\n" + "\n".join(body) + "\n"
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--limit", type=size_arg, default=size_arg("1GiB"),
                   help="the cgroup's memory limit (default 1GiB)")
    p.add_argument("--size", type=size_arg,
                   help="file size (default: four times the limit)")
    p.add_argument("--runs", type=int, default=2, help="rounds; medians (default 2)")
    p.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "bigfile-ltm",
                   help="scratch folder for data and references (kept and reused)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT,
                   help="markdown report whose larger-than-memory section is rewritten")
    p.add_argument("--rows", type=lambda v: v.split(","), default=list(ROWS),
                   help=f"comma-separated rows to run besides the floor, of {','.join(ROWS)} "
                        "(default all)")
    args = p.parse_args(argv)
    if unknown := set(args.rows) - set(ROWS):
        p.error(f"--rows: no row named {', '.join(sorted(unknown))} (rows: {','.join(ROWS)})")
    args.size = args.size or 4 * args.limit
    if args.runs < 1:
        p.error("--runs must be >= 1")
    if os.geteuid() != 0:
        p.error("needs root: it creates a memory cgroup and drops the page cache")
    command = " ".join(["python bench/ltm.py", *(shlex.quote(a) for a in (
        argv if argv is not None else sys.argv[1:]))])
    rows, info = measure(args)
    lines = table(rows)
    print("\n".join(lines))
    print("\n".join(verdict(rows)))
    report(args.out, command, args, rows, info)
    print(f"\nwrote {args.out}")
    return 0 if all(all(r.identical) for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
