# The two commands of the README. Both set everything up on a machine with only Python 3.11.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export GX_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1

.PHONY: run test test-fast setup lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# constraints.txt pins torch to the CPU build on disk; the package itself asks for a range.
$(STAMP): $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,dask,s3]'
	touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(BIN)/tokenmill run --data-dir data --config builtin-corpus

test: $(STAMP)
	$(BIN)/python -m pytest -q

# The edit loop: everything but the end-to-end tests marked slow (CI runs `make test`).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow" -x

lint: $(STAMP)
	$(BIN)/ruff check pipeline flows tests benchmarks
	$(BIN)/ruff format --check pipeline flows tests benchmarks
	$(BIN)/python -m mypy

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[bench]'

clean:
	rm -rf data/datasets data/work data/reports data/catalog.duckdb data/logs
