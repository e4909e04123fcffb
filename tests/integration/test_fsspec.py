"""The ``bigfile`` fsspec protocol, one suite for every backend (local, memory, S3 on moto).

:class:`TestEveryBackend` runs on each backend of ``any_backend`` (``tests/backends.py``:
a new backend joins by one fixture param); what only one backend has is in
:class:`TestLocal` and :class:`TestS3`.

The ``r+b`` file is checked against a ``bytearray`` by a hypothesis state machine (zarr's
``testing/stateful.py`` pattern), committed (or discarded) at the end of every run.
"""

from __future__ import annotations

import io
import os
import pickle
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import fsspec
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from airflow_bigfile.edits import Append, Patch, Truncate
from airflow_bigfile.exceptions import SourceChangedError
from airflow_bigfile.fs.filesystem import BigFileFileSystem, EditFile, SpoolFile
from tests.backends import Backend

EXAMPLES = {"quick": 0.2, "default": 1.0, "thorough": 10.0}[
    os.environ.get("BIGFILE_HYPOTHESIS_PROFILE", "default")]


class TestEveryBackend:
    """Every backend passes these."""

    @pytest.fixture
    def backend(self, any_backend: Backend) -> Backend:
        return any_backend

    # -- URLs and delegation --------------------------------------------------------------

    def test_chained_url(self, backend: Backend) -> None:
        backend.put("a.bin", b"abc")
        fs, path = fsspec.url_to_fs(backend.url("a.bin"), **backend.options)
        assert isinstance(fs, BigFileFileSystem)
        assert type(fs.fs) is type(backend.inner)
        assert path == backend.path("a.bin")
        assert fs.fs.storage_options == backend.inner.storage_options
        assert fs.unstrip_protocol(path) == backend.url("a.bin")

    def test_delegation(self, backend: Backend) -> None:
        fs = backend.fs
        backend.put("a.bin", b"0123456789")
        assert fs.info(backend.url("a.bin"))["size"] == 10
        assert fs.exists(backend.path("a.bin"))
        assert fs.cat_file(backend.path("a.bin"), start=2, end=5) == b"234"
        assert [p.rsplit("/", 1)[1] for p in fs.ls(backend.root, detail=False)] == ["a.bin"]
        fs.cp_file(backend.path("a.bin"), backend.path("b.bin"))
        fs.rm_file(backend.path("a.bin"))
        assert backend.names() == ["b.bin"]
        assert fs.find(backend.root) == [backend.path("b.bin")]

    def test_pickle(self, backend: Backend) -> None:
        fs, path = fsspec.url_to_fs(backend.url("a.bin"), **backend.options)
        backend.put("a.bin", b"abc")
        clone = pickle.loads(pickle.dumps(fs))
        assert clone.cat_file(path) == b"abc"

    # -- rb -------------------------------------------------------------------------------

    def test_rb_passes_through(self, backend: Backend) -> None:
        data = os.urandom(100_000)
        backend.put("a.bin", data)
        with backend.fs.open(backend.path("a.bin"), "rb") as f:
            assert not isinstance(f, (EditFile, SpoolFile))
            f.seek(50_000)
            assert f.read(10) == data[50_000:50_010]
        with fsspec.open(backend.url("a.bin"), "rb", **backend.options) as f:
            assert f.read() == data

    def test_missing_file(self, backend: Backend) -> None:
        for mode in ("rb", "r+b"):
            with pytest.raises(FileNotFoundError):
                backend.fs.open(backend.path("missing"), mode)

    def test_bad_mode(self, backend: Backend) -> None:
        backend.put("a.bin", b"abc")
        with pytest.raises(ValueError, match="unsupported mode"):
            backend.fs.open(backend.path("a.bin"), "a+b")

    # -- wb / xb --------------------------------------------------------------------------

    def test_wb_writes(self, backend: Backend) -> None:
        backend.put("a.bin", b"old contents")
        with backend.fs.open(backend.path("a.bin"), "wb") as f:
            f.write(b"new")
            f.write(b" contents!")
        assert backend.get("a.bin") == b"new contents!"
        with fsspec.open(backend.url("b.txt"), "w", **backend.options) as f:
            f.write("text\n")
        assert backend.get("b.txt") == b"text\n"
        assert backend.names() == ["a.bin", "b.txt"]        # no temporary files left

    @pytest.mark.parametrize("via", ["fs.open", "fsspec.open"])
    def test_wb_exception_keeps_old(self, backend: Backend, via: str) -> None:
        backend.put("a.bin", b"old")
        with pytest.raises(KeyError):
            opener = (backend.fs.open(backend.path("a.bin"), "wb") if via == "fs.open" else
                      fsspec.open(backend.url("a.bin"), "wb", **backend.options))
            with opener as f:
                f.write(b"half of the new")
                raise KeyError("boom")
        assert backend.get("a.bin") == b"old"
        assert backend.names() == ["a.bin"]

    def test_wb_unclosed_is_discarded(self, backend: Backend) -> None:
        backend.put("a.bin", b"old")
        f = backend.fs.open(backend.path("a.bin"), "wb")
        f.write(b"new")
        del f
        assert backend.get("a.bin") == b"old"
        assert backend.names() == ["a.bin"]

    def test_xb(self, backend: Backend) -> None:
        backend.put("a.bin", b"old")
        with pytest.raises(FileExistsError):
            backend.fs.open(backend.path("a.bin"), "xb")
        with backend.fs.open(backend.path("b.bin"), "xb") as f:
            f.write(b"created")
        assert backend.get("b.bin") == b"created"

    def test_pipe_and_put(self, backend: Backend, tmp_path: Path) -> None:
        backend.fs.pipe_file(backend.path("a.bin"), b"piped")
        assert backend.get("a.bin") == b"piped"
        local = tmp_path / "local.bin"
        local.write_bytes(b"put")
        backend.fs.put_file(str(local), backend.path("b.bin"))
        assert backend.get("b.bin") == b"put"

    # -- ab -------------------------------------------------------------------------------

    def test_ab_creates(self, backend: Backend) -> None:
        with backend.fs.open(backend.path("new.log"), "ab") as f:
            f.write(b"first\n")
        assert backend.get("new.log") == b"first\n"

    def test_ab_appends(self, backend: Backend) -> None:
        backend.put("a.log", b"one\n")
        with backend.fs.open(backend.path("a.log"), "ab") as f:
            f.write(b"two\n")
            f.write(b"three\n")
        with fsspec.open(backend.url("a.log"), "a", **backend.options) as f:
            f.write("four\n")
        with backend.fs.open(backend.path("a.log"), "ab"):
            pass                                             # nothing to append
        assert backend.get("a.log") == b"one\ntwo\nthree\nfour\n"
        assert backend.names() == ["a.log"]

    def test_ab_exception_appends_nothing(self, backend: Backend) -> None:
        backend.put("a.log", b"one\n")
        with pytest.raises(KeyError), backend.fs.open(backend.path("a.log"), "ab") as f:
            f.write(b"two\n")
            raise KeyError("boom")
        assert backend.get("a.log") == b"one\n"

    # -- r+b ------------------------------------------------------------------------------

    def test_rplus(self, backend: Backend) -> None:
        backend.put("a.csv", b"id,mail\n1,a@old.com\n2,b@old.com\n")
        with backend.fs.open(backend.path("a.csv"), "r+b") as f:
            assert f.read(8) == b"id,mail\n"
            f.seek(12)
            f.write(b"NEW")
            f.seek(-8, 2)
            f.write(b"NEW")
            f.seek(0, 2)
            f.write(b"3,c@new.com\n")
            f.seek(0)
            assert f.read() == b"id,mail\n1,a@NEW.com\n2,b@NEW.com\n3,c@new.com\n"
        assert backend.get("a.csv") == b"id,mail\n1,a@NEW.com\n2,b@NEW.com\n3,c@new.com\n"

    def test_rplus_truncate_and_text(self, backend: Backend) -> None:
        backend.put("a.txt", b"keep this|drop this")
        with fsspec.open(backend.url("a.txt"), "r+b", **backend.options) as f:
            f.truncate(9)
        assert backend.get("a.txt") == b"keep this"
        with fsspec.open(backend.url("a.txt"), "r+", **backend.options) as f:
            assert f.read() == "keep this"
            f.write(", and this")
        assert backend.get("a.txt") == b"keep this, and this"

    @pytest.mark.parametrize("via", ["fs.open", "fsspec.open"])
    def test_rplus_exception_commits_nothing(self, backend: Backend, via: str) -> None:
        backend.put("a.bin", b"0123456789")
        with pytest.raises(KeyError):
            opener = (backend.fs.open(backend.path("a.bin"), "r+b") if via == "fs.open" else
                      fsspec.open(backend.url("a.bin"), "r+b", **backend.options))
            with opener as f:
                f.write(b"XX")
                f.truncate(4)
                raise KeyError("boom")
        assert backend.get("a.bin") == b"0123456789"
        assert backend.names() == ["a.bin"]

    def test_rplus_discard_and_commit(self, backend: Backend) -> None:
        backend.put("a.bin", b"0123456789")
        f = backend.fs.open(backend.path("a.bin"), "r+b")
        f.write(b"XX")
        f.discard()
        assert f.closed and backend.get("a.bin") == b"0123456789"
        f = backend.fs.open(backend.path("a.bin"), "r+b")
        f.seek(8)
        f.write(b"YY")
        f.commit()
        assert f.closed and backend.get("a.bin") == b"01234567YY"
        f.close()                                            # a second close does nothing
        assert backend.get("a.bin") == b"01234567YY"

    def test_rplus_refuses_changed_source(self, backend: Backend) -> None:
        backend.put("a.bin", b"0123456789")
        with pytest.raises(SourceChangedError), \
                backend.fs.open(backend.path("a.bin"), "r+b") as f:
            f.write(b"XX")
            backend.put("a.bin", b"changed by someone else")
        assert backend.get("a.bin") == b"changed by someone else"

    def test_rplus_model(self, backend: Backend) -> None:
        """Random seek/read/write/truncate sequences equal a bytearray (stateful test)."""
        check_against_a_bytearray(backend)

    # -- transactions ---------------------------------------------------------------------

    def test_transaction_commits_at_end(self, backend: Backend) -> None:
        backend.put("a.bin", b"old a")
        fs = backend.fs
        with fs.transaction:
            with fs.open(backend.path("a.bin"), "wb") as f:
                f.write(b"new a")
            with fs.open(backend.path("b.bin"), "wb") as f:
                f.write(b"new b")
            assert backend.get("a.bin") == b"old a"
            assert "b.bin" not in backend.names()
        assert (backend.get("a.bin"), backend.get("b.bin")) == (b"new a", b"new b")
        assert backend.names() == ["a.bin", "b.bin"]

    def test_transaction_exception_commits_none(self, backend: Backend) -> None:
        backend.put("a.bin", b"old a")
        backend.put("c.bin", b"old c")
        fs = backend.fs
        with pytest.raises(KeyError), fs.transaction:
            with fs.open(backend.path("a.bin"), "wb") as f:
                f.write(b"new a")
            with fs.open(backend.path("b.bin"), "ab") as f:
                f.write(b"new b")
            with fs.open(backend.path("c.bin"), "r+b") as f:
                f.write(b"NEW")
            raise KeyError("boom")
        assert backend.names() == ["a.bin", "c.bin"]
        assert (backend.get("a.bin"), backend.get("c.bin")) == (b"old a", b"old c")
        assert not fs._intrans

    def test_transaction_with_edits(self, backend: Backend) -> None:
        backend.put("a.bin", b"old a")
        backend.put("c.log", b"one\n")
        fs = backend.fs
        with fs.transaction:
            with fs.open(backend.path("a.bin"), "r+b") as f:
                f.write(b"NEW")
            with fs.open(backend.path("c.log"), "ab") as f:
                f.write(b"two\n")
            assert (backend.get("a.bin"), backend.get("c.log")) == (b"old a", b"one\n")
        assert (backend.get("a.bin"), backend.get("c.log")) == (b"NEW a", b"one\ntwo\n")


