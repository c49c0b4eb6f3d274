# The two commands of the README: `make demo` (the main job) and `make test` (everything CI runs).
# Each installs what it needs on first use: a .venv from pyproject.toml and `npm ci` in deploy/localnet; the tests
# also need Prometheus and promtool (Debian package `prometheus`) and a PostgreSQL server for the journal's tests
# (Debian package `postgresql`; the tests run their own throwaway server with initdb/pg_ctl).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY_STAMP := $(VENV)/.installed
NPM_STAMP := deploy/localnet/node_modules/.installed
# apt-get needs root: sudo unless we are root already.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test lint unit chain e2e faults bench schema deps promtool postgres clean

demo: deps
	$(BIN)/ballast demo

test: lint promtool postgres
	$(BIN)/python -m pytest

lint: deps
	$(BIN)/ruff check agent tests benchmarks
	$(BIN)/mypy agent

unit: deps postgres
	$(BIN)/python -m pytest -m unit

chain: deps postgres
	$(BIN)/python -m pytest -m chain

e2e: deps promtool postgres
	$(BIN)/python -m pytest -m e2e

# The fault matrix: the live daemon behind a fault-injecting JSON-RPC proxy through a price crash, 3 runs per fault.
faults: deps
	$(BIN)/python -m tests.faults.matrix --runs 3

bench: deps
	$(BIN)/python benchmarks/greeks.py
	$(BIN)/python benchmarks/snapshot.py
	$(BIN)/python benchmarks/backtest.py
	$(BIN)/python benchmarks/recipe.py
	$(BIN)/python benchmarks/fleet.py
	$(BIN)/python benchmarks/reaction.py

schema: deps
	$(BIN)/ballast check-policy --write-schema config/policy.schema.json

deps: $(PY_STAMP) $(NPM_STAMP)

# promtool checks deploy/prometheus, and the end-to-end test scrapes the daemon with a real Prometheus server.
promtool:
	@command -v promtool >/dev/null || { \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus; }

# The journal's tests run against SQLite and a real PostgreSQL server (tests/postgres.py finds Debian's binaries).
postgres:
	@command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql; }

$(PY_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

$(NPM_STAMP): deploy/localnet/package-lock.json
	cd deploy/localnet && npm ci --no-audit --no-fund --loglevel=error
	touch $@

clean:
	rm -rf $(VENV) deploy/localnet/node_modules deploy/localnet/build .state .pytest_cache .mypy_cache .ruff_cache
