"""Which :class:`~airflow_bigfile.targets.base.Target` serves a URL."""

from __future__ import annotations

import os
from typing import Any

from airflow_bigfile.exceptions import EditError, TargetError
from airflow_bigfile.io.storage import is_local, url_to_fs
from airflow_bigfile.targets.base import Target
from airflow_bigfile.targets.local import LocalTarget


def target_url(url: str | os.PathLike[str]) -> str:
    """``url`` as text (a ``pathlib.Path`` is a path), refused if it cannot name a file."""
    if isinstance(url, os.PathLike):
        url = os.fspath(url)
    if not isinstance(url, str) or not url:
        raise EditError(f"the target must be a path or URL, not {url!r}")
    if "\0" in url:
        raise EditError(f"the target {url!r} contains a NUL byte, which no path can")
    return url


def open_target(url: str, storage_options: dict[str, Any] | None = None) -> Target:
    """The target behind ``url``: a local file, an S3 object, an Azure blob, or a file on any
    other fsspec filesystem."""
    url = target_url(url)
    if storage_options is not None and not isinstance(storage_options, dict):
        raise EditError(f"storage_options must be a dict, not {storage_options!r}")
    try:
        fs, path = url_to_fs(url, storage_options)
    except (ImportError, ValueError) as exc:
        raise TargetError(f"{url}: {exc}") from exc
    if is_local(fs):
        return LocalTarget(fs, path, url)
    # imported here: they import fsspec, which a local target never needs
    from airflow_bigfile.targets.azure import AzureTarget, is_azure
    from airflow_bigfile.targets.s3 import S3Target, is_s3
    from airflow_bigfile.targets.stream import StreamTarget

    if is_s3(fs):
        return S3Target(fs, path, url)
    return AzureTarget(fs, path, url) if is_azure(fs) else StreamTarget(fs, path, url)

