"""The edited file as an Airflow Asset and as an OpenLineage dataset.

A bigfile operator's ``path`` is templated (and the commit learns its target from the plan),
so the file is known only when the task runs: the operators declare the asset alias
:data:`EDITED_FILES` as an outlet and, after a commit that changed the file, add an event for
``Asset(<file URI>)`` through it. Airflow creates that asset if it does not exist yet and
queues every DAG scheduled on it::

    with DAG("load", schedule=[Asset("file:///data/big.csv")]): ...

Lineage follows the OpenLineage naming spec (as ``providers/common/io`` does): a local file
is namespace ``file`` and its absolute path; ``s3://bucket/key`` is namespace ``s3://bucket``
and name ``key``. An edit reads and writes one file, so it is both input and output.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from airflow.sdk import Asset, AssetAlias

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage

#: the outlet through which every bigfile operator reports the file it changed
EDITED_FILES = AssetAlias("bigfile-edited-files")


def asset_uri(url: str) -> str:
    """The Asset URI of a target: ``file://`` and the real absolute path of a local file (two
    paths to one file are one asset), the URL itself on an object store."""
    url = url.rsplit("::", 1)[-1]
    if url.startswith("file://"):
        url = url[len("file://"):]
    if "://" in url:
        return url
    return "file://" + os.path.realpath(url)


def record_edit(context: Any, url: str, figures: dict[str, Any]) -> None:
    """Add an asset event for ``url`` to :data:`EDITED_FILES`, unless nothing changed (a dry
    run, or an empty edit list)."""
    if figures.get("dry_run") or figures.get("commit_mode") in (None, "none"):
        return
    events = context.get("outlet_events") if hasattr(context, "get") else None
    if events is not None:
        events[EDITED_FILES].add(Asset(asset_uri(url)),
                                 extra={"commit_mode": figures.get("commit_mode"),
                                        "size_after": figures.get("size_after")})


def with_edited_files(outlets: Any) -> list[Any]:
    """The user's ``outlets`` with :data:`EDITED_FILES` added."""
    if outlets is None:
        outlets = []
    elif not isinstance(outlets, (list, tuple)):
        outlets = [outlets]
    return [*outlets, *([] if EDITED_FILES in outlets else [EDITED_FILES])]


def lineage(url: str | None) -> OperatorLineage:
    """OpenLineage facets for an edit of ``url``: the file as input and as output."""
    from airflow.providers.common.compat.openlineage.facet import Dataset
    from airflow.providers.openlineage.extractors import OperatorLineage

    if not url:
        return OperatorLineage()
    uri = asset_uri(url)
    scheme, _, rest = uri.partition("://")
    if scheme == "file":
        dataset = Dataset(namespace="file", name=rest)
    else:
        bucket, _, key = rest.partition("/")
        dataset = Dataset(namespace=f"{scheme}://{bucket}", name=key)
    return OperatorLineage(inputs=[dataset], outputs=[dataset])
