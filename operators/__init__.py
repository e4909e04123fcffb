"""Airflow operators for airflow-bigfile (imported as ``airflow_bigfile.operators``)."""

from __future__ import annotations

from airflow_bigfile.operators.bigfile import (
    BigFileCommitOperator,
    BigFileEditOperator,
    BigFilePatchShardsOperator,
    BigFilePlanOperator,
    bigfile_edit_group,
)

__all__ = ["BigFileCommitOperator", "BigFileEditOperator", "BigFilePatchShardsOperator",
           "BigFilePlanOperator", "bigfile_edit_group"]
