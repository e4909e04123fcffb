"""Airflow hooks for airflow-bigfile (imported as ``airflow_bigfile.hooks``)."""

from __future__ import annotations

from airflow_bigfile.hooks.bigfile import BigFileHook

__all__ = ["BigFileHook"]
