# The README's two commands. Each creates the virtual environment it needs.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo test clean

$(BIN)/genlab: pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, from the pinned CPU build: a bare `pip install torch` would fetch GBs of CUDA wheels.
	$(BIN)/pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e ".[test]"
	touch $(BIN)/genlab

setup: $(BIN)/genlab

demo: setup
	$(BIN)/genlab demo --out demo

test: setup
	$(BIN)/python -m pytest tests

clean:
	rm -rf $(VENV) demo
