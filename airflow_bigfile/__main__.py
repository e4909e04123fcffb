"""``python -m airflow_bigfile``: the ``bigfile`` command."""

import sys

from airflow_bigfile.cli import console

sys.exit(console())
