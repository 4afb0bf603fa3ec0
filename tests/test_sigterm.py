"""SIGTERM (what `timeout`, `docker stop` and SLURM send) taken like Ctrl-C by `repro sweep` and
`repro ui`: exit 143 with one line, no MLflow run left RUNNING, no temporary file, nothing left
serving; the same command afterwards finishes the work. (`repro run` and `repro train`:
tests/test_kill_resume.py, with the same kill points.)"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import cli_env

pytestmark = pytest.mark.slow
TERMINATED = 128 + signal.SIGTERM


def _env(workdir: Path, **more: str) -> dict[str, str]:
    env = cli_env(workdir) | {"REPRO_THREADS": "1", "OMP_NUM_THREADS": "1", **more}
    for var in ("REPRO_RESULTS", "REPRO_ARTIFACTS", "REPRO_REPORTS", "REPRO_EXPERIMENTS", "REPRO_TEST_KILL_AT",
                "REPRO_TEST_KILL_SIGNAL"):
        if var not in more:
            env.pop(var, None)
    return env


def _statuses(workdir: Path) -> list[str]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    ids = [e.experiment_id for e in client.search_experiments()]
    return [r.info.status for r in client.search_runs(ids, max_results=1000)] if ids else []


def _last_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def test_sigterm_stops_a_sweep_that_the_same_command_then_finishes(tmp_path):
    cmd = [sys.executable, "-m", "repro.cli", "sweep", "dg-epsilon", "--profile", "test", "--device", "cpu"]
    first = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=900,
                           env=_env(tmp_path, REPRO_TEST_KILL_AT="cell:start@3", REPRO_TEST_KILL_SIGNAL="TERM"))
    assert first.returncode == TERMINATED, first.stderr[-3000:]
    assert _last_line(first.stderr).startswith("error: terminated (SIGTERM)") and "Traceback" not in first.stderr
    lines = [ln for ln in first.stderr.splitlines() if ln.strip() and not ln.startswith(("WARNING", "[W"))]
    assert len(lines) == 1, first.stderr[-3000:]
    cells = tmp_path / "results" / "fig12_3" / "test" / "cells"
    assert len(list(cells.glob("*.json"))) == 2
    assert "RUNNING" not in _statuses(tmp_path) and "KILLED" in _statuses(tmp_path)
    assert not [p for p in tmp_path.rglob(".*.tmp")]
    second = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=900, env=_env(tmp_path))
    assert second.returncode == 0, second.stderr[-3000:]
    assert len(list(cells.glob("*.json"))) == 16
    status = subprocess.run(cmd + ["--status"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                            env=_env(tmp_path))
    assert "finished 16/16 grid points" in status.stdout and "remaining 0" in status.stdout, status.stdout
    # the interrupted trial's point was finished by the rerun: not counted as failed any more
    assert "failed 0;" in status.stdout and "(1 failed or interrupted trial(s) of points finished later)" in status.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/search?max_results=1",
                                    timeout=5) as r:
            json.loads(r.read())
        return True
    except OSError:
        return False


def test_sigterm_stops_repro_ui_and_its_server(tmp_path):
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "repro.cli", "ui", "--port", str(port)], cwd=tmp_path,
                            env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        deadline = time.time() + 90
        while time.time() < deadline and not _answers(port):
            time.sleep(0.5)
        assert _answers(port), "the MLflow UI did not answer"
        proc.send_signal(signal.SIGTERM)          # to repro alone, as `timeout` or `docker stop` would
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == TERMINATED, err[-3000:]
        assert _last_line(err).startswith("error: terminated (SIGTERM)") and "Traceback" not in err
        assert not _answers(port)                 # the server stopped with it
        time.sleep(1)
        with pytest.raises(ProcessLookupError):   # and nothing of its process group is left
            os.killpg(proc.pid, 0)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
