"""The one way the suite starts worker processes: `python -m MODULE PAYLOAD` per worker, one of
them optionally run in this process, all waited for; Ctrl-C reaches every worker.

Used by `repro run --jobs/--devices` (repro.launchers.cells) and `repro sweep --workers`
(repro.sweeps.runner). A worker that runs here starts at once (this process has its imports,
data and models loaded already); the others are fresh interpreters, so nothing a parent holds
(CUDA contexts, open stores) is forked into them.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any, Callable

INTERRUPT_GRACE_S = 30.0


@dataclass
class Launched:
    result: Any = None                  # what the in-process worker returned
    error: BaseException | None = None  # what it raised (an Exception; KeyboardInterrupt propagates)
    codes: list[int] = field(default_factory=list)   # exit codes of the worker processes, in order


def worker_env(threads: int | None = None, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a worker process: unbuffered output, passive OpenMP waits (shared cores),
    and, when given, an OpenMP/MKL thread count (set before torch starts its pools)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = env["REPRO_THREADS"] = str(threads)
    return {**env, **(extra or {})}


def launch(module: str, payloads: list[str], in_process: Callable[[], Any] | None = None,
           envs: list[dict[str, str]] | None = None) -> Launched:
    """Start `python -m module payload` for each payload, run `in_process` here meanwhile, wait for
    all. An exception of the in-process worker is returned (after the others finished), not raised,
    so that the caller reports every worker's outcome together."""
    envs = envs or [worker_env() for _ in payloads]
    procs = [subprocess.Popen([sys.executable, "-m", module, p], env=e) for p, e in zip(payloads, envs)]
    out = Launched()
    try:
        if in_process is not None:
            try:
                out.result = in_process()
            except Exception as e:   # noqa: BLE001 (reported with the other workers' exit codes)
                out.error = e
        out.codes = [p.wait() for p in procs]
    except KeyboardInterrupt:
        stop(procs)
        raise
    return out


def stop(procs: list[subprocess.Popen]) -> None:
    """SIGINT to every running worker (each marks its runs KILLED and exits), then kill stragglers."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
    for p in procs:
        try:
            p.wait(timeout=INTERRUPT_GRACE_S)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
