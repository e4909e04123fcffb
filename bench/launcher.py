"""Run one measured command in its own process: wall time (fork to exit), peak RSS, CPU
time and the bytes it read from and wrote to the disk."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Run:
    """One measured run of a command."""

    seconds: float
    rss: int            # bytes
    code: int
    stdout: str
    stderr: str
    cpu: float = 0.0    # user + system seconds, the command and the children it waited for
    disk_read: int = 0  # bytes read from the disk (not from the page cache)
    disk_written: int = 0  # bytes it dirtied for the disk (written back now or later)


# Spawns the measured command and writes its wall time, peak RSS, exit code, CPU time and
# block I/O counts to the descriptor named first. A small process of its own, because Linux
# charges a child's peak RSS with the memory of whatever exec'd it: spawned straight from
# the benchmark process (large while it runs the S3 server), every command would inherit
# its size in ru_maxrss.
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
    "cpu = usage.ru_utime + usage.ru_stime\n"
    "os.write(report, f'{seconds} {usage.ru_maxrss} {code} {cpu} {usage.ru_inblock} '\n"
    "               f'{usage.ru_oublock}'.encode())\n"
)


def run_proc(cmd: list[str], *, env: dict[str, str] | None = None, scratch: Path) -> Run:
    """Run ``cmd`` through :data:`LAUNCHER`: its wall time (fork to exit) and peak RSS (the
    ``wait4`` rusage covers the children it waited for, e.g. a process pool's workers);
    its output is kept in files under ``scratch``."""
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
        seconds, rss_kb, code, cpu, blocks_in, blocks_out = text.split()
        # ru_inblock / ru_oublock count 512-byte units (Linux's task I/O accounting)
        return Run(float(seconds), int(rss_kb) * 1024, int(code),
                   out.read().decode(errors="replace"), stderr, float(cpu),
                   int(blocks_in) * 512, int(blocks_out) * 512)
