"""airflow-bigfile: change huge files safely and fast.

>>> from airflow_bigfile import edit_file, Replace
>>> edit_file("data.csv", [Replace(b"@old.com", b"@new.com")])  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_bigfile.edits import Append, Delete, Insert, Patch, Replace, Truncate
from airflow_bigfile.exceptions import (
    BigFileError,
    EditConflictError,
    EditError,
    HardLinkError,
    PatternError,
    PayloadError,
    RecoveryError,
    RegexTimeoutError,
    ShardChecksumError,
    SourceChangedError,
    StagingError,
    StorageError,
    TargetError,
    TargetIsDirectoryError,
    TargetLockedError,
    TargetNotFoundError,
    TargetPermissionError,
    TransientStorageError,
)
from airflow_bigfile.payload import DataFile

if TYPE_CHECKING:
    from airflow_bigfile.api import (
        EditResult,
        PlannedEdit,
        commit_edit,
        edit_file,
        patch_batch,
        plan_edit,
        recover_target,
    )

__version__ = "0.1.0"

__all__ = [
    "Append", "BigFileError", "DataFile", "Delete", "EditConflictError", "EditError",
    "EditResult", "HardLinkError", "Insert", "Patch", "PatternError", "PayloadError",
    "RecoveryError", "RegexTimeoutError", "Replace", "ShardChecksumError",
    "SourceChangedError", "StagingError",
    "StorageError", "TargetError", "TargetIsDirectoryError", "TargetLockedError",
    "TargetNotFoundError", "TargetPermissionError", "TransientStorageError", "Truncate",
    "commit_edit", "edit_file", "patch_batch",
    "plan_edit", "recover_target", "PlannedEdit",
]

_LAZY = {"edit_file", "recover_target", "EditResult", "PlannedEdit", "plan_edit",
         "patch_batch", "commit_edit"}


def __getattr__(name: str) -> Any:
    # The engine pulls in pyarrow and fsspec; import it on first use so `bigfile --help`
    # and plain imports stay fast.
    if name in _LAZY:
        from airflow_bigfile import api

        return getattr(api, name)
    raise AttributeError(f"module 'airflow_bigfile' has no attribute {name!r}")
