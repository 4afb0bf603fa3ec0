"""optuna-dashboard over a sweep storage, on 127.0.0.1 only.

It is given the opened storage object (not a URL), so a journal file is written through the same
flock as the workers' writes (the dashboard writes notes and user attrs).
"""
from __future__ import annotations

from repro.errors import UserError
from repro.sweeps.storage import open_storage


def serve(storage: str | None, port: int, echo=print) -> None:
    if not 1 <= port <= 65535:
        raise UserError(f"--port {port}: must be between 1 and 65535")
    st = open_storage(storage, readonly=True)
    from optuna_dashboard import run_server

    echo(f"optuna-dashboard at http://127.0.0.1:{port} (storage {st.label}); Ctrl-C stops it")
    try:
        run_server(st.storage, host="127.0.0.1", port=port)
    except OSError as e:
        raise UserError(f"--port {port}: cannot listen on 127.0.0.1 ({e.strerror or e})") from None