# -- the state machine ----------------------------------------------------------------------

def check_against_a_bytearray(backend: Backend) -> None:
    """Run :func:`machine_for`'s state machine on ``backend``; its rules, invariant and
    teardown assert every read, position, size and the committed (or discarded) bytes."""
    run_state_machine_as_test(
        machine_for(backend),
        settings=settings(max_examples=max(3, int(backend.examples * EXAMPLES)),
                          stateful_step_count=25, deadline=None,
                          suppress_health_check=list(HealthCheck)))


def machine_for(backend: Backend) -> type[RuleBasedStateMachine]:
    """A state machine comparing an ``r+b`` file on ``backend`` with a ``bytearray``."""

    class RPlusMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.name = f"model-{uuid.uuid4().hex[:12]}.bin"
            self.model = bytearray()
            self.pos = 0
            self.f: Any = None

        @initialize(data=st.binary(max_size=200), commit=st.booleans())
        def open_file(self, data: bytes, commit: bool) -> None:
            backend.put(self.name, data)
            self.original, self.commit_at_end = data, commit
            self.model = bytearray(data)
            self.f = backend.fs.open(backend.path(self.name), "r+b")

        @rule(to=st.integers(0, 260), whence=st.sampled_from([0, 1, 2]))
        def seek(self, to: int, whence: int) -> None:
            offset = to - (0, self.pos, len(self.model))[whence]
            self.pos = to
            assert self.f.seek(offset, whence) == to

        @rule(size=st.integers(-1, 80))
        def read(self, size: int) -> None:
            end = len(self.model) if size < 0 else self.pos + size
            expected = bytes(self.model[self.pos:end])
            assert self.f.read(size) == expected
            self.pos = max(self.pos, min(end, len(self.model)))

        @rule(data=st.binary(min_size=0, max_size=40))
        def write(self, data: bytes) -> None:
            if data and self.pos > len(self.model):    # an empty write does not extend
                self.model.extend(bytes(self.pos - len(self.model)))
            self.model[self.pos:self.pos + len(data)] = data
            self.pos += len(data)
            assert self.f.write(data) == len(data)

        @rule(size=st.one_of(st.none(), st.integers(0, 260)))
        def truncate(self, size: int | None) -> None:
            size = self.pos if size is None else size
            if size < len(self.model):
                del self.model[size:]
            else:
                self.model.extend(bytes(size - len(self.model)))
            assert self.f.truncate(None if size == self.pos else size) == size

        @rule(start=st.integers(0, 260), length=st.integers(0, 80))
        def readinto(self, start: int, length: int) -> None:
            self.f.seek(start)
            buf = bytearray(length)
            n = self.f.readinto(buf)
            assert bytes(buf[:n]) == bytes(self.model[start:start + length])
            self.pos = start + n

        @invariant()
        def same_position_and_size(self) -> None:
            if self.f is not None:
                assert self.f.tell() == self.pos
                assert self.f.size == len(self.model)

        def teardown(self) -> None:
            if self.f is None:
                return
            if self.commit_at_end:
                self.f.close()
                assert backend.get(self.name) == bytes(self.model)
            else:
                self.f.discard()
                assert backend.get(self.name) == self.original
            backend.inner.rm_file(backend.path(self.name))

    return RPlusMachine


