# Two commands for a new user: `make demo` and `make test`. Both build their own venv.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=
BENCH ?=

.PHONY: help venv demo test lint typecheck unit test-faults kafka-up kafka-down bench clean deploy-tools browser-tools

help:
	@echo "make demo        - start a local Kafka, the worker and the traffic generator; print triggers"
	@echo "make test        - lint, type-check and run the whole test suite (starts its own Kafka)"
	@echo "make test-faults - the slow fault-injection tests"
	@echo "make bench       - run the benchmarks in bench/ (BENCH=name for one)"

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy app

unit: $(STAMP)
	$(BIN)/pytest -m "not integration and not faults" $(PYTEST_ARGS)

# kustomize, promtool and schemas for tests/deploy, built once into ~/.cache/surge/tools.
deploy-tools: $(STAMP)
	$(BIN)/python tests/deploy/surge_deploy_tools.py

# Headless Chromium (Debian package) for tests/browser, installed once with apt-get.
browser-tools: $(STAMP)
	$(BIN)/python tests/browser/surge_browser_tools.py

test: lint typecheck deploy-tools browser-tools
	$(BIN)/pytest -m "not faults" $(PYTEST_ARGS)

test-faults: $(STAMP)
	$(BIN)/pytest -m faults $(PYTEST_ARGS)

demo: $(STAMP)
	$(BIN)/surge demo

kafka-up: $(STAMP)
	$(BIN)/surge kafka up

kafka-down: $(STAMP)
	$(BIN)/surge kafka down

# The bench extra (Quix Streams) goes into the same venv, on top of the test extra.
BENCH_STAMP := $(VENV)/.bench-installed

$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	@touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python -m bench $(BENCH)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
