"""Crash safety: a child process running ``edit_file`` is SIGKILLed at many points of its
commit, then recovery runs; the file must be exactly the old or exactly the new version.

The kills come from the engine's test hook (``BIGFILE_CRASH=point:N`` SIGKILLs the process the
N-th time it passes ``point``) at every named point of both local commit modes, with N spread
from 1 to the number of times the point is passed, and from random-time ``kill -9``. A child
is forked from a "zygote" subprocess (``sys.executable -c ...``) that imported the engine once,
so a trial costs tens of milliseconds instead of an interpreter start; a few trials also run
in a freshly started interpreter. After each kill, recovery runs in this process, either by
``recover_target`` or by the next ``edit_file`` (every entry point recovers first), and the
folder must hold nothing but the target: no journal, no ``.new`` file, no staging, no lock.
"""

from __future__ import annotations

import collections
import concurrent.futures
import functools
import json
import os
import queue
import random
import signal
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from airflow_bigfile import edit_file, recover_target
from airflow_bigfile.edits import (
    Append,
    Delete,
    Insert,
    Patch,
    Replace,
    Truncate,
    edit_to_json,
)
from tests.model import apply_model
from tests.procs import descendants, wait_until_gone

NAME = "data.bin"
FILE_MODE = 0o640
SHARD = 8192
BLOCK = 4096  # each shard is read in two blocks
REC = b"#REC#"
RECOVER_EDIT = [Patch(0, REC)]  # the next job's edit, when recovery runs through edit_file
# N values tried per crash point (all of them when fewer)
SAMPLES_PER_POINT = {"inplace": 24, "rewrite": 40}
RANDOM_KILLS = 24                    # random-time kills per scenario
INPLACE_POINTS = ("journal-write", "journal-synced", "data-write", "data-synced",
                  "journal-removed")
REWRITE_POINTS = ("rewrite-write", "rewrite-synced", "renamed")
# where a kill at each point must leave the file once recovered
EXPECT = {"journal-write": "old", "journal-synced": "old", "data-write": "old",
          "data-synced": "old", "journal-removed": "new", "rewrite-write": "old",
          "rewrite-synced": "old", "renamed": "new"}

# The zygote reads one JSON command per line, forks a child that runs it (with BIGFILE_CRASH
# set as asked), optionally SIGKILLs the child after ``kill_after`` seconds, and answers one
# JSON line: how the child ended and what it reported (crash-point counts, seconds taken).
ZYGOTE = textwrap.dedent(r"""
    import json, os, signal, sys, time
    import airflow_bigfile.api as api
    import airflow_bigfile.commit.crash as crash

    def kill_on_removal(n):
        # SIGKILL at the n-th file or folder removal (audit events); counts them all
        seen = [0]
        def hook(event, args):
            if event in ("os.remove", "os.rmdir"):
                seen[0] += 1
                crash._counts["removal"] = seen[0]
                if seen[0] == n:
                    os.kill(os.getpid(), signal.SIGKILL)
        sys.addaudithook(hook)

    def child(cmd, w):
        if cmd.get("kill_on_removal"):
            kill_on_removal(cmd["kill_on_removal"])
        if cmd.get("crash"):
            os.environ["BIGFILE_CRASH"] = cmd["crash"]
        else:
            os.environ.pop("BIGFILE_CRASH", None)
        code = 0
        try:
            started = time.monotonic()
            if cmd["op"] == "recover":
                api.recover_target(cmd["path"])
                info = {}
            else:
                res = api.edit_file(cmd["path"], cmd["edits"], mode=cmd["mode"],
                                    shard_size=cmd["shard_size"], workers=1,
                                    block_size=cmd["block_size"], writer=cmd["writer"])
                info = {"commit_mode": res.commit_mode}
            info["seconds"] = time.monotonic() - started
            info["counts"] = dict(getattr(crash, "_counts", {}))
        except BaseException as exc:
            info = {"error": f"{type(exc).__name__}: {exc}"}
            code = 3
        os.write(w, json.dumps(info).encode())
        os._exit(code)

    def warm_up():
        # the first edit in a process pays one-off costs; pay them here, once, not per child
        import tempfile
        from airflow_bigfile import Patch
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "warm")
            with open(path, "wb") as f:
                f.write(bytes(100000))
            for mode, writer in (("inplace", "pwrite"), ("inplace", "mmap"), ("rewrite", "pwrite")):
                api.edit_file(path, [Patch(1, b"y"), Patch(50000, b"zz")], workers=1,
                              shard_size=4096, mode=mode, writer=writer)
            api.recover_target(path)

    warm_up()
    print("ready", flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            child(cmd, w)
        os.close(w)
        if cmd.get("kill_after") is not None:
            time.sleep(cmd["kill_after"])
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        _, status = os.waitpid(pid, 0)
        raw = b""
        while True:
            chunk = os.read(r, 1 << 16)
            if not chunk:
                break
            raw += chunk
        os.close(r)
        print(json.dumps({
            "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
            "code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
            "info": json.loads(raw) if raw else None}), flush=True)
""")

