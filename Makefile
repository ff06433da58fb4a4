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

.PHONY: demo test lint typing pytest bench clean lock

$(STAMP): pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c $(CONSTRAINTS) -e . --group dev
	touch $(STAMP)

lock:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet uv==$(UV_VERSION)
	$(BIN)/uv pip compile pyproject.toml --all-extras --group dev --universal \
		--python-version 3.10 --custom-compile-command "make lock" --quiet -o $(CONSTRAINTS)

demo: $(STAMP)
	$(BIN)/python -m examples.flask_app.demo

test: lint typing pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typing: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) .tox .mypy_cache .ruff_cache .pytest_cache demo-output
