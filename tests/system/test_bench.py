"""The benchmark suite's smoke run: ``bench/run.py --quick`` completes and writes its report."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.neighbours import require_root

BENCH = Path(__file__).resolve().parents[2] / "bench" / "run.py"


@pytest.mark.timeout(300)
def test_bench_quick_writes_a_table(tmp_path: Path) -> None:
    out = tmp_path / "benchmarks.md"
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--data-dir", str(tmp_path / "data"),
         "--out", str(out)],
        capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "dense same-length replace" in proc.stdout
    assert "Targets (issue 6)" in proc.stdout

    text = out.read_text()
    assert "| benchmark | size | ours | ours s | reference | reference s | ratio |" in text
    assert "python bench/run.py --quick" in text
    assert "## Targets (issue 6)" in text
    rows = [line for line in text.splitlines()
            if line.startswith("| ") and line.endswith((" yes |", " NO |", " n/a |"))]
    labels = {row.split(" | ")[0].lstrip("| ") for row in rows}
    assert {"dense same-length replace", "sparse length-changing replace",
            "10,000 8-byte patches", "insert at offset 100", "regex replace",
            "date-reordering regex", "date regex scaling",
            "insert into a sparse file (holes)", "bound: raw pwrite loop vs a rewrite"} <= labels
    assert "cp + fsync + mv" in text and "### Sparse files" in text
    # workers elsewhere: each object byte fetched once, each staged byte written and read once
    assert "| fast | 1.00 | 1.00 | 1.00 | 1.00 | yes |" in text
    assert "### Azure Blob (Azurite)" in text and "blob identical to the expected bytes: yes" \
        in text and "Azure append of 1 MiB sends < 1.1 MiB" in text
    # every output of ours matched the reference tool byte for byte
    ours = [row for row in rows if not row.startswith("| bound:")]
    assert ours and all(row.endswith(" yes |") for row in ours), ours
    assert (tmp_path / "bigfile-bench-results.json").exists() or (
        tmp_path / "data" / "bigfile-bench-results.json").exists()


LTM = BENCH.with_name("ltm.py")


@pytest.mark.timeout(600)
def test_bench_ltm_runs_every_row_in_a_cgroup(tmp_path: Path) -> None:
    """A small larger-than-memory run: every row ran, matched its reference, and the report
    keeps the rest of the file; the cgroup is gone afterwards. It creates a memory cgroup and
    drops the page cache, so it needs root, as the suite has."""
    require_root()
    out = tmp_path / "benchmarks.md"
    out.write_text("# Benchmarks\n\nkept\n")
    before = set(_cgroups())
    proc = subprocess.run(
        [sys.executable, str(LTM), "--limit", "256MiB", "--size", "24MiB", "--runs", "1",
         "--data-dir", str(tmp_path / "data"), "--out", str(out)],
        capture_output=True, text=True, timeout=580)
    assert proc.returncode == 0, proc.stderr[-4000:]
    text = out.read_text()
    assert text.startswith("# Benchmarks\n\nkept\n")
    assert "## Larger than memory (issue 15)" in text and "python bench/ltm.py --limit" in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    labels = [row.split(" | ")[0].lstrip("| ") for row in rows[1:]]
    assert labels == ["cp + sync + mv (the durable-copy floor)", "dense same-length replace",
                      "dense same-length replace, --verify full",
                      "sparse length-changing replace", "insert at offset 100"]
    assert all(row.endswith(" yes |") for row in rows[1:]), rows
    # the floor reads the file from the disk once and writes its copy once
    assert rows[0].split(" | ")[5] == "disk read / written per byte"
    read, written = (float(x) for x in rows[1].split(" | ")[5].split(" / "))
    assert 0.95 <= read <= 1.2 and 0.95 <= written <= 1.2, rows[1]
    assert set(_cgroups()) == before


def _cgroups() -> list[str]:
    roots = [Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/memory")]
    return [p.name for root in roots if root.is_dir() for p in root.glob("bigfile-ltm-*")]


@pytest.mark.timeout(300)
def test_bench_ltm_rows_runs_the_floor_and_the_rows_named(tmp_path: Path) -> None:
    """``--rows dense`` runs the floor and the dense replace only; a row that does not exist
    is refused by name before anything runs."""
    bad = subprocess.run([sys.executable, str(LTM), "--rows", "dense,nosuch"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "no row named nosuch" in bad.stderr, bad.stderr
    require_root()
    out = tmp_path / "benchmarks.md"
    proc = subprocess.run(
        [sys.executable, str(LTM), "--limit", "256MiB", "--size", "24MiB", "--runs", "1",
         "--rows", "dense", "--data-dir", str(tmp_path / "data"), "--out", str(out)],
        capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stderr[-4000:]
    rows = [line for line in out.read_text().splitlines()
            if line.startswith("| ") and "---" not in line]
    assert [row.split(" | ")[0].lstrip("| ") for row in rows[1:]] == [
        "cp + sync + mv (the durable-copy floor)", "dense same-length replace"]
    assert all(row.endswith(" yes |") for row in rows[1:]), rows
