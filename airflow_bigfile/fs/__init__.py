"""The ``bigfile`` fsspec protocol."""

from airflow_bigfile.fs.filesystem import BigFileFileSystem

__all__ = ["BigFileFileSystem"]
