"""The ``bigfile`` command."""

from airflow_bigfile.cli.command import main

__all__ = ["main"]
