"""`repro run SPEC --launcher slurm`: the unfinished cells of a spec as a SLURM job array, through
submitit (the standard library for it; no scheduler of our own). `--launcher submitit-local` runs
the same path with submitit's local executor, the jobs as processes of this machine (where SLURM
cannot be had); `--launcher local` is this process (or `--jobs` / `--devices`).

The submitting process resolves and preflights the spec, opens the invocation's parent MLflow run
and submits `workers` array tasks. Each task is a cell worker of repro.launchers.cells (the one
`--jobs` starts): it claims the next unclaimed cell in the invocation's claim folder (on the shared
filesystem the cluster's nodes see), trains a missing model on demand (one trainer per model, the
others wait: repro.runlock) and writes each cell atomically, logging it as a child of the parent run.
A task that is preempted or reaches its time limit is requeued by submitit (the task is
`Checkpointable`): the requeued task takes back the cells it had claimed, skips the finished ones
and resumes a training from its last checkpoint, as a rerun of `repro run` would. The submitter
waits for the array and reports like `--jobs`; killed, the same command again submits the rest.
"""
from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import submitit
import torch

from repro import results
from repro.engine.run import RunSummary
from repro.engine.tracked import open_run, write_run_meta
from repro.environment import threads_setting
from repro.errors import UserError
from repro.launchers.cells import CLAIMS_PREFIX, CellWorkerArgs, CellWorkersFailed, pending_cells, tally, work
from repro.specs import ResolvedSpec
from repro.train.distributed import launched_by_torchrun

LAUNCHERS = ("local", "slurm", "submitit-local")
SUBMITIT = {"slurm": "slurm", "submitit-local": "local"}   # --launcher -> submitit's executor


@dataclass(frozen=True)
class SlurmOptions:
    """What the array asks the scheduler for; checked before anything is submitted (`check`)."""
    workers: int = 1                 # array tasks, each a cell worker
    partition: str | None = None     # SLURM partition (default: the cluster's)
    gpus_per_node: int = 0           # GPUs per task
    time_min: int = 60               # the time limit of a task, minutes (requeued when reached)
    cpus_per_task: int | None = None  # default: --threads, else 2
    device: str = "auto"             # resolved on the node: auto is cuda where the task got a GPU

    def check(self, launcher: str) -> None:
        if launcher not in LAUNCHERS:
            raise UserError(f"--launcher {launcher!r}: use one of {', '.join(LAUNCHERS)}")
        if self.workers < 1:
            raise UserError(f"--workers {self.workers}: must be at least 1")
        if self.time_min < 1:
            raise UserError(f"--time {self.time_min}: minutes, at least 1")
        if self.gpus_per_node < 0:
            raise UserError(f"--gpus-per-node {self.gpus_per_node}: must be 0 or more")
        if self.cpus_per_task is not None and self.cpus_per_task < 1:
            raise UserError(f"--threads {self.cpus_per_task}: must be at least 1")
        if self.partition is not None and not self.partition.strip():
            raise UserError("--partition: give a partition name")
        try:
            dev = torch.device("cuda" if self.device == "auto" else self.device)
        except RuntimeError:
            raise UserError(f"--device {self.device!r}: not a device; use auto, cpu, cuda or cuda:N") from None
        if dev.type == "cuda" and self.device != "auto" and self.gpus_per_node == 0:
            raise UserError(f"--device {self.device} asks for a GPU: give --gpus-per-node 1 or more")
        if launched_by_torchrun():
            raise UserError(f"--launcher {launcher} submits its own jobs; under torchrun leave it out")
        if launcher == "slurm" and shutil.which("sbatch") is None:
            raise UserError("--launcher slurm: sbatch is not on PATH (no SLURM client here); submit from a login "
                            "node, or use --launcher submitit-local to run the same jobs on this machine")


class CellTask(submitit.helpers.Checkpointable):
    """One array task: a cell worker. Requeued as it is (preemption, time limit): it takes back the
    cells it had claimed (its index owns their claim files) and finds the finished ones done."""

    def __init__(self, args: CellWorkerArgs):
        self.args = args

    def __call__(self) -> dict[str, list[str]]:
        os.environ["REPRO_THREADS"] = str(self.args.threads)   # what the worker sets, for what it starts
        return work(self.args)


def jobs_folder(spec_id: str, profile: str) -> Path:
    """submitit's pickles and the tasks' logs (outside the results DVC stores)."""
    return results.results_root() / ".jobs" / f"{spec_id}.{profile}"