# -- one backend only ----------------------------------------------------------------------

class TestLocal:
    @pytest.fixture
    def backend(self, local_backend: Backend) -> Backend:
        return local_backend

    def test_wb_keeps_mode_bits(self, backend: Backend) -> None:
        path = backend.put("a.sh", b"old")
        os.chmod(path, 0o751)
        with backend.fs.open(path, "wb") as f:
            f.write(b"new")
        assert os.stat(path).st_mode & 0o777 == 0o751

    @pytest.mark.parametrize("mode", ["wb", "r+b", "ab"])
    def test_a_link_stays_a_link(self, backend: Backend, mode: str) -> None:
        path = backend.put("real.csv", b"old,data\n")
        link = os.path.join(os.path.dirname(path), "alias.csv")
        os.symlink("real.csv", link)
        with backend.fs.open(link, mode) as f:
            f.write(b"new")
        assert os.path.islink(link) and os.readlink(link) == "real.csv"
        expected = {"wb": b"new", "r+b": b"new,data\n", "ab": b"old,data\nnew"}[mode]
        assert backend.get("real.csv") == expected
        assert sorted(os.listdir(os.path.dirname(path))) == ["alias.csv", "real.csv"]

    def test_wb_readers_keep_old_file(self, backend: Backend) -> None:
        path = backend.put("a.bin", b"old")
        with open(path, "rb") as reader:
            with backend.fs.open(path, "wb") as f:
                f.write(b"new")
            assert reader.read() == b"old"
        assert backend.get("a.bin") == b"new"

    def test_plain_path_url(self, backend: Backend) -> None:
        path = backend.put("a.bin", b"abc")
        fs, inner = fsspec.url_to_fs("bigfile::" + path)
        assert isinstance(fs, BigFileFileSystem) and inner == path
        assert fs.local and fs.inner_url(inner) == path


