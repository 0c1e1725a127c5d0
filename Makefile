# The README's commands. `make run` runs one cycle on the embedded DuckDB warehouse;
# `make test` runs the whole test suite (no CoinCap key needed: CoinCap is faked locally);
# `make docs` serves the dbt docs site of that warehouse.
.DEFAULT_GOAL := help
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: help install run test quick drills bench lint check-key docs

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

# Re-installs only when the dependency list changed.
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev,spark]'
	touch $@

install: $(VENV)/.installed ## create .venv with the pinned dependencies (Spark's included: the tests run a local cluster)

check-key:
	@if [[ -z "$${COINCAP_API_KEY:-}" ]] && ! grep -qsE '^\s*(export\s+)?COINCAP_API_KEY\s*=\s*\S' .env; then \
	  echo "error: COINCAP_API_KEY is not set; get a key at https://pro.coincap.io/dashboard, then export COINCAP_API_KEY=... (or put it in .env) and run make run again" >&2; \
	  exit 1; \
	fi

run: check-key install ## one cycle (ingest + dbt build) into the warehouse, DuckDB by default
	scripts/run_pipeline.sh

# The dbt docs site of the warehouse `make run` filled, with the cycle's configuration
# (`coincap-elt docs`: dbt docs generate, then dbt docs serve).
docs: install ## build the dbt docs site for the local warehouse and serve it on http://localhost:8080
	$(VENV)/bin/coincap-elt docs --port 8080

# Three workers on 2 cores (a cycle's subprocesses wait on I/O and each other: 24 min 24 s against
# 28 min 13 s with two, docs/testing.md); each test file runs on one worker, the longest first
# (tests/conftest.py). Inside `make test` the kill drill kills 4 cycles per engine
# (one or more per phase) and the drills write nothing; `make drills` runs them in full and
# writes docs/reliability.md. Most of a test's time is a cycle's subprocesses.
TEST_WORKERS ?= 3

test: install ## the whole test suite, failure drills included (starts its own PostgreSQL unless POSTGRES_HOST is set)
	DRILL_KILLS_PER_ENGINE=$${DRILL_KILLS_PER_ENGINE:-4} $(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

# The loop while developing: the unit tests (the package's logic, in-process) and the checks of
# the repository's files (docs links, compose file, shell scripts, the system package list).
quick: install ## the unit tests and the repository checks: seconds, no warehouse, no cycle
	$(PY) -m pytest tests/unit tests/checks

drills: install ## the failure drills alone; they rewrite docs/reliability.md's results table
	DRILL_REPORT=1 $(PY) -m pytest -m drill tests/drills

bench: install ## the benchmarks (about 50 minutes); they rewrite docs/benchmarks.md's generated block
	$(PY) -m devkit.bench

lint: install ## ruff, shellcheck and sqlfluff (the dbt project's SQL, on DuckDB and PostgreSQL)
	$(VENV)/bin/ruff check ingest scripts tests devkit
	$(VENV)/bin/ruff format --check ingest scripts tests devkit
	$(VENV)/bin/shellcheck scripts/*.sh docker/*.sh docker/warehouse-init/*.sh .ci/run
	PYTHON=$(PY) scripts/lint_sql.sh
