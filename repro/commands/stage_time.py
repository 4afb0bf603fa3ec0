"""`python -m repro.commands.stage_time OUT.json -- CMD...`: run a DVC stage's command and record
its wall time in OUT (a metrics file). Its own module, with light imports: it starts once per stage."""
from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

from repro.atomic import atomic_write_text
from repro.environment import cpu_bf16_flags, cpu_model


def timed(out: str, cmd: list[str]) -> int:
    """Run a stage's command, then record its wall time in `out`. The CPU may be shared with other
    work: the figure is wall time on this machine at this moment; the CPU time (user + system of the
    command and its children) moves less with the load."""
    jobs = os.environ.get("REPRO_JOBS", "1")   # `make main JOBS=N`: a spec's cells in N processes
    if cmd[:2] == ["repro", "run"] and jobs.isdigit() and int(jobs) > 1:   # (the same results: not a param)
        cmd = [*cmd, "--jobs", jobs]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    rc = subprocess.call(cmd)
    seconds = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if rc == 0:
        atomic_write_text(Path(out), json.dumps({
            "wall_seconds": round(seconds, 2), "cpu_seconds": round(cpu, 2), "cpu_count": os.cpu_count(),
            "load_avg_1min_at_end": round(os.getloadavg()[0], 2), "host": platform.node(),
            "cpu_model": cpu_model(), "cpu_bf16": cpu_bf16_flags()}, indent=2) + "\n")
    return rc


if __name__ == "__main__":
    args = sys.argv[1:]
    if len(args) < 3 or args[1] != "--":
        sys.exit("usage: python -m repro.commands.stage_time OUT.json -- CMD [ARGS...]")
    sys.exit(timed(args[0], args[2:]))