class TestAzure:
    @pytest.mark.parametrize("mode", ["ab", "r+b"])
    def test_small_writes_send_little(self, azure_counted: Any, azure_proxy: Any,
                                      mode: str) -> None:
        """``ab`` and a one-byte ``r+b`` write on a 12 MiB blob send a few KiB, headers
        included: the blob's bytes are copied by the store."""
        data = os.urandom(12 << 20)
        azure_counted.fs.pipe_file(azure_counted.path("big.bin"), data)
        backend = Backend("azure", azure_counted.fs, azure_counted.container,
                          options=dict(azure_counted.storage_options))
        azure_proxy.reset()
        with fsspec.open(backend.url("big.bin"), mode, **backend.options) as f:
            if mode == "r+b":
                f.seek(5 << 20)
            f.write(b"tail\n")
        assert azure_proxy.sent_headers < 64 << 10, azure_proxy.requests()
        expected = data + b"tail\n" if mode == "ab" else \
            data[:5 << 20] + b"tail\n" + data[(5 << 20) + 5:]
        assert backend.get("big.bin") == expected


class TestS3:
    @pytest.fixture
    def backend(self, s3_backend: Backend) -> Backend:
        return s3_backend

    def test_options_by_protocol(self, backend: Backend) -> None:
        backend.put("a.bin", b"abc")
        with fsspec.open(backend.url("a.bin"), "rb", s3=backend.options) as f:
            assert f.read() == b"abc"

    def test_ab_moves_only_the_new_bytes(self, s3_counted: Any, counting_proxy: Any) -> None:
        """``ab`` on a 12 MiB object sends about the appended bytes, downloads nothing."""
        data = os.urandom(12 << 20)
        s3_counted.fs.pipe_file(f"{s3_counted.bucket}/big.bin", data)
        backend = Backend("s3", s3_counted.fs, s3_counted.bucket,
                          options=dict(s3_counted.storage_options))
        counting_proxy.reset()
        with fsspec.open(backend.url("big.bin"), "ab", **backend.options) as f:
            f.write(b"tail\n")
        assert counting_proxy.received < (1 << 20), counting_proxy.requests()
        assert counting_proxy.sent < (1 << 20), counting_proxy.requests()
        assert backend.get("big.bin") == data + b"tail\n"

    def test_rplus_patch_moves_little(self, s3_counted: Any, counting_proxy: Any) -> None:
        """A 1-byte write to a 24 MiB object through ``r+b`` uploads under two 5 MiB parts
        and downloads less than the object."""
        data = os.urandom(24 << 20)
        s3_counted.fs.pipe_file(f"{s3_counted.bucket}/big.bin", data)
        backend = Backend("s3", s3_counted.fs, s3_counted.bucket,
                          options=dict(s3_counted.storage_options))
        counting_proxy.reset()
        with fsspec.open(backend.url("big.bin"), "r+b", edit_options={"shard_size": "5MiB"},
                         **backend.options) as f:
            f.seek(13 << 20)
            f.write(b"X")
        assert counting_proxy.sent < 2 * (5 << 20), counting_proxy.requests()
        assert counting_proxy.received < len(data), counting_proxy.requests()
        assert backend.get("big.bin") == data[:13 << 20] + b"X" + data[(13 << 20) + 1:]


