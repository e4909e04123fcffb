"""Storage backends for the suites that every backend passes: the engine
(``tests/integration/test_backends.py``), the ``bigfile`` fsspec protocol
(``test_fsspec.py``) and pandas/Dask by URL (``test_pandas_dask.py``).

A :class:`Backend` is an inner fsspec filesystem with a fresh folder for one test. The
fixtures ``local_backend``, ``memory_backend`` and ``s3_backend`` in ``tests/conftest.py``
make them, and ``any_backend`` is each in turn. To add a backend: write its fixture (a fresh
folder on a real server, torn down after the test) returning a :class:`Backend`, and add its
name to ``any_backend``'s params; every shared suite then runs on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import fsspec

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
