# Two entry points for a fresh machine (see README.md):
#   make main   set up, run the DVC pipeline (every spec at the smoke profile on the embedded data, the reports)
#   make test   set up, run the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PROFILE ?= smoke
# make main STAGES=N: N independent DVC stages side by side (repro dvc-repro --jobs N; 1: plain serial dvc repro)
STAGES ?= 2
# make main JOBS=N: each spec's cells in N processes (repro run --jobs N)
JOBS ?= 1
# torch intra-op threads of every run (REPRO_THREADS): fixed, so the same commit gives the same numbers;
# 1 thread x 2 stages fills 2 cores (a stage on 2 threads keeps them 1.33 busy: 114 s wall, 154 s CPU)
THREADS ?= 1

.PHONY: setup lock postgres chromium slurm main run-all test bench reports clean-results

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Exact versions of every dependency from requirements.lock (torch 2.14.1 and its CUDA wheels
# included; pip alone installs them: uv/poetry would download several GB), then this package
# without resolving anything again.
$(VENV)/.installed: requirements.lock pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

# Refresh requirements.lock after a change to pyproject.toml's dependencies: a fresh venv gets
# torch the way pip installs it, then this package with all its extras, and is frozen. The CUDA
# wheels (nvidia-cu*/nccl/nv*, cuda-*, triton) get torch's own marker, so the lock installs on non-Linux too.
LOCK_VENV ?= /tmp/repro-lock-venv
lock:
	rm -rf $(LOCK_VENV) && $(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(LOCK_VENV)/bin/python -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(LOCK_VENV)/bin/python -m pip install --quiet -e '.[test,gpu]'
	{ echo "# requirements.lock: exact versions of every dependency of repro (extras test and gpu included)."; \
	  echo "# Produced by 'make lock': pip freeze --all of a fresh venv made with"; \
	  echo "#   pip install torch==2.14.1 torchvision==0.29.1 && pip install -e '.[test,gpu]'"; \
	  echo "# on $$($(LOCK_VENV)/bin/python -c 'import platform; print(platform.system(), platform.machine(), "Python", platform.python_version())')."; \
	  echo "# Used by 'make setup' (hence 'make main', 'make test' and .ci/run):"; \
	  echo "#   pip install -r requirements.lock && pip install --no-deps -e ."; \
	  echo "# Refresh it with 'make lock' after changing pyproject.toml; 'repro doctor' lists what differs."; \
	  $(LOCK_VENV)/bin/python -m pip freeze --all --exclude-editable --exclude pip | \
	    sed -E '/^(nvidia-(cu|nc|nv)|cuda-|triton==)/ s/$$/ ; platform_system == "Linux"/'; } > requirements.lock.tmp
	mv requirements.lock.tmp requirements.lock

setup: $(VENV)/.installed postgres chromium slurm

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

# SLURM (Debian's slurm-wlm and munge) for the tests that start a one-node cluster and run a spec's
# cells as a job array through it; installed where apt-get can (root, as on CI), else they skip.
slurm:
	@command -v slurmctld >/dev/null 2>&1 || [ -x /usr/sbin/slurmctld ] || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null; } || \
	  echo "slurm-wlm not installed (needs root and apt-get): the SLURM tests of tests/test_slurm.py will skip"

# The pipeline of dvc.yaml (data -> trained models -> every spec at params.yaml's profile -> reports),
# with the venv's repro/dvc on PATH; JOBS=N runs each spec's cells in N processes (same results).
# A second `make main` does nothing: every stage is up to date.
# The changed stages, STAGES at a time (DVC's parallel stage execution: `dvc repro --single-item`
# per stage, upstream first), then a plain `dvc repro`, which finds nothing left to do.
main: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" REPRO_JOBS=$(JOBS) REPRO_THREADS=$(THREADS) $(BIN)/repro dvc-repro --jobs $(STAGES)
	PATH="$(CURDIR)/$(BIN):$$PATH" REPRO_JOBS=$(JOBS) REPRO_THREADS=$(THREADS) $(BIN)/dvc repro

# Without DVC: every spec through `repro run all` (finished cells skipped), then the reports.
run-all: setup
	REPRO_THREADS=$(THREADS) $(BIN)/repro run all --profile $(PROFILE) $(if $(filter-out 1,$(JOBS)),--jobs $(JOBS))
	$(BIN)/repro report all

test: setup
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup

bench: setup
	$(BIN)/python -m pytest -q -m bench

reports: setup
	$(BIN)/repro report all
