# make test   build .venv from nothing (if needed) and run the whole test suite
# make demo   mask e-mails in a few-hundred-MB CSV with the mapped Airflow example DAG
# make bench  run the benchmarks
# make bench-ltm  files larger than memory: rewrites against cp + sync + mv in a memory cgroup (root)
# make system-test  the mapped example on CeleryExecutor + Redis, two workers, S3 staging
# make azurite  the Azure Blob emulator the tests start (npm, into .azurite/)
PYTHON ?= python3
VENV   := .venv
STAMP  := $(VENV)/.installed-stamp
EXTRAS := test,s3,azure,dask,airflow,lineage
# Known-good versions of every dependency: a fresh install resolves at once instead of
# backtracking through moto[server]'s and Airflow's trees (regenerate with `pip freeze`).
CONSTRAINTS := constraints.txt
AZURITE_VERSION := 3.37.0
AZURITE := .azurite/node_modules/.bin/azurite-blob

.PHONY: all venv azurite test demo bench bench-ltm system-test clean distclean

all: test

# Reinstalls only when the packaging or the C extension changes (the package itself is an
# editable install; the install builds the extension in place).
$(STAMP): pyproject.toml setup.py airflow_bigfile/patch/_memreplace.c $(CONSTRAINTS)
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet -c $(CONSTRAINTS) -e '.[$(EXTRAS)]'
	@touch $@

venv: $(STAMP)

# Azurite runs on the machine's Node (20 works, though its package asks for 22).
$(AZURITE):
	@command -v npm >/dev/null || { apt-get update -q && apt-get install -y -q nodejs npm; }
	npm install --prefix .azurite --no-audit --no-fund --loglevel=error azurite@$(AZURITE_VERSION)

azurite: $(AZURITE)

test: $(STAMP) $(AZURITE)
	$(VENV)/bin/pytest -q

demo: $(STAMP)
	VENV=$(CURDIR)/$(VENV) scripts/demo.sh

bench: $(STAMP) $(AZURITE)
	$(VENV)/bin/python -m pip install --quiet -c $(CONSTRAINTS) -e '.[$(EXTRAS),bench]'
	$(VENV)/bin/python bench/run.py

# A 4 GiB file in a 1 GiB memory cgroup, caches dropped before each run (LTM_ARGS to change).
bench-ltm: $(STAMP)
	$(VENV)/bin/python bench/ltm.py $(LTM_ARGS)

# Celery and Redis only for this target (as bench adds its extra); redis-server from Debian.
system-test: $(STAMP)
	@command -v redis-server >/dev/null || { apt-get update -q && apt-get install -y -q redis-server; }
	$(VENV)/bin/python -m pip install --quiet -c $(CONSTRAINTS) -e '.[$(EXTRAS),celery]'
	$(VENV)/bin/python scripts/system_test.py

clean:
	rm -rf demo-data

distclean: clean
	rm -rf $(VENV) .azurite
