"""Runs one arm (or the batch search) of the mixed-precision benchmark in a fresh process.

`python -m repro.experiments.amp.worker JOB.json OUT.json`: reads the job, writes the result.
A fresh process per arm makes its peak memory (CPU peak RSS, the CUDA context and caches that
NVML sees) that arm's alone. Exit 2 with one line on stderr for a user error.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from repro.atomic import atomic_write_text
from repro.errors import UserError
from repro.experiments.amp.arm import check_job, find_batch, run_arm


def main(argv: list[str]) -> int:
    job = json.loads(Path(argv[0]).read_text())
    if job.get("threads"):
        torch.set_num_threads(int(job["threads"]))
    try:
        check_job(job)
        out = find_batch(job) if job.get("mode") == "find_batch" else run_arm(job)
    except UserError as e:
        print(str(e), file=sys.stderr)
        return 2
    atomic_write_text(Path(argv[1]), json.dumps(out, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
