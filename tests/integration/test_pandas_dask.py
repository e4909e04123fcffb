"""pandas and Dask use the ``bigfile`` protocol by URL, on every backend.

``pd.read_csv("bigfile::...")`` and ``dask.dataframe.read_csv("bigfile::...")`` read through
the inner filesystem; ``df.to_csv("bigfile::...", mode="a", header=False)`` appends through
the engine (a server-side multipart copy on S3); ``mode="w"`` replaces atomically.
"""

from __future__ import annotations

from typing import Any

import dask.dataframe as dd
import pandas as pd
import pytest

from tests.backends import Backend

HEADER = b"id,name,score\n"
ROWS = b"".join(b"%d,name-%d,%d.5\n" % (i, i, i % 7) for i in range(500))


@pytest.fixture
def csv(any_backend: Backend) -> tuple[Backend, str, dict[str, Any]]:
    """A CSV of 500 rows on the backend: (backend, its bigfile URL, storage_options)."""
    any_backend.put("data.csv", HEADER + ROWS)
    return any_backend, any_backend.url("data.csv"), dict(any_backend.options)


def expected() -> Any:
    import io

    return pd.read_csv(io.BytesIO(HEADER + ROWS))


def test_read_csv(csv: tuple[Backend, str, dict[str, Any]]) -> None:
    _, url, options = csv
    df = pd.read_csv(url, storage_options=options or None)
    pd.testing.assert_frame_equal(df, expected())


def test_to_csv_append(csv: tuple[Backend, str, dict[str, Any]]) -> None:
    backend, url, options = csv
    more = pd.DataFrame({"id": [500, 501], "name": ["name-500", "name-501"],
                         "score": [0.5, 1.5]})
    more.to_csv(url, mode="a", header=False, index=False, storage_options=options or None)
    assert backend.get("data.csv") == HEADER + ROWS + b"500,name-500,0.5\n501,name-501,1.5\n"
    df = pd.read_csv(url, storage_options=options or None)
    pd.testing.assert_frame_equal(df, pd.concat([expected(), more], ignore_index=True))
    assert backend.names() == ["data.csv"]


def test_to_csv_write_is_atomic(csv: tuple[Backend, str, dict[str, Any]]) -> None:
    backend, url, options = csv

    class Boom:
        def __str__(self) -> str:
            raise RuntimeError("cannot format this value")

    bad = pd.DataFrame({"id": list(range(2000)), "value": ["x"] * 1999 + [Boom()]})
    with pytest.raises(RuntimeError, match="cannot format"):
        bad.to_csv(url, index=False, storage_options=options or None)
    assert backend.get("data.csv") == HEADER + ROWS          # the old file is intact
    expected().to_csv(url, index=False, storage_options=options or None)
    pd.testing.assert_frame_equal(pd.read_csv(url, storage_options=options or None),
                                  expected())


def test_dask_read_csv(csv: tuple[Backend, str, dict[str, Any]]) -> None:
    _, url, options = csv
    ddf = dd.read_csv(url, blocksize=1000, storage_options=options or None)
    assert ddf.npartitions > 1                               # ranged reads of the inner file
    df = ddf.compute(scheduler="threads").reset_index(drop=True)
    pd.testing.assert_frame_equal(df, expected(), check_dtype=False)


def test_plain_local_paths(tmp_path: Any) -> None:
    """A local file by ``bigfile:///abs/path`` in pandas (which hands fsspec only URLs with
    ``://``) and by ``bigfile::/abs/path`` in Dask and fsspec."""
    import fsspec

    path = tmp_path / "data.csv"
    path.write_bytes(HEADER + ROWS)
    pd.testing.assert_frame_equal(pd.read_csv(f"bigfile://{path}"), expected())
    pd.DataFrame({"id": [500], "name": ["x"], "score": [1.5]}).to_csv(
        f"bigfile://{path}", mode="a", header=False, index=False)
    assert path.read_bytes() == HEADER + ROWS + b"500,x,1.5\n"
    ddf = dd.read_csv(f"bigfile::{path}", blocksize=4096)
    assert len(ddf.compute()) == 501
    with fsspec.open(f"bigfile::{path}", "rb") as f:
        assert f.read() == HEADER + ROWS + b"500,x,1.5\n"
