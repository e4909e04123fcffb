"""The ``bigfile`` command."""

from airflow_bigfile.cli.command import console, main

__all__ = ["console", "main"]
