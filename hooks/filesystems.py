"""The ``filesystems`` module Airflow's provider registry points at, so
``ObjectStoragePath("bigfile://...", conn_id=...)`` resolves to the bigfile filesystem.

Airflow only uses this when fsspec also knows the ``bigfile`` protocol (our ``fsspec.specs``
entry point). Imported by Airflow alone; the engine never imports it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

schemes = ["bigfile"]


def get_fs(conn_id: str | None, storage_options: dict[str, Any] | None = None
           ) -> AbstractFileSystem:
    """The ``bigfile`` filesystem; the connection's credentials go to the wrapped store
    (``target_options``), explicit ``storage_options`` win over them."""
    import fsspec

    options = dict(storage_options or {})
    if conn_id:
        from airflow_bigfile.hooks.bigfile import BigFileHook

        inner = BigFileHook(conn_id).storage_options()
        if inner:
            options["target_options"] = {**inner, **options.get("target_options", {})}
    return fsspec.filesystem("bigfile", **options)
