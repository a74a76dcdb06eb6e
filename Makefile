# Two commands: `make serve` and `make test`. Each sets itself up.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: serve test check install install-test node-deps bench-deps bench load-bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Installs are pinned by requirements.lock (pip-compile output).
$(VENV)/.installed: $(BIN)/python pyproject.toml requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check -c requirements.lock -e .
	touch $@

# One pip run for the app and its tests (each run builds the editable
# package again in an isolated environment: about a minute on CI's machine).
$(VENV)/.installed-test: $(BIN)/python pyproject.toml requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check -c requirements.lock -e '.[test]'
	touch $(VENV)/.installed $@

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

# npm packages of the tests, pinned by each folder's package-lock.json.
NODE_DIRS := tests/node tests/sync/watermelondb
NODE_STAMPS := $(addsuffix /node_modules/.installed,$(NODE_DIRS))

%/node_modules/.installed: %/package.json %/package-lock.json
	cd $* && npm ci --no-audit --no-fund --loglevel=error
	touch $@

## node-deps: npm ci where the tests use npm packages (tus-js-client, WatermelonDB)
node-deps: $(NODE_STAMPS)

## bench: the sync benchmark (bench/sync_bench.py; PostgreSQL too when
## PHENOSYNC_BENCH_POSTGRES_URL or PHENOSYNC_TEST_POSTGRES_URL is set)
bench-deps: bench/node/node_modules/.installed
bench: install bench-deps
	$(BIN)/python bench/sync_bench.py $(BENCH_ARGS)

## load-bench: 200 devices against `phenosync serve` (SQLite; PostgreSQL with 4
## workers when PHENOSYNC_BENCH_POSTGRES_URL is set); writes bench/load_report.md
load-bench: install-test
	$(BIN)/python bench/load_bench.py --report $(BENCH_ARGS)

## test: checks, then the whole suite (SQLite; PostgreSQL too when
## PHENOSYNC_TEST_POSTGRES_URL is set)
test: check node-deps
	$(BIN)/pytest

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache $(addsuffix /node_modules,$(NODE_DIRS)) bench/node/node_modules
