"""SIGTERM (what `timeout`, `docker stop` and SLURM send) taken like Ctrl-C: the handler raises
repro.errors.Terminated, a KeyboardInterrupt, where the process is, so every Ctrl-C path runs
(the cell stops, MLflow runs end KILLED, temporary files go). The command line asks `received()`
at the end to exit 143 instead of 130 (Typer may turn the interrupt into an Abort or a 130)."""
from __future__ import annotations

import signal
import threading

from repro.errors import Terminated

EXIT_CODE = 128 + signal.SIGTERM
_received: list[int] = []


def _on_sigterm(signum, frame) -> None:
    if not _received:   # a second SIGTERM while cleaning up does not interrupt the cleanup
        _received.append(signum)
        raise Terminated()


def install() -> None:
    """Take SIGTERM like Ctrl-C from now on (in the main thread; elsewhere Python cannot)."""
    _received.clear()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)


def received() -> bool:
    """Whether a SIGTERM arrived since install()."""
    return bool(_received)
