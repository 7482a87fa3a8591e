# neocode-gateway: two commands do everything on a fresh machine with Python 3.11+ and make.
#   make run    create .venv, install, start the gateway in the foreground on the default address
#   make test   create/update .venv, then ruff, mypy --strict and pytest with branch coverage
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
ARGS   ?=
COV_MIN ?= 90

.PHONY: help venv run test lint typecheck pytest bench chaos fuzz schema clean

help:
	@echo "make run     start the gateway in the foreground (ARGS='--log-level debug' to pass flags)"
	@echo "make test    lint, type-check and run the whole test suite with branch coverage"
	@echo "make venv    only create/update the virtual environment (.venv)"
	@echo "make bench   run the shared benchmark harness against this gateway"
	@echo "make chaos   run the chaos suite's long variants"
	@echo "make fuzz    fuzz the framer and decoder (FUZZ_SECONDS=60)"
	@echo "make schema  regenerate docs/frame.schema.json"

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required, found " + sys.version.split()[0])'
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	exec $(BIN)/neocode-gateway $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	rm -f .coverage .coverage.*
	$(BIN)/python -m pytest --cov --cov-branch --cov-report=term --cov-fail-under=$(COV_MIN) $(PYTEST_ARGS)

test: lint typecheck pytest

bench: $(STAMP)
	benchmarks/run.sh $(BENCH_ARGS)

chaos: $(STAMP)
	NEOCODE_CHAOS_LONG=1 $(BIN)/python -m pytest tests/chaos -p no:cacheprovider $(PYTEST_ARGS)

fuzz: $(STAMP)
	$(BIN)/python tests/fuzz/fuzz_framer.py --seconds $${FUZZ_SECONDS:-60}

schema: $(STAMP)
	$(BIN)/neocode-gateway schema > docs/frame.schema.json

clean:
	rm -rf $(VENV) .coverage .coverage.* .mypy_cache .ruff_cache .pytest_cache build dist
