"""airflow-bigfile."""
