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

# pyright and mypy can't follow [tool.setuptools.package-dir]: build/typing/llmsignal is the package as its import
# name lays it out, for them only (extraPaths and mypy_path in pyproject.toml; nothing at run time imports from it).
# Its subpackages are links to the folders, so a module added later is seen at once; rebuilt when a mapping changes.
# (pip's strict editable mode links each file instead: a new module is missing until a re-install, and from the
# repo root, first on sys.path, the folder llmsignal/ hides llmsignal.finetune at run time: pytest fails.)
TYPING := build/typing/llmsignal
$(TYPING)/.made: pyproject.toml
	rm -rf $(TYPING) && mkdir -p $(TYPING)
	ln -s ../../../llmsignal/__init__.py $(TYPING)/__init__.py
	sed -n 's/^"llmsignal\.\([a-z_]*\)" = "\([^"]*\)".*/\1 \2/p' pyproject.toml | \
	  while read -r name folder; do ln -s "../../../$$folder" "$(TYPING)/$$name"; done
	touch $@

.PHONY: install dev run quick test typecheck lint bench
install: $(BIN)/llmsignal

dev: $(VENV)/.dev $(TYPING)/.made

run: install
	$(BIN)/llmsignal run
	@echo "the command is .venv/bin/llmsignal (or: source .venv/bin/activate, then llmsignal --help)"

quick: install
	$(BIN)/llmsignal run --quick

# fails on an import it can't resolve, llmsignal's included; the type errors are off (see [tool.pyright])
typecheck: dev
	$(BIN)/pyright

test: dev
	$(BIN)/ruff check .
	$(BIN)/pyright
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python benchmarks/run.py
