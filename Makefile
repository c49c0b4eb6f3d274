# The two commands of the README: `make demo` (the main job) and `make test` (everything CI runs).
# Each installs what it needs on first use: a .venv from pyproject.toml and `npm ci` in deploy/localnet.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY_STAMP := $(VENV)/.installed
NPM_STAMP := deploy/localnet/node_modules/.installed

.PHONY: demo test lint unit chain bench schema deps clean

demo: deps
	$(BIN)/ballast demo

test: lint
	$(BIN)/python -m pytest

lint: deps
	$(BIN)/ruff check agent tests benchmarks
	$(BIN)/mypy agent

unit: deps
	$(BIN)/python -m pytest -m unit

chain: deps
	$(BIN)/python -m pytest -m chain

bench: deps
	$(BIN)/python benchmarks/greeks.py

schema: deps
	$(BIN)/ballast check-policy --write-schema config/policy.schema.json

deps: $(PY_STAMP) $(NPM_STAMP)

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
