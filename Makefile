# Two entry points for a fresh machine (see README.md):
#   make main   set up, run the DVC pipeline (every spec at the smoke profile on the embedded data, the reports)
#   make test   set up, run the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PROFILE ?= smoke
# make main JOBS=N: each spec's cells in N processes (repro run --jobs N)
JOBS ?= 1

.PHONY: setup postgres chromium main run-all test bench reports clean-results

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# torch is installed by pip alone (uv/poetry would download several GB); pinned releases.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

setup: $(VENV)/.installed postgres chromium

# Debian's chromium for the test that checks the MLflow UI in a real browser (headless);
# installed where apt-get can (root, as on CI), else tests/test_mlflow_browser.py skips.
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  echo "chromium not installed (needs root and apt-get): tests/test_mlflow_browser.py will skip"

# PostgreSQL server binaries (Debian's package) for the sweep test that shares one study between
# processes through PostgreSQL; installed where apt-get can (root, as on CI), else that test skips.
postgres:
	@ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || command -v pg_ctl >/dev/null 2>&1 || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; } || \
	  echo "postgresql not installed (needs root and apt-get): tests/test_sweep_postgres.py will skip"

# The pipeline of dvc.yaml (data -> trained models -> every spec at params.yaml's profile -> reports),
# with the venv's repro/dvc on PATH; JOBS=N runs each spec's cells in N processes (same results).
# A second `make main` does nothing: every stage is up to date.
main: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" REPRO_JOBS=$(JOBS) $(BIN)/dvc repro

# Without DVC: every spec through `repro run all` (finished cells skipped), then the reports.
run-all: setup
	$(BIN)/repro run all --profile $(PROFILE) $(if $(filter-out 1,$(JOBS)),--jobs $(JOBS))
	$(BIN)/repro report all

test: setup
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup

bench: setup
	$(BIN)/python -m pytest -q -m bench

reports: setup
	$(BIN)/repro report all
