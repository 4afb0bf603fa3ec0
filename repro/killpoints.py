"""A test hook: SIGKILL this process at a named point, so a kill lands at a chosen moment.

REPRO_TEST_KILL_AT=<point>[@N] kills the process the N-th time (default 1st) it passes a point
whose name matches <point> (fnmatch pattern). Points: `cell:start` (a cell's child run is open,
nothing written), `cell:done` (a cell's file is written, the next not begun), `write:<file name>`
(inside an atomic write: the temporary file is complete, not yet renamed), e.g.
`write:checkpoint.pt`, `write:*.json`. REPRO_TEST_KILL_SIGNAL=TERM sends SIGTERM instead (what
`timeout`, `docker stop` and SLURM send). REPRO_TEST_SLEEP_AT=<point>=<seconds> pauses at every
pass instead (a window for a test to act mid-run, e.g. to requeue a SLURM job). Unset (always,
outside tests) they cost two dict lookups.
"""
from __future__ import annotations

import fnmatch
import os
import signal
import time

ENV = "REPRO_TEST_KILL_AT"
SIGNAL_ENV = "REPRO_TEST_KILL_SIGNAL"
SLEEP_ENV = "REPRO_TEST_SLEEP_AT"
_passed: dict[str, int] = {}


def kill_point(name: str) -> None:
    pause = os.environ.get(SLEEP_ENV)
    if pause:
        pattern, _, seconds = pause.rpartition("=")
        if fnmatch.fnmatchcase(name, pattern):
            time.sleep(float(seconds))
    spec = os.environ.get(ENV)
    if not spec:
        return
    pattern, _, nth = spec.partition("@")
    if not fnmatch.fnmatchcase(name, pattern):
        return
    _passed[pattern] = _passed.get(pattern, 0) + 1
    if _passed[pattern] == (int(nth) if nth else 1):
        os.kill(os.getpid(), getattr(signal, "SIG" + os.environ.get(SIGNAL_ENV, "KILL")))
