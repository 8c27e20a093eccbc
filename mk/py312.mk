# The function's tests on Python 3.12, the Cloud Functions runtime (development runs on 3.11+).
# Included by the root Makefile.
PY312 ?= $(shell python3.12 -c 'import sys; print(sys.executable)' 2>/dev/null || \
	(command -v pyenv >/dev/null && PYENV_VERSION=$$(pyenv latest 3.12 2>/dev/null) \
	 python3.12 -c 'import sys; print(sys.executable)' 2>/dev/null))
VENV312 := .venv-py312
STAMP312 := $(VENV312)/.installed
# Everything but the archive reader (not deployed with the function, so its polars and pyarrow
# are not installed here), the end-to-end tests that read back with it, and the Terraform checks;
# and but the slow tests (3 s or more of real time each), which ran on 3.11 through the same code.
PY312_TESTS := --ignore=tests/archive --ignore=tests/e2e/test_round_trip.py \
	--ignore=tests/e2e/test_streams_read_back.py --ignore=tests/e2e/test_try.py \
	--ignore=tests/e2e/test_datasets_collector.py --ignore=tests/infra

.PHONY: test-py312 test-py312-if-found

$(STAMP312): $(FUNCTION_DIR)/requirements.txt requirements-test.txt pyproject.toml
	@test -n "$(PY312)" || { echo "error: python3.12 not found; install Python 3.12 to run test-py312" >&2; exit 1; }
	$(PY312) -m venv $(VENV312)
	$(VENV312)/bin/pip install --quiet --upgrade pip
	$(VENV312)/bin/pip install --quiet -r $(FUNCTION_DIR)/requirements.txt -r requirements-test.txt
	$(VENV312)/bin/pip install --quiet --no-deps --editable .
	touch $@

test-py312: $(STAMP312) ## The function's tests but the slow ones on Python 3.12 (its Cloud Functions runtime)
	$(VENV312)/bin/pytest -p no:cacheprovider -n $(TEST_WORKERS) $(PARALLEL) -m "not slow and not serial" $(PY312_TESTS)
	$(VENV312)/bin/pytest -p no:cacheprovider -m "not slow and serial" $(PY312_TESTS)

# `make test` runs the 3.12 pass whenever a python3.12 is found; CI (CI=true) requires one.
test-py312-if-found:
	@if [ -n "$(PY312)" ]; then \
	  $(MAKE) --no-print-directory test-py312; \
	elif [ "$$CI" = "true" ]; then \
	  echo "error: python3.12 not found; CI runs the function's tests on 3.12 too" >&2; exit 1; \
	else \
	  echo "note: python3.12 not found, so the tests ran on $$($(PY) --version) only (see make test-py312)"; \
	fi