# -- edit lists -----------------------------------------------------------------------------

@pytest.fixture
def local_fs(tmp_path: Path) -> tuple[BigFileFileSystem, Path]:
    path = tmp_path / "f.bin"
    path.write_bytes(b"0123456789")
    return BigFileFileSystem(target_protocol="file"), path


@pytest.mark.parametrize(("steps", "edits"), [
    pytest.param([], [], id="nothing"),
    pytest.param([("w", 2, b"ab"), ("w", 3, b"XY")], [Patch(2, b"aXY")], id="overlap-merges"),
    pytest.param([("w", 2, b"ab"), ("w", 4, b"cd")], [Patch(2, b"abcd")], id="adjacent"),
    pytest.param([("w", 8, b"abcd")], [Patch(8, b"ab"), Append(b"cd")], id="straddles-end"),
    pytest.param([("t", 4, b"")], [Truncate(4)], id="shrink"),
    pytest.param([("t", 12, b"")], [Truncate(12)], id="grow"),
    pytest.param([("w", 13, b"z")], [Truncate(13), Append(b"z")], id="write-past-end"),
    pytest.param([("t", 4, b""), ("t", 6, b"")], [Truncate(4), Append(bytes(2))],
                 id="shrink-then-grow"),
    pytest.param([("w", 1, b"a"), ("t", 4, b""), ("w", 5, b"b")],
                 [Patch(1, b"a"), Truncate(4), Append(b"\x00b")], id="zeros-after-shrink"),
    pytest.param([("w", 0, b"0123456789")], [Patch(0, b"0123456789")], id="whole"),
    pytest.param([("t", 0, b""), ("w", 0, b"new")], [Truncate(0), Append(b"new")],
                 id="rewrite"),
])
def test_edit_list(local_fs: tuple[BigFileFileSystem, Path], steps: list[tuple[str, int, bytes]],
                   edits: list[Any]) -> None:
    fs, path = local_fs
    with fs.open(str(path), "r+b") as f:
        for op, at, data in steps:
            if op == "w":
                f.seek(at)
                f.write(data)
            else:
                f.truncate(at)
        assert f.edits() == edits
        f.discard()


