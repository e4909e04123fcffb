"""Storage backends for the suites that every backend must pass (local, memory, S3 on moto).

A :class:`Backend` is an inner fsspec filesystem with a fresh folder for one test; the
fixtures ``local_backend``, ``memory_backend`` and ``s3_backend`` (``tests/conftest.py``)
make them. :func:`require_engine` skips a test, with the reason, while ``edit_file`` cannot
edit that kind of URL yet.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import fsspec
import pytest

from airflow_bigfile.edits import Append
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
