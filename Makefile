# Everything a new machine needs: `make demo` and `make test` create .venv on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup test bench demo lint params clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev,rigetti]"
	touch $(STAMP)

test: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check qvit_hw tests bench
	$(BIN)/ruff format --check qvit_hw tests bench

params: setup
	$(BIN)/qvit-hw params

bench: setup
	$(BIN)/python -m bench.run

demo: setup
	$(BIN)/qvit-hw demo --out demo

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
