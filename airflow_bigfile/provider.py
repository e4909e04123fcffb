"""Airflow provider registration (the ``apache_airflow_provider`` entry point).

Kept free of Airflow imports: Airflow calls :func:`get_provider_info` while it discovers
providers, and the engine must stay importable without Airflow installed.
"""

from __future__ import annotations

from typing import Any


def get_provider_info() -> dict[str, Any]:
    """What ``airflow providers list`` shows and where Airflow finds our hooks, operators,
    connection type and ``ObjectStoragePath`` filesystem."""
    from airflow_bigfile import __version__

    return {
        "package-name": "airflow-bigfile",
        "name": "BigFile",
        "description": "Change huge files (local or in object stores) in place: patch, "
                       "replace, insert, delete, truncate, append, sharded over mapped tasks "
                       "and committed atomically.",
        "versions": [__version__],
        "integrations": [{
            "integration-name": "BigFile",
            "external-doc-url": "https://filesystem-spec.readthedocs.io/",
            "tags": ["software"],
        }],
        "operators": [{"integration-name": "BigFile",
                       "python-modules": ["airflow_bigfile.operators.bigfile"]}],
        "hooks": [{"integration-name": "BigFile",
                   "python-modules": ["airflow_bigfile.hooks.bigfile"]}],
        "connection-types": [{
            "connection-type": "bigfile",
            "hook-class-name": "airflow_bigfile.hooks.bigfile.BigFileHook",
            "hook-name": "BigFile (fsspec storage options)",
        }],
        "filesystems": ["airflow_bigfile.hooks.filesystems"],
    }
