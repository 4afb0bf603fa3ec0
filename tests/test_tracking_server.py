"""A tracking server that goes away mid-run (issue 29, item 1): the run computes and writes every cell,
says which it could not log, and `repro track` logs them from their files once the server is back,
exactly once. Against a real `mlflow server` process (SQLite backend, proxied artifacts)."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from repro.tracking.runs import Tracker, unreachable
from tests.test_sweep_postgres import postgres_url  # noqa: F401  (PostgreSQL started by the test, or a skip)

KEYS = ["t=0", "t=0.4", "t=0.8", "t=1"]   # fig5_9's cells at `test`


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(root: Path, port: int, backend: str) -> subprocess.Popen:
    """`mlflow server` on 127.0.0.1:port over the backend store (kept across restarts), artifacts
    proxied into root/artifacts-store, in its own process group (its job consumers are stopped with
    it); returns once /health answers."""
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend,
         "--artifacts-destination", str(root / "artifacts-store"), "--serve-artifacts", "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1"],
        start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return server
        except OSError:
            time.sleep(0.5)
    stop_server(server)
    pytest.fail("mlflow server did not answer /health within 120 s")


def stop_server(server: subprocess.Popen) -> None:
    try:
        os.killpg(server.pid, signal.SIGKILL)   # gone at once, as a crashed or unplugged server is
    except ProcessLookupError:
        pass
    server.wait(timeout=30)


class _Refusing:
    """A client whose every call fails as requests does when nothing listens on the port."""

    def __getattr__(self, name):
        def call(*a, **k):
            import requests

            raise requests.exceptions.ConnectionError("[Errno 111] Connection refused")
        return call


def test_an_unreachable_store_is_told_apart_from_a_refused_request():
    import requests
    from mlflow.exceptions import MlflowException

    assert unreachable(requests.exceptions.ConnectionError("refused"))
    wrapped = MlflowException("API request to http://127.0.0.1:9/api/2.0/mlflow/runs/create failed with exception "
                              "HTTPConnectionPool(host='127.0.0.1', port=9): Max retries exceeded with url")
    assert unreachable(wrapped)
    assert not unreachable(MlflowException("INVALID_PARAMETER_VALUE: Metric value 'nan' is not a number"))
    assert not unreachable(ValueError("a bug of ours"))


def test_a_tracker_whose_store_went_away_notes_the_cells_and_raises_nothing(monkeypatch):
    tracker = Tracker("s", "s-test", enabled=False)
    tracker.enabled = True
    from repro.tracking.runs import Run

    monkeypatch.setattr("repro.tracking.runs.tracking_uri", lambda: "http://127.0.0.1:9")
    tracker.parent = Run(_Refusing(), "parent", "0", tracker.guard)
    for key in KEYS[:2]:
        with tracker.child(key) as run:
            run.log_metrics({"miou": 0.5})   # a NullRun: nothing is sent
    tracker.parent.end("FINISHED")
    assert tracker.away.startswith("http://127.0.0.1:9 stopped answering (ConnectionError)")
    assert tracker.not_logged == KEYS[:2]
    with pytest.raises(ValueError):   # any other error is still raised
        tracker.away = None
        tracker.guard(lambda: (_ for _ in ()).throw(ValueError("a bug")))


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_server_gone_mid_run_loses_no_cell_and_track_logs_each_once(backend, workdir, monkeypatch, capfd, request):
    # the group deployment of README "Several machines": mlflow server over PostgreSQL (skipped, saying
    # so, where the postgresql package is missing) or over SQLite, artifacts proxied by the server
    from mlflow.tracking import MlflowClient

    import repro.engine.cells
    from repro.cli import main

    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    for name in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "MLFLOW_HTTP_REQUEST_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    store = (request.getfixturevalue("postgres_url") if backend == "postgresql"
             else f"sqlite:///{workdir / 'server.db'}")
    server = start_server(workdir, port, store)
    try:
        real = repro.engine.cells.kill_point
        done = []

        def server_dies_after_the_first_cell(name: str) -> None:
            real(name)
            if name == "cell:done" and not done:
                done.append(name)
                stop_server(server)

        monkeypatch.setattr(repro.engine.cells, "kill_point", server_dies_after_the_first_cell)
        t0 = time.monotonic()
        main(["run", "fig5_9", "--profile", "test", "--no-progress", "--device", "cpu"])
        seconds = time.monotonic() - t0
        out, err = capfd.readouterr()
        cells = workdir / "results" / "fig5_9" / "test" / "cells"
        assert sorted(p.stem for p in cells.glob("*.json")) == KEYS        # every cell computed and written
        assert "4 cells (4 run, 0 already finished)" in out
        lines = [ln for ln in err.splitlines() if "not logged" in ln]
        assert len(lines) == 1 and f"MLflow store {uri} stopped answering" in lines[0], err[-2000:]
        assert "3 cell(s) not logged (t=0.4, t=0.8, t=1)" in lines[0]
        assert "`repro track fig5_9 --profile test`" in lines[0]
        assert seconds < 120   # bounded retries: seconds per call while it was away, not minutes

        with pytest.raises(SystemExit) as e:   # still away: one line, exit 2
            main(["track", "fig5_9", "--profile", "test"])
        assert e.value.code == 2
        assert [ln for ln in capfd.readouterr().err.splitlines() if ln.strip()][-1].startswith(f"error: MLflow store {uri}")

        server = start_server(workdir, port, store)   # back, with the same database
        main(["track", "fig5_9", "--profile", "test"])
        assert "fig5_9 [test]: 3 cell(s) logged now (t=0.4, t=0.8, t=1), 1 already in MLflow" in capfd.readouterr().out
        main(["track", "fig5_9", "--profile", "test"])
        assert "fig5_9 [test]: 0 cell(s) logged now, 4 already in MLflow" in capfd.readouterr().out

        client = MlflowClient(tracking_uri=uri)
        exp = client.get_experiment_by_name("fig5_9")
        runs = client.search_runs([exp.experiment_id], filter_string="attributes.status = 'FINISHED'")
        logged = sorted(r.data.tags["repro.cell"] for r in runs if "repro.cell" in r.data.tags)
        assert logged == KEYS                                               # each cell once
        for r in runs:
            if r.data.tags.get("repro.cell") == "t=0.8":
                assert r.data.metrics["miou"] == pytest.approx(
                    __import__("json").loads((cells / "t=0.8.json").read_text())["values"]["miou"])
    finally:
        stop_server(server)
