"""`repro ui`: the MLflow UI (or optuna-dashboard) on 127.0.0.1, with links to each experiment's runs."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from typing import Callable

from repro.errors import Terminated, UserError
from repro.sweeps.dashboard import serve
from repro.tracking.view import WORKFLOW_QUERY, store_description
from repro.tracking.runs import experiment_links
from repro.tracking.store import check_store


STOP_SECONDS = 10   # how long the MLflow server gets to stop its workers before it is killed


def check_port_free(port: int) -> None:
    """One line at once for a port in use (the server would retry it for over a minute, then exit 0)."""
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as e:
            raise UserError(f"--port {port}: cannot listen on 127.0.0.1 ({e.strerror or e}); "
                            f"choose another port") from None


def ui_command(port: int | None, backend_store_uri: str | None, workers: int, optuna: bool, storage: str | None,
               echo: Callable[..., None]) -> int | None:
    """The MLflow server's exit code (0 after Ctrl-C); None after optuna-dashboard."""
    if optuna:
        serve(storage, 8080 if port is None else port, echo=echo)
        return None
    port = 5000 if port is None else port
    if not 1 <= port <= 65535:
        raise UserError(f"--port {port}: must be between 1 and 65535")
    uri = backend_store_uri or os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db"
    if workers < 1:
        raise UserError(f"--workers {workers}: must be at least 1")
    check_port_free(port)
    check_store(uri)   # a broken or unknown store is one line, before any link is printed
    cmd = [sys.executable, "-m", "mlflow", "ui", "--host", "127.0.0.1", "--port", str(port),
           "--backend-store-uri", uri, "--workers", str(workers)]
    base = f"http://127.0.0.1:{port}"
    echo(f"MLflow UI at {base}/#/experiments?{WORKFLOW_QUERY}")
    echo(f"store: {store_description(uri)}")
    for name, url in experiment_links(uri, base):   # each opens on its runs, not on the GenAI overview
        echo(f"  {name}: {url}")
    echo("Ctrl-C stops it", err=True)
    # Its own process group: the server's job consumers (huey) outlive a server stopped alone, so
    # Ctrl-C or SIGTERM here stops the whole group, SIGTERM first, SIGKILL after STOP_SECONDS.
    server = subprocess.Popen(cmd, start_new_session=True)
    try:
        return server.wait()
    except KeyboardInterrupt as e:
        _stop_group(server)
        if isinstance(e, Terminated):
            raise
        return 0


def _stop_group(server: subprocess.Popen) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(server.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + STOP_SECONDS
        while time.monotonic() < deadline:
            server.poll()
            try:
                os.killpg(server.pid, 0)   # anyone of the group still there?
            except ProcessLookupError:
                return
            time.sleep(0.1)
