"""Plain local paths are resolved without fsspec, exactly as fsspec resolves them; anything
fsspec reads as a protocol or a chain still goes to fsspec."""

from __future__ import annotations

import fsspec
import pytest
from fsspec.implementations.local import LocalFileSystem
from fsspec.implementations.memory import MemoryFileSystem

from airflow_bigfile.io.storage import LOCAL, is_local, url_to_fs


@pytest.mark.parametrize("path", [
    "data.csv", "./data.csv", ".", "./", "dir/", "dir//x.csv", "../up.csv", "~", "~/x.csv",
    "/abs/x.csv", "/abs/dir/", "/", "//double", "a:b.csv", "x y.csv", "d\u00e9j\u00e0.csv"])
def test_a_plain_path_resolves_as_fsspec_resolves_it(tmp_path, monkeypatch, path: str) -> None:
    monkeypatch.chdir(tmp_path)
    fs, resolved = url_to_fs(path)
    assert fs is LOCAL and is_local(fs)
    assert resolved == fsspec.core.url_to_fs(path)[1]


@pytest.mark.parametrize(("url", "kind"), [
    ("file:///tmp/x.csv", LocalFileSystem), ("local:///tmp/x.csv", LocalFileSystem),
    ("file:x.csv", LocalFileSystem), ("memory://bucket/x.csv", MemoryFileSystem)])
def test_urls_go_to_fsspec(url: str, kind: type) -> None:
    fs, path = url_to_fs(url)
    assert isinstance(fs, kind)
    assert path == fsspec.core.url_to_fs(url)[1]
    assert is_local(fs) == (kind is LocalFileSystem)


def test_a_local_path_with_storage_options_goes_to_fsspec(tmp_path) -> None:
    fs, path = url_to_fs(str(tmp_path / "x.csv"), {"auto_mkdir": True})
    assert isinstance(fs, LocalFileSystem) and is_local(fs)
    assert path == str(tmp_path / "x.csv")


def test_the_local_files_list_and_read(tmp_path) -> None:
    (tmp_path / "b").write_bytes(b"2")
    (tmp_path / "a").write_bytes(b"1")
    LOCAL.makedirs(str(tmp_path / "sub" / "deeper"), exist_ok=True)
    assert LOCAL.ls(str(tmp_path)) == [f"{tmp_path}/{n}" for n in ("a", "b", "sub")]
    assert LOCAL.cat_file(str(tmp_path / "b")) == b"2"
    with pytest.raises(ValueError, match="names only"):
        LOCAL.ls(str(tmp_path), detail=True)
    with pytest.raises(FileExistsError):
        LOCAL.makedirs(str(tmp_path / "sub"))
