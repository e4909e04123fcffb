"""The engine never imports Airflow: ``airflow_bigfile`` and every module under it except the
provider's ``operators`` and ``hooks``, imported in a fresh interpreter, leave ``airflow``
out of ``sys.modules`` (the CLI, the fsspec protocol and plain Python use must work, and stay
light, without it)."""

from __future__ import annotations

import json
import subprocess
import sys

ENGINE_IMPORTS = """
import importlib, json, pkgutil, sys

import airflow_bigfile

skip = ("airflow_bigfile.operators", "airflow_bigfile.hooks", "airflow_bigfile.__main__")
names = sorted(m.name for m in pkgutil.walk_packages(airflow_bigfile.__path__, "airflow_bigfile.")
               if not m.name.startswith(skip))
for name in names:
    importlib.import_module(name)
airflow = sorted(m for m in sys.modules if m == "airflow" or m.startswith("airflow."))
print(json.dumps({"imported": names, "airflow": airflow}))
"""


def test_the_engine_never_imports_airflow() -> None:
    proc = subprocess.run([sys.executable, "-c", ENGINE_IMPORTS], capture_output=True,
                          text=True, timeout=120, check=True)
    found = json.loads(proc.stdout)
    assert {"airflow_bigfile.api", "airflow_bigfile.fs.filesystem",
            "airflow_bigfile.cli.command", "airflow_bigfile.targets.s3"} <= set(found["imported"])
    assert found["airflow"] == []
