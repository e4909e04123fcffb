"""Storage backends for the suites that every backend must pass (local, memory, S3 on moto).

A :class:`Backend` is an inner fsspec filesystem with a fresh folder for one test; the
fixtures ``local_backend``, ``memory_backend`` and ``s3_backend`` (``tests/conftest.py``)
make them. :func:`require_engine` skips a test, with the reason, while ``edit_file`` cannot
edit that kind of URL yet.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from typing import Any

import fsspec
import pytest

from airflow_bigfile.edits import Append, Delete, Insert, Patch, Replace, Truncate
from airflow_bigfile.exceptions import BigFileError
from airflow_bigfile.fs.filesystem import BigFileFileSystem


@dataclass
class Backend:
    """One inner filesystem and a fresh folder on it for the test."""

    name: str
    inner: fsspec.AbstractFileSystem
    root: str                                        # inner path of the test's folder
    options: dict[str, Any] = field(default_factory=dict)   # the inner fs's storage options
    examples: int = 40                               # state machine runs
    edit_options: dict[str, Any] = field(default_factory=dict)

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


_ENGINE: dict[str, str | None] = {}


def engine_support(backend: Backend) -> str | None:
    """None if ``edit_file`` edits this backend, else why not (probed once per backend)."""
    if backend.name not in _ENGINE:
        from airflow_bigfile import edit_file

        name = f"probe-{uuid.uuid4().hex}"
        probe = backend.put(name, b"probe")
        try:
            edit_file(backend.target(name), [Append(b"!")], storage_options=backend.options)
            _ENGINE[backend.name] = None
        except BigFileError as exc:
            if "only local files" not in str(exc):
                raise
            _ENGINE[backend.name] = str(exc)
        finally:
            backend.inner.rm_file(probe)
    return _ENGINE[backend.name]




def require_engine(backend: Backend) -> None:
    """Skip the calling test while the engine cannot edit ``backend``'s targets."""
    reason = engine_support(backend)
    if reason is not None:
        pytest.skip(f"the engine cannot edit {backend.name} targets yet ({reason})")


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


MiB = 1 << 20

#: every edit type on a 12 MiB object store target (shards of 6 MiB)
OBJECT_EDITS = [
    pytest.param([Replace(b"ab,", b"X")], id="replace-shrinks"),
    pytest.param([Replace(b"a\n", b"[a]\n")], id="replace-grows"),
    pytest.param([Replace(rb"b(a{3,}),", rb"<\1>", regex=True, max_match=256)], id="regex"),
    pytest.param([Insert(0, b"HEAD"), Patch(7 * MiB + 3, b"PATCHED"),
                  Delete(5 * MiB - 10, 1 * MiB), Insert(9 * MiB, b"INSERTED"),
                  Truncate(11 * MiB + 1), Append(b"tail\n" * 1000)], id="offset-edits"),
]


def sample(size: int, seed: int = 1) -> bytes:
    """``size`` bytes of short CSV-like lines, the same for the same seed."""
    rng = random.Random(seed)
    block = bytes(rng.choice(b"ab,\n") for _ in range(1 << 16))
    return (block * (size // len(block) + 1))[:size]
