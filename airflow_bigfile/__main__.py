"""``python -m airflow_bigfile``: the ``bigfile`` command."""

from __future__ import annotations

import sys

from airflow_bigfile.cli import main

sys.exit(main())