# A freshly started interpreter doing one edit (BIGFILE_CRASH comes from its environment).
FRESH_CHILD = textwrap.dedent(r"""
    import json, sys
    from airflow_bigfile import edit_file
    cmd = json.loads(sys.argv[1])
    edit_file(cmd["path"], cmd["edits"], mode=cmd["mode"], shard_size=cmd["shard_size"],
              workers=cmd.get("workers", 1), executor=cmd.get("executor", "thread"),
              block_size=cmd["block_size"], writer=cmd["writer"])
""")


class Zygote:
    """A long-lived child interpreter that forks one grandchild per trial."""

    def __init__(self) -> None:
        env = {k: v for k, v in os.environ.items() if k != "BIGFILE_CRASH"}
        self.proc = subprocess.Popen([sys.executable, "-c", ZYGOTE], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env,
                                     cwd=str(Path(__file__).resolve().parents[2]))
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "ready"

    def run(self, **cmd: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, "the zygote died"
        return json.loads(line)

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


class ZygotePool:
    """A few zygotes, so trials run in parallel (they wait on the disk more than the CPU)."""

    def __init__(self, count: int) -> None:
        self.all = [Zygote() for _ in range(count)]
        self.free: queue.Queue[Zygote] = queue.Queue()
        for z in self.all:
            self.free.put(z)

    def run(self, **cmd: Any) -> dict[str, Any]:
        z = self.free.get()
        try:
            return z.run(**cmd)
        finally:
            self.free.put(z)

    def close(self) -> None:
        for z in self.all:
            z.close()


PARALLEL = max(2, min(4, os.cpu_count() or 1))


@pytest.fixture(scope="module")
def zygotes() -> Iterator[ZygotePool]:
    pool = ZygotePool(PARALLEL)
    yield pool
    pool.close()


# -- scenarios ------------------------------------------------------------------------------

@dataclass
class Scenario:
    id: str
    mode: str
    writer: str
    old: bytes
    edits: list

    @functools.cached_property
    def new(self) -> bytes:
        return apply_model(self.old, self.edits)

    @property
    def points(self) -> tuple[str, ...]:
        return INPLACE_POINTS if self.mode == "inplace" else REWRITE_POINTS


def _content(rng: random.Random, size: int, hot: list[int]) -> bytes:
    """Random bytes with needles in the ``hot`` shards (some straddling into the shard
    before), none in the first 16 bytes or the last 5000 (where the scenarios truncate)."""
    data = bytearray(rng.randbytes(size))
    for k, shard in enumerate(hot):
        at = shard * SHARD - 3 if k % 3 == 0 else shard * SHARD + rng.randrange(SHARD - 8)
        if 16 <= at < size - 5000:
            data[at:at + 6] = b"needle"
    return bytes(data)


def _patches(rng: random.Random, hot: list[int], per_shard: int, data: bytes,
             avoid: bytes) -> list[Patch]:
    """Patches in the ``hot`` shards (some across the shard's end, none near each other)
    that overlap no match of ``avoid`` in ``data``."""
    used, at = [], data.find(avoid)
    while at >= 0:
        used.append((at, at + len(avoid)))
        at = data.find(avoid, at + len(avoid))
    out = []
    for shard in hot:
        for k in range(per_shard):
            length = rng.randint(1, 40)
            offset = (shard + 1) * SHARD - rng.randrange(1, length + 1) if k == 0 and \
                shard % 2 else shard * SHARD + rng.randrange(SHARD - length)
            if offset < 16 or any(offset < e + 8 and s < offset + length + 8 for s, e in used):
                continue
            out.append(Patch(offset, rng.randbytes(length)))
            used.append((offset, offset + length))
    return out


def _hot(rng: random.Random, size: int, count: int) -> list[int]:
    """Which shards the edits touch (the last few are left to the truncate and appends)."""
    return sorted(rng.sample(range(size // SHARD - 1), count))


def scenarios() -> list[Scenario]:
    out = []
    for k, writer in enumerate(("pwrite", "mmap")):
        rng = random.Random(100 + k)
        size = 480 * 1024 + 123
        hot = _hot(rng, size, 22)
        old = _content(rng, size, hot)
        edits = [*_patches(rng, hot, 3, old, b"needle"), Replace(b"needle", b"NEEDLE"),
                 Truncate(size - 2500), Append(b"appended-1\n"), Append(rng.randbytes(3000))]
        out.append(Scenario(f"inplace-{writer}", "inplace", writer, old, edits))
    rng = random.Random(200)
    size = 512 * 1024 + 77
    hot = _hot(rng, size, 22)
    old = _content(rng, size, hot)
    length_changing = [Replace(b"needle", b"a-much-longer-needle"), Truncate(size - 1000),
                       Append(b"appended\n")]
    for i, p in enumerate(_patches(rng, hot, 2, old, b"needle")):
        if i % 4 == 1:
            length_changing.append(Insert(p.offset, p.data))
        elif i % 4 == 2:
            length_changing.append(Delete(p.offset, len(p.data)))
        else:
            length_changing.append(p)
    out.append(Scenario("rewrite-lengths", "rewrite", "pwrite", old, length_changing))
    rng = random.Random(300)
    size = 400 * 1024 + 5
    hot = _hot(rng, size, 22)
    old = _content(rng, size, hot)
    out.append(Scenario("rewrite-same-length", "rewrite", "pwrite", old,
                        [*_patches(rng, hot, 2, old, b"needle"),
                         Replace(b"needle", b"NEEDLE"), Append(b"more")]))
    # Offset-only edits skip the shard pass: the commit writes straight from the edit list.
    rng = random.Random(400)
    size = 300 * 1024 + 11
    hot = _hot(rng, size, 22)
    old = _content(rng, size, hot)
    out.append(Scenario("inplace-patches-only", "inplace", "pwrite", old,
                        [*_patches(rng, hot, 3, old, b"needle"), Truncate(size - 700),
                         Append(b"tail\n")]))
    return out


SCENARIOS = scenarios()
# outcomes per (mode, point) over the module, for the summary at the end
TOTALS: dict[tuple[str, str], collections.Counter[str]] = collections.defaultdict(
    collections.Counter)


# -- one trial ------------------------------------------------------------------------------

def _command(sc: Scenario, path: Path, **extra: Any) -> dict[str, Any]:
    return {"op": "edit", "path": str(path), "edits": [edit_to_json(e) for e in sc.edits],
            "mode": sc.mode, "shard_size": SHARD, "block_size": BLOCK, "writer": sc.writer,
            **extra}


def _fresh_target(folder: Path, data: bytes) -> Path:
    folder.mkdir()
    path = folder / NAME
    path.write_bytes(data)
    os.chmod(path, FILE_MODE)
    return path


def settle(sc: Scenario, path: Path, via_edit: bool) -> str:
    """Recover the target after a kill and say whether it holds the old or the new version.
    Fails unless the bytes are exactly one of them, the mode bits are kept and nothing but the
    target is left in its folder."""
    if via_edit:
        edit_file(str(path), RECOVER_EDIT, workers=1)
        old, new = REC + sc.old[len(REC):], REC + sc.new[len(REC):]  # the model's result
    else:
        recover_target(str(path))
        old, new = sc.old, sc.new
    data = path.read_bytes()
    real = path.resolve()  # the target may be named through a link: its sidecars are here
    leftovers = sorted(set(os.listdir(real.parent)) - {real.name})
    assert not leftovers, f"left behind after recovery: {leftovers}"
    assert stat.S_IMODE(path.stat().st_mode) == FILE_MODE
    if data == old:
        return "old"
    if data == new:
        return "new"
    first = next((i for i, (a, b) in enumerate(zip(data, old, strict=False)) if a != b),
                 min(len(data), len(old)))
    raise AssertionError(f"after recovery the file is neither the old nor the new version "
                         f"(size {len(data)}, old {len(old)}, new {len(new)}; first "
                         f"difference from old at {first})")


def _spread(count: int, samples: int) -> list[int]:
    """N values from 1 to ``count``: all of them, or ``samples`` spread evenly (ends kept)."""
    if count <= samples:
        return list(range(1, count + 1))
    return sorted({1 + round(i * (count - 1) / (samples - 1)) for i in range(samples)})


@pytest.mark.parametrize("sc", SCENARIOS, ids=[s.id for s in SCENARIOS])
def test_kill_at_every_point(sc: Scenario, zygotes: ZygotePool, tmp_path: Path) -> None:
    rng = random.Random(sc.id)
    tally: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    trials = iter(range(10**6))

    def one(kill: dict[str, Any], label: str) -> dict[str, Any]:
        trial = next(trials)
        path = _fresh_target(tmp_path / f"t{trial}", sc.old)
        reply = zygotes.run(**_command(sc, path, **kill))
        info = reply["info"] or {}
        assert "error" not in info, f"{label}: the child failed: {info['error']}"
        killed = reply["signal"] == signal.SIGKILL
        assert killed or reply["code"] == 0, f"{label}: child ended with {reply}"
        outcome = settle(sc, path, via_edit=trial % 3 == 0)
        tally[label][outcome] += 1
        point = label.split(":")[0]
        if killed and point in EXPECT:
            assert outcome == EXPECT[point], f"{label}: expected the {EXPECT[point]} file"
        return reply

    def many(kills: list[tuple[dict[str, Any], str]]) -> list[dict[str, Any]]:
        with concurrent.futures.ThreadPoolExecutor(PARALLEL) as pool:
            return list(pool.map(lambda k: one(*k), kills))

    # Count how often each point is passed (runs that never crash), checking the edit too.
    replies = many([({"crash": f"{point}:{10**9}"}, "uncrashed") for point in sc.points])
    counts = {point: r["info"]["counts"].get(point, 0)
              for point, r in zip(sc.points, replies, strict=True)}
    assert all(r["info"]["commit_mode"] == sc.mode for r in replies)
    assert all(counts.values()), f"points never passed: {counts}"
    assert counts.get("data-write", 2) > 1 and counts.get("rewrite-write", 2) > 1
    duration = max(r["info"]["seconds"] for r in replies)

    kills = [({"crash": f"{point}:{n}"}, f"{point}:{n}")
             for point in sc.points for n in _spread(counts[point], SAMPLES_PER_POINT[sc.mode])]
    first = sc.points[0]
    kills.append(({"crash": f"{first}:{counts[first] + 1}"}, "past-the-end"))
    kills += [({"kill_after": rng.uniform(0, duration * 1.3)}, "random")
              for _ in range(RANDOM_KILLS)]
    replies = many(kills)
    for (kill, label), reply in zip(kills, replies, strict=True):
        if "crash" in kill:
            want = None if label == "past-the-end" else signal.SIGKILL
            assert reply["signal"] == want, f"{label}: {reply}"

    by_point: dict[str, collections.Counter[str]] = collections.defaultdict(
        collections.Counter)
    for label, c in tally.items():
        by_point[label.split(":")[0]].update(c)
    killed = sum(1 for r in replies if r["signal"] == signal.SIGKILL)
    print(f"\n{sc.id}: {len(kills) + len(sc.points)} trials, {killed} killed; "
          f"points passed {counts}")
    for point, c in sorted(by_point.items()):
        print(f"  {point:16s} old={c['old']:3d} new={c['new']:3d}")
    total = sum((c for c in by_point.values()), collections.Counter())
    assert total["old"] and total["new"], dict(by_point)
    for point, c in by_point.items():
        TOTALS[sc.mode, point].update(c)
    TOTALS[sc.mode, "killed"]["trials"] += killed


@pytest.mark.parametrize("sc", [SCENARIOS[0], SCENARIOS[2]], ids=["inplace", "rewrite"])
def test_kill_fresh_interpreter(sc: Scenario, tmp_path: Path) -> None:
    """The same, in a freshly started ``sys.executable -c`` per trial (no fork), at the first
    pass of each point; these run in parallel."""
    procs = []
    for k, point in enumerate(sc.points):
        path = _fresh_target(tmp_path / f"t{k}", sc.old)
        env = {**os.environ, "BIGFILE_CRASH": f"{point}:1"}
        procs.append((point, path, subprocess.Popen(
            [sys.executable, "-c", FRESH_CHILD, json.dumps(_command(sc, path))], env=env,
            cwd=str(Path(__file__).resolve().parents[2]), stderr=subprocess.PIPE)))
    for k, (point, path, proc) in enumerate(procs):
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == -signal.SIGKILL, (point, proc.returncode, err[-2000:])
        outcome = settle(sc, path, via_edit=k % 2 == 1)
        assert outcome == EXPECT[point], point
        TOTALS[sc.mode, point][outcome] += 1
        TOTALS[sc.mode, "killed"]["trials"] += 1


@pytest.mark.parametrize("sc", [SCENARIOS[0], SCENARIOS[1]], ids=["inplace", "rewrite"])
def test_kill_with_process_workers(sc: Scenario, tmp_path: Path) -> None:
    """With ``executor="process"``: kills at the first pass of commit points, and kills while
    the worker processes patch. The workers die with the job (none is left 2 s after it),
    and recovery finds the old or the new file exactly, nothing else in the folder."""
    points = ("data-write", "journal-removed") if sc.mode == "inplace" else \
        ("rewrite-write", "renamed")  # one that leaves the old file, one the new
    trials = [(point, None) for point in points] + [("patching", 0.0), ("patching", 0.05)]

    def one(k: int, point: str, delay: float | None) -> tuple[str, bool]:
        path = _fresh_target(tmp_path / f"t{k}", sc.old)
        env = {k: v for k, v in os.environ.items() if k != "BIGFILE_CRASH"}
        if delay is None:
            env["BIGFILE_CRASH"] = f"{point}:1"
        cmd = _command(sc, path, executor="process", workers=2)
        proc = subprocess.Popen([sys.executable, "-c", FRESH_CHILD, json.dumps(cmd)], env=env,
                                cwd=str(Path(__file__).resolve().parents[2]),
                                stderr=subprocess.PIPE)
        seen: dict[int, str] = {}
        kill_at: float | None = None
        while proc.poll() is None:
            seen.update(descendants(proc.pid))
            if delay is not None and kill_at is None and len(seen) >= 2:
                kill_at = time.monotonic() + delay
            if kill_at is not None and time.monotonic() >= kill_at:
                proc.kill()
            time.sleep(0.02)
        _, err = proc.communicate(timeout=60)
        # a kill while patching may come after a small job has already finished
        finished = delay is not None and proc.returncode == 0
        assert finished or proc.returncode == -signal.SIGKILL, (point, proc.returncode,
                                                                 err[-2000:])
        assert seen, f"{point}: no worker process was ever seen"
        assert wait_until_gone(seen, 2) == [], f"{point}: workers outlived the job"
        outcome = settle(sc, path, via_edit=k % 2 == 1)
        assert delay is not None or outcome == EXPECT[point], point
        return outcome, not finished

    with concurrent.futures.ThreadPoolExecutor(PARALLEL) as pool:
        outcomes = list(pool.map(lambda t: one(t[0], *t[1]), enumerate(trials)))
    for (point, _), (outcome, killed) in zip(trials, outcomes, strict=True):
        TOTALS[sc.mode, point][outcome] += 1
        TOTALS[sc.mode, "killed"]["trials"] += killed


@pytest.mark.parametrize("sc", [SCENARIOS[0], SCENARIOS[2]], ids=["inplace", "rewrite"])
def test_kill_through_a_link(sc: Scenario, zygotes: ZygotePool, tmp_path: Path) -> None:
    """The target named through a symbolic link in another folder, killed at the first (and
    for the writing points the second) pass of every point, then recovered through the link,
    the real path or the next edit: old or new exactly, the link still a link, nothing left
    in either folder."""
    for k, point in enumerate(sc.points):
        for n in (1, 2) if point in ("journal-write", "data-write", "rewrite-write") else (1,):
            real = _fresh_target(tmp_path / f"real{k}-{n}", sc.old)
            links = tmp_path / f"links{k}-{n}"
            links.mkdir()
            link = links / "alias.bin"
            link.symlink_to(real)
            reply = zygotes.run(**_command(sc, link, crash=f"{point}:{n}"))
            assert reply["signal"] == signal.SIGKILL, (point, n, reply)
            outcome = settle(sc, link if k % 2 else real, via_edit=n == 2)
            assert outcome == EXPECT[point], (point, n)
            assert link.is_symlink() and os.listdir(links) == ["alias.bin"]
            TOTALS[sc.mode, point][outcome] += 1
            TOTALS[sc.mode, "killed"]["trials"] += 1


@pytest.mark.parametrize("sc", [SCENARIOS[0], SCENARIOS[1]], ids=["inplace", "rewrite"])
def test_kill_at_every_removal(sc: Scenario, zygotes: ZygotePool, tmp_path: Path) -> None:
    """A kill at each file or folder the job removes (its journal, its staged shards and
    results, the marker, its folder): whatever was left half removed, recovery finds the old
    or the new file and removes the rest, as the next job does."""
    path = _fresh_target(tmp_path / "count", sc.old)
    reply = zygotes.run(**_command(sc, path, kill_on_removal=10**9))
    count = reply["info"]["counts"]["removal"]
    assert count >= 4, reply  # staged files, marker and folder at least
    settle(sc, path, via_edit=False)

    def one(n: int) -> str:
        path = _fresh_target(tmp_path / f"t{n}", sc.old)
        reply = zygotes.run(**_command(sc, path, kill_on_removal=n))
        assert reply["signal"] == signal.SIGKILL, (n, reply)
        return settle(sc, path, via_edit=n % 2 == 0)

    with concurrent.futures.ThreadPoolExecutor(PARALLEL) as pool:
        outcomes = collections.Counter(pool.map(one, range(1, count + 1)))
    assert outcomes["new"], outcomes  # the clean-up comes after the commit
    TOTALS[sc.mode, "removal"].update(outcomes)
    TOTALS[sc.mode, "killed"]["trials"] += count


def test_kill_during_recovery(zygotes: ZygotePool, tmp_path: Path) -> None:
    """A kill while recovery rolls a journal back, then recovery again: the old file."""
    sc = SCENARIOS[0]
    rng = random.Random(7)
    outcomes = collections.Counter()
    for trial in range(12):
        path = _fresh_target(tmp_path / f"r{trial}", sc.old)
        reply = zygotes.run(**_command(sc, path, crash="data-synced:1"))
        assert reply["signal"] == signal.SIGKILL
        reply = zygotes.run(op="recover", path=str(path), kill_after=rng.uniform(0, 0.15))
        outcomes["killed" if reply["signal"] else "finished"] += 1
        assert settle(sc, path, via_edit=trial % 2 == 0) == "old"
    print(f"\nrecovery killed/finished: {dict(outcomes)}")


def test_crash_summary() -> None:
    """Over the module: at least 200 killed trials, both outcomes seen in both modes."""
    if not any(mode == "inplace" for mode, _ in TOTALS) or \
            not any(mode == "rewrite" for mode, _ in TOTALS):
        raise AssertionError("the summary counts the module's crash trials: run them too")
    print("\ncrash trials, outcome after recovery:")
    for (mode, point), c in sorted(TOTALS.items()):
        if point != "killed":
            print(f"  {mode:8s} {point:16s} old={c['old']:3d} new={c['new']:3d}")
    killed = sum(TOTALS[mode, "killed"]["trials"] for mode in ("inplace", "rewrite"))
    print(f"  killed trials: {killed}")
    assert killed >= 200
    for mode in ("inplace", "rewrite"):
        outcomes = sum((c for (m, p), c in TOTALS.items() if m == mode and p != "killed"),
                       collections.Counter())
        assert outcomes["old"] and outcomes["new"], (mode, dict(outcomes))
