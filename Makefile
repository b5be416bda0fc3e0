# The two commands of the quickstart: `make demo` and `make test`. Both set everything up first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
export DBT_SEND_ANONYMOUS_USAGE_STATS := False
export DO_NOT_TRACK := 1

.PHONY: setup system-packages demo test lint bench bench-dlt containers manifest lock astro-local clean

# The ONE place that says which Airflow the project runs: the Astro Runtime tag in the Dockerfile's
# FROM line (runtime:<Airflow major.minor>-<Runtime build>). The development lock is compiled with
# apache-airflow held to that line (`make lock`); tests/test_astro_project.py checks the two agree.
RUNTIME_TAG := $(shell sed -n 's/^FROM [^ ]*runtime:\([^ ]*\).*/\1/p' Dockerfile)
RUNTIME_AIRFLOW := $(firstword $(subst -, ,$(RUNTIME_TAG)))

setup: system-packages $(VENV)/.installed dbt/target/manifest.json

# The Debian packages the suite and the demo need (podman, chromium, PostgreSQL, ...), installed
# here, once and serially, before any test lane starts (no test installs one); no apt call at all
# when they are all present. Needs root only when something is missing.
system-packages:
	@$(PYTHON) include/civic_pipelines/devtools/apt.py

# --compile-bytecode: every Airflow, dbt and test process then loads bytecode instead of compiling
# Airflow, dbt and their dependencies from source (about 20 s once here; where PYTHONDONTWRITEBYTECODE
# is set, as on this project's machines, nothing else ever writes it, and `import airflow.models,
# dbt.cli.main, cosmos` took 5.6 s instead of 2.8 s in every process).
$(VENV)/.installed: requirements-dev.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip --version >/dev/null 2>&1 || $(PY) -m ensurepip
	$(PY) -m pip install -q --disable-pip-version-check uv==0.13.9
	$(UV) pip install -q --compile-bytecode --python $(PY) -r requirements-dev.txt
	$(UV) pip install -q --python $(PY) --no-deps -e .
	touch $@

# Cosmos renders the dbt graph from this manifest (LoadMode.DBT_MANIFEST): parsing stays fast.
dbt/target/manifest.json: $(VENV)/.installed $(shell find dbt -name '*.sql' -o -name '*.yml' -o -name '*.csv' 2>/dev/null | grep -v -e '^dbt/target/' -e '^dbt/logs/')
	cd dbt && CIVIC_WAREHOUSE=$${CIVIC_WAREHOUSE:-$(CURDIR)/data/warehouse.duckdb} CIVIC_LAKE=$${CIVIC_LAKE:-$(CURDIR)/data/lake} \
		../$(VENV)/bin/dbt parse --profiles-dir . --quiet
manifest: dbt/target/manifest.json

demo: setup
	$(PY) scripts/demo.py

# Two lanes (the machine's two cores). Three were tried on a fresh clone: a quarter of the CPU was
# idle with two (2,076 CPU-s in 1,423 s), but with three every test slowed and the whole took
# longer (2,287 CPU-s, 1,426 s in pytest against 1,350 s).
test: setup lint
	$(PY) -m pytest -n 2 --dist loadgroup

# ruff's lint and format checks (pyproject.toml), first in `make test`: a second each.
lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# Every bench/extract_*.py in turn, then the DAG parse figures (each prints its own figures; none
# asserts a speed); a failing script does not stop the others, but fails the target. bench/parse.py
# needs the dbt manifest (Cosmos renders the dbt groups from it).
bench: $(VENV)/.installed dbt/target/manifest.json
	@status=0; for script in bench/extract_*.py bench/street_manager.py bench/parse.py; do echo "== $$script"; $(PY) $$script || status=1; echo; done; exit $$status

# The head-to-head with dlt's rest_api source (bench/vs_dlt.py): not in `make bench`, it is slow
# (dlt's default configuration loads about 1,400 rows/s: some 15 minutes for the two months).
bench-dlt: $(VENV)/.installed
	$(PY) bench/vs_dlt.py

# The container engine and the extractor image the container tests use (podman's Docker API; each
# step cached: a few minutes the first time, under a second after). The tests do this themselves;
# this target does it ahead of them.
containers: $(VENV)/.installed
	$(PY) scripts/container_setup.py build

# Regenerate the development lock from requirements-dev.in (needs the package registry), with
# Airflow held to the Runtime tag's line, then the extractor image's lock (pyproject.toml's
# dependencies) at the same pins. Existing pins are kept unless an input moved them.
lock:
	$(UV) pip compile requirements-dev.in -o requirements-dev.txt --python-version 3.11 \
		--constraint <(echo "apache-airflow==$(RUNTIME_AIRFLOW).*") --custom-compile-command "make lock"
	$(UV) pip compile pyproject.toml -o requirements-extractor.txt --python-version 3.11 -c requirements-dev.txt

# What `astro dev start` runs, run here without Docker: stand-ins for the Runtime and postgres
# images built with podman, the Astro CLI's Airflow 3 compose project (with the override) under
# podman-compose, two sources landed through extractor containers (scripts/astro_local.py).
astro-local: setup
	$(PY) scripts/astro_local.py run

clean:
	rm -rf data $(VENV) dbt/target dbt/logs