def test_unclosed_rplus_is_discarded(local_fs: tuple[BigFileFileSystem, Path]) -> None:
    fs, path = local_fs
    f = fs.open(str(path), "r+b")
    f.write(b"XX")
    del f
    assert path.read_bytes() == b"0123456789"


def test_rplus_close_inside_except_still_commits(
        local_fs: tuple[BigFileFileSystem, Path]) -> None:
    """Only an exception raised *after* the open discards; writing a file from an except
    block (an error log, say) commits as usual."""
    fs, path = local_fs
    try:
        raise KeyError("handled elsewhere")
    except KeyError:
        with fsspec.open(f"bigfile::file://{path}", "r+b") as f:
            f.write(b"XX")
    assert path.read_bytes() == b"XX23456789"


def test_flat_storage_options_reach_the_inner_fs() -> None:
    fs = BigFileFileSystem(target_protocol="memory", target_options={}, skip_instance_cache=True,
                           edit_options={"workers": 1})
    assert type(fs.fs).__name__ == "MemoryFileSystem"
    assert fs.edit_options == {"workers": 1}


# -- the entry point ------------------------------------------------------------------------

def test_fresh_interpreter_finds_the_protocol(tmp_path: Path) -> None:
    """``fsspec.open("bigfile::...", "r+b")`` works without importing airflow_bigfile."""
    path = tmp_path / "f.csv"
    path.write_bytes(b"a,b\n1,2\n")
    script = textwrap.dedent(f"""
        import sys, fsspec
        assert "airflow_bigfile" not in sys.modules
        with fsspec.open("bigfile::file://{path.as_posix()}", "r+b") as f:
            assert f.read(4) == b"a,b\\n"
            f.write(b"9")
            f.seek(0, 2)
            f.write(b"3,4\\n")
        print(type(f).__module__)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "airflow_bigfile.fs.filesystem"
    assert path.read_bytes() == b"a,b\n9,2\n3,4\n"


def test_registered_as_fsspec_spec() -> None:
    assert fsspec.get_filesystem_class("bigfile") is BigFileFileSystem
    assert "bigfile" in fsspec.available_protocols()
    assert io.RawIOBase in EditFile.__mro__
