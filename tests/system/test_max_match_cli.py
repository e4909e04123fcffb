"""The bigfile command refuses a regex match longer than --max-match at any shard size."""

from __future__ import annotations

import subprocess
import sys


def test_cli_reproduction_exits_1_at_shard_size_16(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"ab" * 20)
    cli = [sys.executable, "-m", "airflow_bigfile", "replace", str(path), "--regex",
           "--find", "(?:ab)+$", "--replace", "X", "--max-match", "8"]
    for shard_size in ("1", "16"):
        run = subprocess.run([*cli, "--shard-size", shard_size], capture_output=True, text=True)
        assert run.returncode == 1, run.stderr
        assert "max_match=8" in run.stderr and "Traceback" not in run.stderr
    assert path.read_bytes() == b"ab" * 20
