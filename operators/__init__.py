"""Airflow operators for airflow-bigfile (imported as ``airflow_bigfile.operators``)."""
