"""Which :class:`~airflow_bigfile.targets.base.Target` serves a URL."""

from __future__ import annotations

from typing import Any

from airflow_bigfile.exceptions import EditError, TargetError
from airflow_bigfile.io.storage import is_local, url_to_fs
from airflow_bigfile.targets.base import Target
from airflow_bigfile.targets.local import LocalTarget


def open_target(url: str, storage_options: dict[str, Any] | None = None) -> Target:
    """The target behind ``url``: a local file, an S3 object, an Azure blob, or a file on any
    other fsspec filesystem."""
    if not isinstance(url, str) or not url:
        raise EditError(f"the target must be a path or URL, not {url!r}")
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

