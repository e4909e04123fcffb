"""The package's C extensions; everything else about the package is in pyproject.toml."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("airflow_bigfile.patch._memreplace",
                             ["airflow_bigfile/patch/_memreplace.c"]),
                   Extension("airflow_bigfile.io._crc32c", ["airflow_bigfile/io/_crc32c.c"])])
