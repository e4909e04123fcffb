"""Storage backends for the suites that every backend passes: the engine
(``tests/integration/test_backends.py``), the ``bigfile`` fsspec protocol
(``test_fsspec.py``) and pandas/Dask by URL (``test_pandas_dask.py``).

A :class:`Backend` is an inner fsspec filesystem with a fresh folder for one test. The
fixtures ``local_backend``, ``memory_backend``, ``s3_backend`` and ``azure_backend`` in
``tests/conftest.py`` make them, and ``any_backend`` is each in turn. To add a backend: write
its fixture (a fresh folder on a real server, torn down after the test) returning a
:class:`Backend`, and add its name to ``any_backend``'s params; every shared suite then runs
on it.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

import fsspec

from airflow_bigfile.edits import Append, Patch
from airflow_bigfile.fs.filesystem import BigFileFileSystem


@dataclass
class Backend:
    """One inner filesystem and a fresh folder on it for the test."""

    name: str
    inner: fsspec.AbstractFileSystem
    root: str                                        # inner path of the test's folder
    options: dict[str, Any] = field(default_factory=dict)   # the inner fs's storage options
    examples: int = 40                               # state machine runs
    edit_options: dict[str, Any] = field(default_factory=dict)  # the bigfile fs's
    sample: int = 256 << 10                          # bytes of the engine suite's sample
    commit_modes: tuple[str, ...] = ("stream",)      # how the engine commits an edit here

    @property
    def fs(self) -> BigFileFileSystem:
        """A bigfile filesystem over the inner one."""
        return BigFileFileSystem(fs=self.inner, edit_options=self.edit_options)

    def path(self, name: str) -> str:
        return f"{self.root}/{name}"

    def url(self, name: str) -> str:
        """``bigfile::<inner URL>`` of ``name``."""
        return "bigfile::" + self.inner.unstrip_protocol(self.path(name))

    def put(self, name: str, data: bytes) -> str:
        self.inner.pipe_file(self.path(name), data)
        return self.path(name)

    def get(self, name: str) -> bytes:
        self.inner.invalidate_cache()
        return self.inner.cat_file(self.path(name))

    def target(self, name: str) -> str:
        """The URL the engine edits for ``name`` (the plain path locally)."""
        path = self.path(name)
        return path if self.name == "local" else self.inner.unstrip_protocol(path)

    def names(self) -> list[str]:
        self.inner.invalidate_cache()
        return sorted(p.rsplit("/", 1)[-1] for p in self.inner.ls(self.root, detail=False))


def sample(size: int, seed: int = 1) -> bytes:
    """``size`` bytes over ``ab,\\n``: short records, dense and self-overlapping matches."""
    rng = random.Random(seed)
    block = bytes(rng.choice(b"ab,\n") for _ in range(1 << 16))
    return (block * (size // len(block) + 1))[:size]


#: the edit list :func:`killed_edit` runs (the object store crash tests)
KILLED_EDITS = [Patch(3 << 20, b"NEW"), Append(b"more")]


def killed_edit(url: str, storage_options: dict[str, Any], point: str
                ) -> subprocess.CompletedProcess[bytes]:
    """Run :data:`KILLED_EDITS` on ``url`` in a fresh interpreter that SIGKILLs itself at
    the crash point ``point`` (``name:N``, see :mod:`airflow_bigfile.commit.crash`)."""
    script = ("import json, sys; from airflow_bigfile import edit_file, Patch, Append; "
              "edit_file(sys.argv[1], [Patch(3 << 20, b'NEW'), Append(b'more')], "
              "storage_options=json.loads(sys.argv[2]))")
    env = {**os.environ, "BIGFILE_CRASH": point}
    return subprocess.run([sys.executable, "-c", script, url, json.dumps(storage_options)],
                          env=env, capture_output=True)
