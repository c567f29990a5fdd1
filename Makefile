# The two commands a newcomer types: `make run` (the local bus with a real broker and sample
# traffic) and `make test` (the whole test suite against a real broker). Both set themselves up.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint setup clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	$(BIN)/lienthong broker prepare
	$(BIN)/python -m services.tools.localoidc prepare
	touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(BIN)/lienthong run

# The quick suite, then the fault-injection scenarios (SIGKILLs, outages, poison; marked `faults`).
test: $(STAMP)
	$(BIN)/pytest
	$(BIN)/pytest -m faults -s

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	PYTHONPATH=. $(BIN)/lint-imports --no-cache

clean:
	rm -rf $(VENV) var test-output .pytest_cache .mypy_cache .ruff_cache
