# Two commands: `make serve` and `make test`. Each sets itself up.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: serve test check install install-test node-deps clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Installs are pinned by requirements.lock (pip-compile output).
$(VENV)/.installed: $(BIN)/python pyproject.toml requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check -c requirements.lock -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install --quiet --disable-pip-version-check -c requirements.lock -e '.[test]'
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

## serve: migrate, load demo data into an empty database, serve on 127.0.0.1:8000
serve: install
	$(BIN)/phenosync migrate
	$(BIN)/phenosync demo --if-empty
	$(BIN)/phenosync serve

## check: lint, layering and types
check: install-test
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy

# tus-js-client for the real-client tests, pinned by tests/node/package-lock.json.
tests/node/node_modules/.installed: tests/node/package.json tests/node/package-lock.json
	cd tests/node && npm ci --no-audit --no-fund --loglevel=error
	touch $@

node-deps: tests/node/node_modules/.installed

## test: checks, then the whole suite (SQLite; PostgreSQL too when
## PHENOSYNC_TEST_POSTGRES_URL is set)
test: check node-deps
	$(BIN)/pytest

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache tests/node/node_modules
