"""Shared fixtures: every test that writes runs in its own folder, with its own MLflow store."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# One torch thread in every test and every process a test starts, module- and session-scoped
# fixtures included (they are set up before the autouse fixture below runs): a reference computed
# at one thread count and compared with a run at another differs by float rounding.
os.environ["REPRO_THREADS"] = "1"


@pytest.fixture(autouse=True)
def _few_threads(monkeypatch):
    # Tests use tiny tensors: one thread avoids contention (and is ~10x faster on a loaded machine).
    # REPRO_THREADS: the thread setting that run_spec applies (repro.environment) and subprocesses inherit.
    import torch

    monkeypatch.setenv("REPRO_THREADS", "1")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    """A fresh working directory: results/, artifacts/, reports/ and mlflow.db land here."""
    monkeypatch.chdir(tmp_path)
    for var in ("REPRO_RESULTS", "REPRO_ARTIFACTS", "REPRO_REPORTS", "REPRO_DATA", "REPRO_NO_MLFLOW"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    return tmp_path


def cli_env(workdir: Path) -> dict[str, str]:
    """Environment for running the `repro` console script in a subprocess."""
    env = dict(os.environ)
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{workdir / 'mlflow.db'}"
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("REPRO_NO_MLFLOW", None)
    return env
