"""Airflow hooks for airflow-bigfile (imported as ``airflow_bigfile.hooks``)."""
