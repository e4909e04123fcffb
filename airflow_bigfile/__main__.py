"""``python -m airflow_bigfile``: the ``bigfile`` command."""

import sys

from airflow_bigfile.cli import main

sys.exit(main())
