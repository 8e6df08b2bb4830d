# vmsnap: two commands on a fresh machine.
#   make demo   creates .venv, installs, starts Temporal dev server + cluster simulator + worker,
#               and runs the main job (snapshots of the sample VMs).
#   make test   the same install, then the whole test suite.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: install demo test lint typecheck check clean

# Bytecode for our own modules, kept current on every run (compileall skips what is
# up to date): Temporal's workflow sandbox executes the workflow modules afresh for every
# run, and without a .pyc (PYTHONDONTWRITEBYTECODE, a read-only tree) it compiles them
# every time: that was half the worker's CPU per snapshot.
install: $(STAMP)
	$(BIN)/python -m compileall -q activities bench cluster console contracts demo rules simulator starter workflows worker.py

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,local,bench,simulator,codec-server,console]'
	touch $(STAMP)

demo: install
	$(BIN)/python -m demo

# ruff, mypy and the layer contracts (.importlinter) first (30 s), then the suite. pytest exits 5 when it collects no test:
# that is not a failure of the build.
test: install
	$(BIN)/ruff check .
	$(BIN)/mypy .
	$(BIN)/lint-imports
	$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; rc=0; fi; exit $$rc

lint: install
	$(BIN)/ruff check .

typecheck: install
	$(BIN)/mypy .

check: lint typecheck test

clean:
	rm -rf $(VENV) .state build *.egg-info .pytest_cache .mypy_cache .ruff_cache
