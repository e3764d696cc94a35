# mflib: `make test` and `make reports` create the virtual environment on first use.
PYTHON  ?= python3
VENV    ?= .venv
PROFILE ?= quick
BIN     := $(VENV)/bin
UV      := $(shell command -v uv 2>/dev/null)
export MFLIB_DATA_DIR ?= $(abspath ../shared/data)

.PHONY: help venv test test-unit test-notebooks lint reports sync checked-outputs bench clean

help:
	@echo "make test              unit tests, notebook sync checks and nbval (creates $(VENV))"
	@echo "make reports [PROFILE=quick|ci|ml-1m]  run every notebook into reports/PROFILE/"
	@echo "make lint              ruff"
	@echo "make sync              re-pair notebooks/*.py with their .ipynb (jupytext)"
	@echo "make checked-outputs [NB=notebooks/02_als_bcd.ipynb]  store the nbval-checked summaries"
	@echo "make bench NAME=als    run benchmarks/bench_NAME.py"

# One stamp per set of extras, rebuilt when pyproject.toml changes.
$(VENV)/.stamp-%: pyproject.toml
	@test -x $(BIN)/python || { if [ -n "$(UV)" ]; then $(UV) venv -q -p $(PYTHON) $(VENV); \
	    else $(PYTHON) -m venv $(VENV); fi; }
	@if [ -n "$(UV)" ]; then VIRTUAL_ENV=$(VENV) $(UV) pip install -q -e '.[$*]'; \
	    else $(BIN)/python -m pip install -q --upgrade pip && $(BIN)/python -m pip install -q -e '.[$*]'; fi
	@touch $@

venv: $(VENV)/.stamp-dev

test: $(VENV)/.stamp-dev
	MFLIB_PROGRESS=0 $(BIN)/python -m pytest tests
	MFLIB_PROGRESS=0 $(BIN)/python -m pytest --nbval-lax -p no:cacheprovider notebooks

test-unit: $(VENV)/.stamp-dev
	MFLIB_PROGRESS=0 $(BIN)/python -m pytest tests

test-notebooks: $(VENV)/.stamp-dev
	MFLIB_PROGRESS=0 $(BIN)/python -m pytest --nbval-lax notebooks

lint: $(VENV)/.stamp-dev
	$(BIN)/ruff check .

reports: $(VENV)/.stamp-notebooks
	MFLIB_PROGRESS=0 $(BIN)/python -m mflib reports --profile $(PROFILE)

sync: $(VENV)/.stamp-dev
	$(BIN)/jupytext --sync notebooks/[0-9]*.py

# executes the notebooks (their own parameters, as nbval does) and stores the output of
# each "# NBVAL_CHECK_OUTPUT" cell, which `make test` then compares
NB ?= $(wildcard notebooks/[0-9]*.ipynb)
checked-outputs: $(VENV)/.stamp-dev
	MFLIB_PROGRESS=0 $(BIN)/python -c 'import sys; from mflib.experiment import \
	    store_checked_outputs as store; [print(p, store(p)) for p in sys.argv[1:]]' $(NB)

bench: $(VENV)/.stamp-dev
	$(BIN)/python -m mflib bench $(NAME)

clean:
	rm -rf reports/*/ .pytest_cache
