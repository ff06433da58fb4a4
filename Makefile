# The two commands of the README: `make demo` (the example app under load, profiled) and
# `make test` (lint, types and the whole test suite). Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The development and test environment is pinned by constraints.txt (every Python from 3.10 on,
# one file); the package's own dependency ranges in pyproject.toml stay open for users.
# `make lock` refreshes it on purpose, after a change of pyproject.toml or to take new releases.
CONSTRAINTS := constraints.txt
UV_VERSION := 0.13.9

# The hook-free engine needs CPython 3.12 or later: its tests run in a second environment.
HOOKFREE_PYTHON ?= python3.12
HOOKFREE_VENV ?= .venv-hookfree
HOOKFREE_STAMP := $(HOOKFREE_VENV)/.installed
HOOKFREE_TESTS := tests/test_engines_pyroscope.py

.PHONY: demo test lint typing pytest pytest-hookfree bench clean lock

$(STAMP): pyproject.toml setup.py wsgiprof/_cpusampler.c $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c $(CONSTRAINTS) -e . --group dev
	touch $(STAMP)

$(HOOKFREE_STAMP): pyproject.toml setup.py wsgiprof/_cpusampler.c $(CONSTRAINTS)
	@command -v $(HOOKFREE_PYTHON) >/dev/null || { \
		echo "$(HOOKFREE_PYTHON) not found: the hook-free engine's tests need CPython 3.12+" \
		"(set HOOKFREE_PYTHON=python3.13 to use another)"; exit 1; }
	$(HOOKFREE_PYTHON) -m venv $(HOOKFREE_VENV)
	$(HOOKFREE_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(HOOKFREE_VENV)/bin/python -m pip install --quiet -c $(CONSTRAINTS) -e '.[pyroscope]' \
		--group tests
	touch $(HOOKFREE_STAMP)

lock:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet uv==$(UV_VERSION)
	$(BIN)/uv pip compile pyproject.toml --all-extras --group dev --universal \
		--python-version 3.10 --custom-compile-command "make lock" --quiet -o $(CONSTRAINTS)

demo: $(STAMP)
	$(BIN)/python -m examples.flask_app.demo

test: lint typing pytest pytest-hookfree

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typing: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/python -m pytest

pytest-hookfree: $(HOOKFREE_STAMP)
	WSGIPROF_TEST_HOOKFREE=1 $(HOOKFREE_VENV)/bin/python -m pytest $(HOOKFREE_TESTS)

bench: $(STAMP)
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) $(HOOKFREE_VENV) .tox .mypy_cache .ruff_cache .pytest_cache demo-output
