# neocode-gateway: two commands do everything on a fresh machine with Python 3.11+ and make.
#   make run    create .venv with what running needs, start the gateway (echo runtime) in the
#               foreground on the default address
#   make test   add the dev tools to .venv, then ruff, mypy --strict and pytest with coverage
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
ARGS   ?=
COV_MIN ?= 90
PREFIX ?= $(HOME)/.local

.PHONY: help venv dev browser run install test lint typecheck pytest bench chaos fuzz schema clean

help:
	@echo "make run     start the gateway in the foreground (ARGS='--log-level debug' to pass flags)"
	@echo "make install put the neocode-gateway command on your PATH ($(PREFIX)/bin)"
	@echo "make test    lint, type-check and run the whole test suite with branch coverage"
	@echo "make venv    only create/update the virtual environment (.venv)"
	@echo "make bench   run the shared benchmark harness against this gateway"
	@echo "make chaos   run the chaos suite's long variants"
	@echo "make fuzz    fuzz the framer and decoder (FUZZ_SECONDS=60)"
	@echo "make schema  regenerate docs/frame.schema.json"

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required, found " + sys.version.split()[0])'
	$(PYTHON) -m venv $(VENV)

# What running needs (msgspec, uvloop, rich): no dev tools.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e .
	@# Bytecode now, so that each command's start does not compile our modules again.
	$(BIN)/python -m compileall -q src >/dev/null
	@touch $(STAMP)

# The dev tools on top (pytest, mypy, ruff, hypothesis, pexpect, playwright, ...) and the
# web page's extra (starlette, uvicorn, markdown-it-py, segno), then a browser for its tests.
$(DEV_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,web]'
	@$(MAKE) --no-print-directory browser
	@touch $(DEV_STAMP)

# The web page's browser tests drive a real headless Chromium through Playwright's Python
# package, never Playwright's own browser download: $$NEOCODE_CHROMIUM if set, else
# /usr/bin/chromium (Debian's), else chromium or chromium-browser on PATH. Where none is
# there and we are root with apt-get (CI), Debian's chromium is installed; otherwise the
# browser tests are skipped with one reason (tests/integration/web_support.py).
browser:
	@if [ -n "$$NEOCODE_CHROMIUM" ] || [ -x /usr/bin/chromium ] || command -v chromium >/dev/null 2>&1 \
	    || command -v chromium-browser >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's chromium for the web page's browser tests"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else echo "note: no Chromium found; the web page's browser tests will be skipped (set NEOCODE_CHROMIUM)"; fi

venv: $(STAMP)

dev: $(DEV_STAMP)

run: $(STAMP)
	exec $(BIN)/neocode-gateway $(ARGS)

# A link to the venv's command in $(PREFIX)/bin (~/.local/bin, on most PATHs).
install: $(STAMP)
	mkdir -p $(PREFIX)/bin
	ln -sf $(abspath $(BIN))/neocode-gateway $(PREFIX)/bin/neocode-gateway
	@echo "installed $(PREFIX)/bin/neocode-gateway -> $(abspath $(BIN))/neocode-gateway"
	@case ":$$PATH:" in *":$(PREFIX)/bin:"*) ;; *) echo "note: $(PREFIX)/bin is not on your PATH; add it, or run $(abspath $(BIN))/neocode-gateway";; esac

lint: $(DEV_STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(DEV_STAMP)
	$(BIN)/mypy

pytest: $(DEV_STAMP)
	rm -f .coverage .coverage.*
	$(BIN)/python -m pytest --cov --cov-branch --cov-report=term --cov-fail-under=$(COV_MIN) $(PYTEST_ARGS)

test: lint typecheck pytest

bench: $(DEV_STAMP)
	benchmarks/run.sh $(BENCH_ARGS)

chaos: $(DEV_STAMP)
	NEOCODE_CHAOS_LONG=1 $(BIN)/python -m pytest tests/chaos -p no:cacheprovider $(PYTEST_ARGS)

fuzz: $(DEV_STAMP)
	$(BIN)/python tests/fuzz/fuzz_framer.py --seconds $${FUZZ_SECONDS:-60}

schema: $(STAMP)
	$(BIN)/neocode-gateway schema > docs/frame.schema.json

clean:
	rm -rf $(VENV) .coverage .coverage.* .mypy_cache .ruff_cache .pytest_cache build dist