def submit_spec(resolved: ResolvedSpec, launcher: str, opts: SlurmOptions, *, force: bool = False,
                echo: Callable[..., None] = print) -> RunSummary:
    """Run a preflighted spec's unfinished cells as a job array (`opts` checked by the command:
    SlurmOptions.check); returns the engine's RunSummary."""
    spec_id, profile = resolved.id, resolved.profile
    todo, summary = pending_cells(resolved, force)
    work_dir = summary.work_dir
    if not todo:
        return summary
    t0 = time.perf_counter()
    n = min(opts.workers, len(todo))
    threads = threads_setting(opts.cpus_per_task)
    work_dir.mkdir(parents=True, exist_ok=True)
    with open_run(resolved, torch.device("cpu"), tags={"repro.launcher": launcher, "repro.jobs": n,
                                                       "repro.device": opts.device, "repro.threads": threads}) as tracker:
        summary.mlflow_run_id = tracker.run_id
        write_run_meta(resolved, work_dir)
        claims = Path(tempfile.mkdtemp(prefix=f"{CLAIMS_PREFIX}{os.getpid()}-", dir=work_dir))
        try:
            tasks = [CellTask(CellWorkerArgs(spec_id, profile, resolved.overrides or {}, opts.device, todo, str(claims),
                                             i, threads, tracker.run_id, force,
                                             {"repro.jobs": n, "repro.launcher": launcher}))
                     for i in range(n)]
            _, errors = submit_tasks(tasks, launcher, opts, threads, jobs_folder(spec_id, profile),
                                     f"{spec_id} [{profile}]", echo)
        finally:
            shutil.rmtree(claims, ignore_errors=True)
        tally(resolved, todo, summary)
        if errors:
            raise CellWorkersFailed(f"{'; '.join(errors)}; finished cells are kept, run the same command again "
                                    f"to compute the rest")
    summary.seconds = time.perf_counter() - t0
    return summary


def submit_tasks(tasks: list[Any], launcher: str, opts: SlurmOptions, threads: int, folder: Path, label: str,
                 echo: Callable[..., None]) -> tuple[list[Any], list[str]]:
    """Submit picklable callables as one array (SLURM, or submitit's local executor) and wait for all
    of them: (their results, None for a failed one; one line per failed task). submitit's warnings on
    every status poll where SLURM keeps no accounting (no sacct) are silenced: outcomes are read from
    the tasks' result files and reported here."""
    logging.getLogger("submitit").setLevel(logging.ERROR)
    executor = submitit.AutoExecutor(folder=folder / "%j", cluster=SUBMITIT[launcher])
    params: dict[str, Any] = {"timeout_min": opts.time_min, "cpus_per_task": threads,
                              "name": f"repro-{label.split()[0]}", "slurm_array_parallelism": len(tasks)}
    if opts.gpus_per_node:
        params["gpus_per_node"] = opts.gpus_per_node
    if opts.partition:
        params["slurm_partition"] = opts.partition
    executor.update_parameters(**params)
    with executor.batch():
        jobs = [executor.submit(t) for t in tasks]
    echo(f"{label}: {len(jobs)} job(s) submitted ({launcher}, job {jobs[0].job_id.split('_')[0]}); logs in {folder}",
         err=True)
    failed = _wait(jobs, launcher)
    return [None if j.job_id in failed else j.result() for j in jobs], list(failed.values())


def _wait(jobs: list[Any], launcher: str) -> dict[str, str]:
    """Wait for every task (requeued ones included): {job id: the line saying how it failed, naming its
    log} of the tasks that failed. Ctrl-C or SIGTERM here cancel the array (finished work is kept)."""
    try:
        if launcher == "slurm":
            return _wait_slurm(jobs)
        return {j.job_id: e for j in jobs if (e := _outcome(j))}
    except KeyboardInterrupt:
        for j in jobs:
            j.cancel(check=False)
        raise


def _outcome(job: Any) -> str | None:
    """None when the task finished, else the line saying how it failed."""
    try:
        job.result()
        return None
    except Exception as e:  # noqa: BLE001 (submitit's FailedJobError, UncompletedJobError, ...)
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        return f"job {job.job_id} failed ({type(e).__name__}: {first}; log {job.paths.stderr})"


POLL_S = 2.0          # how often the queue is looked at
GONE_GRACE_S = 10.0   # a task out of the queue this long without its result file has died


def _wait_slurm(jobs: list[Any]) -> dict[str, str]:
    """submitit learns a task's end from `sacct`, which clusters without accounting lack (a task killed
    there is waited for forever): a task is done when its result file is there, and lost when it has
    left the queue (`squeue`) without one for GONE_GRACE_S. A requeued task stays in the queue."""
    pending, errors, gone_since = list(jobs), {}, {}
    while pending:
        queued = _in_queue([j.job_id for j in pending])
        for j in list(pending):
            if j.paths.result_pickle.exists():
                if (e := _outcome(j)) is not None:
                    errors[j.job_id] = e
                pending.remove(j)
            elif queued is not None and j.job_id not in queued:
                if time.monotonic() - gone_since.setdefault(j.job_id, time.monotonic()) > GONE_GRACE_S:
                    errors[j.job_id] = (f"job {j.job_id} failed (it left the queue without a result: cancelled, "
                                        f"killed or its node lost; log {j.paths.stderr})")
                    pending.remove(j)
            else:
                gone_since.pop(j.job_id, None)
        if pending:
            time.sleep(POLL_S)
    return errors


def _in_queue(job_ids: list[str]) -> set[str] | None:
    """The ids of these tasks still in SLURM's queue (pending, running, requeued); None when squeue
    cannot say (then only result files end the wait)."""
    ids = sorted({i.split("_")[0] for i in job_ids})
    try:
        p = subprocess.run(["squeue", "-h", "-r", "-o", "%i", "-j", ",".join(ids)], capture_output=True, text=True,
                           timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if p.returncode != 0:
        return set() if "Invalid job id" in p.stderr else None
    return set(p.stdout.split())
