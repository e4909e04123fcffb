"""The package's C extension; everything else about the package is in pyproject.toml."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("airflow_bigfile.patch._memreplace",
                             ["airflow_bigfile/patch/_memreplace.c"])])
