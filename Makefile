# The README's two commands: `make run` and `make test`. Each creates .venv when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

# `make run` installs what a run needs; `make test` adds the test tools (ray, mlflow, playwright, ...)
$(BIN)/llmsignal: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch first and pinned, so that pip takes the CPU wheel and never resolves a CUDA build.
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e .
	touch $(BIN)/llmsignal

$(VENV)/.dev: $(BIN)/llmsignal
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(VENV)/.dev

.PHONY: install dev run quick test lint bench
install: $(BIN)/llmsignal

dev: $(VENV)/.dev

run: install
	$(BIN)/llmsignal run

quick: install
	$(BIN)/llmsignal run --quick

test: dev
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python benchmarks/run.py
