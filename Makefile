# Everything a new machine needs: `make demo` and `make test` create .venv on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup test bench demo lint params clean venv-pennylane-rigetti rigetti-servers browser

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev,rigetti,braket,ray,dicom]"
	touch $(STAMP)

# one worker per core (pytest-xdist); a file's tests share a worker, so its module fixtures
# are built once
test: setup venv-pennylane-rigetti browser
	$(BIN)/python -m pytest -q -n auto --dist loadfile

# pennylane-rigetti 0.40 (its last release) needs PennyLane <= 0.41, pyquil < 4, numpy < 2
# and pydantic < 2: it lives in its own venv, driven by `pennylane:rigetti.*?python=...`.
# Built once; skipped while the venv imports pennylane_rigetti.
PL_RIGETTI := .venv-pennylane-rigetti

venv-pennylane-rigetti:
	@$(PL_RIGETTI)/bin/python -c "import pennylane_rigetti" 2>/dev/null || { \
	  $(PY) -m venv $(PL_RIGETTI) && \
	  $(PL_RIGETTI)/bin/pip install -q --upgrade pip && \
	  $(PL_RIGETTI)/bin/pip install -q --only-binary=:all: --no-binary=rpcq,lark,retry \
	    torch==2.13.0 pennylane-rigetti && \
	  $(PL_RIGETTI)/bin/pip install -q pennylane==0.41.1 "autoray<0.8"; }

# qvm and quilc as servers on their default ports (5000, 5555), for rigetti_qvm
rigetti-servers:
	bash scripts/start-rigetti-servers.sh

# headless Chromium for the report's browser test (Debian packages; needs root, else the
# test skips, or fails when CI is set)
browser:
	@test -x /usr/bin/chromium || [ "$$(id -u)" != 0 ] || { \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	  apt-get install -y -qq chromium chromium-driver >/dev/null; }

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
