# make test   build .venv from nothing (if needed) and run the whole test suite
# make demo   mask e-mails in a few-hundred-MB CSV with the mapped Airflow example DAG
# make bench  run the benchmarks
# make system-test  the mapped example on CeleryExecutor + Redis, two workers, S3 staging
PYTHON ?= python3
VENV   := .venv
STAMP  := $(VENV)/.installed-stamp
EXTRAS := test,s3,dask,airflow,lineage
# Known-good versions of every dependency: a fresh install resolves at once instead of
# backtracking through moto[server]'s and Airflow's trees (regenerate with `pip freeze`).
CONSTRAINTS := constraints.txt

# The system test's own virtualenv: kombu's redis extra pins packaging one release below
# constraints.txt, so constraints-celery.txt replaces that pin there, not in .venv.
SYSTEM_VENV  := .venv-system
SYSTEM_STAMP := $(SYSTEM_VENV)/.installed-stamp

.PHONY: all venv test demo bench system-test clean distclean

all: test

# Reinstalls only when pyproject.toml changes (the package itself is an editable install).
$(STAMP): pyproject.toml $(CONSTRAINTS)
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet -c $(CONSTRAINTS) -e '.[$(EXTRAS)]'
	@touch $@

venv: $(STAMP)

test: $(STAMP)
	$(VENV)/bin/pytest -q

demo: $(STAMP)
	VENV=$(CURDIR)/$(VENV) scripts/demo.sh

bench: $(STAMP)
	$(VENV)/bin/python -m pip install --quiet -c $(CONSTRAINTS) -e '.[$(EXTRAS),bench]'
	$(VENV)/bin/python bench/run.py

$(SYSTEM_STAMP): pyproject.toml $(CONSTRAINTS) constraints-celery.txt
	@command -v redis-server >/dev/null || { apt-get update -q && apt-get install -y -q redis-server; }
	@test -x $(SYSTEM_VENV)/bin/python || $(PYTHON) -m venv $(SYSTEM_VENV)
	grep -v '^packaging==' $(CONSTRAINTS) | cat - constraints-celery.txt > $(SYSTEM_VENV)/constraints.txt
	$(SYSTEM_VENV)/bin/python -m pip install --quiet -c $(SYSTEM_VENV)/constraints.txt \
		-e '.[test,s3,airflow,celery]'
	@touch $@

system-test: $(SYSTEM_STAMP)
	$(SYSTEM_VENV)/bin/python scripts/system_test.py

clean:
	rm -rf demo-data

distclean: clean
	rm -rf $(VENV) $(SYSTEM_VENV)
