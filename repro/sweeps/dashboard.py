"""optuna-dashboard over a sweep storage, on 127.0.0.1 only.

It is given the opened storage object (not a URL), so a journal file is written through the same
flock as the workers' writes (the dashboard writes notes and user attrs).
"""
from __future__ import annotations

import threading
import time
from wsgiref.simple_server import WSGIRequestHandler, make_server

from repro import signals
from repro.errors import UserError
from repro.sweeps.storage import open_storage


def serve(storage: str | None, port: int, echo=print) -> None:
    if not 1 <= port <= 65535:
        raise UserError(f"--port {port}: must be between 1 and 65535")
    st = open_storage(storage, readonly=True)
    from optuna_dashboard import wsgi

    try:
        server = make_server("127.0.0.1", port, wsgi(st.storage), handler_class=_QuietHandler)
    except OSError as e:
        raise UserError(f"--port {port}: cannot listen on 127.0.0.1 ({e.strerror or e})") from None
    echo(f"optuna-dashboard at http://127.0.0.1:{port} (storage {st.label}); Ctrl-C stops it")
    # A SIGTERM (repro.signals) that lands while a request is answered is swallowed by wsgiref's
    # handler (it catches everything and logs it): the watchdog stops the server then.
    watchdog = threading.Thread(target=_stop_on_sigterm, args=(server,), daemon=True)
    watchdog.start()
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        server.server_close()


def _stop_on_sigterm(server) -> None:
    while not signals.received():
        time.sleep(0.2)
    server.shutdown()


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args) -> None:   # one line per request on stderr otherwise
        pass
