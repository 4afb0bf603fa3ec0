"""A test hook: SIGKILL this process at a named point, so a kill lands at a chosen moment.

REPRO_TEST_KILL_AT=<point>[@N] kills the process the N-th time (default 1st) it passes a point
whose name matches <point> (fnmatch pattern). Points: `cell:start` (a cell's child run is open,
nothing written), `cell:done` (a cell's file is written, the next not begun), `write:<file name>`
(inside an atomic write: the temporary file is complete, not yet renamed), e.g.
`write:checkpoint.pt`, `write:*.json`. REPRO_TEST_KILL_SIGNAL=TERM sends SIGTERM instead (what
`timeout`, `docker stop` and SLURM send). Unset (always, outside tests) it costs one dict lookup.
"""
from __future__ import annotations

import fnmatch
import os
import signal

ENV = "REPRO_TEST_KILL_AT"
SIGNAL_ENV = "REPRO_TEST_KILL_SIGNAL"
_passed: dict[str, int] = {}


def kill_point(name: str) -> None:
    spec = os.environ.get(ENV)
    if not spec:
        return
    pattern, _, nth = spec.partition("@")
    if not fnmatch.fnmatchcase(name, pattern):
        return
    _passed[pattern] = _passed.get(pattern, 0) + 1
    if _passed[pattern] == (int(nth) if nth else 1):
        os.kill(os.getpid(), getattr(signal, "SIG" + os.environ.get(SIGNAL_ENV, "KILL")))
