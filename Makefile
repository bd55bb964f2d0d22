# Two entry points for a fresh machine:  make demo  |  make test
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
export PYTHONSAFEPATH := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: demo test setup lint typecheck bench notebooks clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

setup: $(BIN)/python
	$(BIN)/pip install -q torch==2.13.0  # the CPU build first, so nothing pulls a CUDA one
	$(BIN)/pip install -q -e '.[dev,postgres,embeddings,reports,langchain,mcp,tracing]' --config-settings editable_mode=strict

demo: setup
	$(BIN)/tether demo

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy -p tether

test: setup lint
	TETHER_MIN_TESTS=$${TETHER_MIN_TESTS:-600} .ci/with-postgres.sh $(BIN)/pytest tests -q -n auto --maxprocesses=4

bench: setup
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) build .tether *.egg-info
