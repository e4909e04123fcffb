"""Patching: scan a shard for matches, apply the edits and write the staged shard file."""

try:
    from airflow_bigfile.patch import _memreplace  # noqa: F401  (built by the install)
except ImportError as exc:  # a source checkout that was updated but not installed again
    raise ImportError(
        "the C extension airflow_bigfile.patch._memreplace is not built: run "
        "`pip install -e .` in the checkout (it needs a C compiler and the Python headers)"
    ) from exc
