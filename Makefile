# One command each: install, run, serve, demo, test, lint, bench, plan, deploy.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
STAMP := $(VENV)/.installed
FUNCTION_DIR := functions/fetch_book

.DEFAULT_GOAL := help
.PHONY: help install run serve lint test test-steps test-fast bench clean

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(STAMP): requirements.txt requirements-test.txt $(FUNCTION_DIR)/requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps --editable .
	touch $@

install: $(STAMP) ## Create .venv with everything for development (pip install -e . included)

run: $(STAMP) ## Collect one minute of snapshots from Bitso into data/
	$(BIN)/bitso-collect

# Where `make serve` listens: this machine only, unless asked (`make serve HOST=0.0.0.0`).
# Plain `=`, not `?=`: an exported HOST or PORT in the shell does not change it.
HOST = 127.0.0.1
PORT = 8080

serve: $(STAMP) ## Serve fetch_book on http://127.0.0.1:8080 (HOST=0.0.0.0 to serve beyond it)
	$(BIN)/functions-framework --target=fetch_book --source=$(FUNCTION_DIR)/main.py \
		--host=$(HOST) --port=$(PORT)

lint: $(STAMP) tf-lint ## ruff check and format, mypy, terraform fmt -check (when found), checkov
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy $(FUNCTION_DIR)/bitso_collector $(FUNCTION_DIR)/main.py bitso_format.py bitso_http.py bitso_logs.py
	$(BIN)/mypy bitso_archive functions/compact_hour/main.py

# make test runs pytest three times, with pytest-xdist where it is safe:
# 1. the unit tests (and the end-to-end tests marked load_tolerant), on TEST_WORKERS workers:
#    the tests mostly wait, on servers and on real time, so more workers than cores pay off;
# 2. the end-to-end tests, which check when things happen to within a second (slot starts,
#    lateness), two at a time, beside nothing else;
# 3. the serial tests, which check timing to tens of milliseconds: one at a time, beside nothing.
# The longest start first, each slow test on its own, the rest of a module together
# (tests/conftest.py).
TEST_WORKERS ?= 4
PARALLEL = --dist loadgroup --no-loadscope-reorder
TIMED = e2e and not load_tolerant
UNIT = not e2e and not slow

test: ## Lint, build the docs, then every test in parallel (the function's again on 3.12); timed
	@start=$$(date +%s); $(MAKE) --no-print-directory test-steps; status=$$?; \
	took=$$(( $$(date +%s) - start )); \
	echo "make test: $$([ $$status = 0 ] && echo passed || echo FAILED) in $$((took / 60)) min $$((took % 60)) s"; \
	exit $$status

# The virtual environments are made side by side (each pip mostly waits on the network and disk).
test-steps:
	@$(MAKE) --no-print-directory -j3 $(STAMP) $(CHECKOV_STAMP) $(if $(PY312),$(STAMP312))
	@$(MAKE) --no-print-directory lint docs
	$(BIN)/pytest -n $(TEST_WORKERS) $(PARALLEL) -m "not ($(TIMED)) and not serial"
	$(BIN)/pytest -n 2 $(PARALLEL) -m "$(TIMED) and not serial"
	$(BIN)/pytest -m serial
	@$(MAKE) --no-print-directory test-py312-if-found

test-fast: $(STAMP) ## The unit tests: no lint, no end-to-end, slow or Terraform tests (about a minute)
	$(BIN)/pytest -n 2 -m "$(UNIT) and not serial" --ignore=tests/infra
	$(BIN)/pytest -m "$(UNIT) and serial" --ignore=tests/infra

clean: ## Remove the virtual environments and collected data
	rm -rf $(VENV) .venv-checkov .venv-py312 data try-data try-data-out .pytest_cache .mypy_cache .ruff_cache .hypothesis

-include mk/*.mk
