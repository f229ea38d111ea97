# The README's two commands: `make run` and `make test`. Each creates .venv when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

$(BIN)/llmsignal: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch first and pinned, so that pip takes the CPU wheel and never resolves a CUDA build.
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(BIN)/llmsignal

.PHONY: install run quick test lint bench
install: $(BIN)/llmsignal

run: install
	$(BIN)/llmsignal run

quick: install
	$(BIN)/llmsignal run --quick

test: install
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python benchmarks/run.py
