"""One `repro sweep NAME` invocation: check everything, open the study, run the workers, record.

Order matters for "nothing partial": the sweep spec, its base spec, the datasets and model configs
are checked before the storage is opened, and the storage and the study's identity before any
MLflow run or file is written. Models are trained (once) before several workers start, so that
they do not each train the same model.
"""
from __future__ import annotations

import os
import sys
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import submitit
import torch

from repro.atomic import remove_orphan_temporaries
from repro.results import finished_record
from repro.engine.models import train_missing_models
from repro.engine.preflight import preflight
from repro.engine.tracked import open_run
from repro.environment import resolve_device, threads_setting
from repro.errors import UserError
from repro.hashing import stable_hash
from repro.launchers.processes import launch, worker_env
from repro.launchers.slurm import SlurmOptions, jobs_folder, submit_tasks
from repro.results import run_dir
from repro.specs import cell_key
from repro.sweeps import queue
from repro.sweeps.refine import refine_space, refine_study_name
from repro.sweeps.samplers import make_sampler
from repro.sweeps.spec import ResolvedSweep, resolve_sweep
from repro.sweeps.studies import best_trials, study_dir, write_artifacts
from repro.sweeps.storage import check_identity, find_study, open_study, open_storage
from repro.sweeps.trial import TrialFailed
from repro.sweeps.worker import WorkerArgs, work
from repro.tracking.runs import close_dead_runs


class SweepCrashed(Exception):
    """A worker's trial raised, or a worker died; finished trials are kept, the next run retries."""


@dataclass
class SweepSummary:
    sweep: str
    profile: str
    study: str
    storage: str
    stage: str
    progress: dict[str, Any]
    best: list[dict[str, Any]]
    counts: dict[str, int] = field(default_factory=dict)
    artifacts_dir: Path | None = None
    mlflow_run_id: str | None = None
    seconds: float = 0.0


def plan(name: str, profile: str | None, storage: str | None, study: str | None, refine: bool):
    """Validate and open: (resolved sweep, storage, study name, stage, space, identity)."""
    rs = resolve_sweep(name, profile)
    if refine and rs.sweep.refine is None:
        raise UserError(f"sweep {name} has no refine stage (add `refine:` to experiments/sweeps/{name}.yaml)")
    preflight(rs.base)
    st = open_storage(storage)
    main_name = study or rs.default_study()
    if not refine:
        return rs, st, main_name, "main", rs.space, rs.identity("main")
    main = find_study(st, main_name)
    if main is None:
        raise UserError(f"sweep {name}: no grid study {main_name!r} in {st.label} to refine; run "
                        f"`repro sweep {name} --profile {rs.profile}` first")
    check_identity(main, main_name, rs.identity("main"), st.label)
    space = refine_space(rs, main)
    identity = rs.identity("refine")
    identity["repro.definition"] = stable_hash([identity["repro.definition"],
                                                {n: p.model_dump(mode="json") for n, p in space.items()}])
    return rs, st, refine_study_name(main_name), "refine", space, identity


def run_sweep(name: str, profile: str | None = None, *, workers: int = 1, storage: str | None = None,
              n_trials: int | None = None, study: str | None = None, refine: bool = False,
              device: str = "auto", echo: Callable[[str], None] = print, launcher: str = "local",
              array: SlurmOptions | None = None) -> SweepSummary:
    """`launcher` slurm / submitit-local: the workers are the tasks of a job array (on the study's
    RDB storage, which the nodes reach), each training a missing model on demand under its lock;
    `array` is checked by the command (SlurmOptions.check)."""
    if workers < 1:
        raise UserError(f"--workers {workers}: must be at least 1")
    if n_trials is not None and n_trials < 1:
        raise UserError(f"--n-trials {n_trials}: must be at least 1")
    dev = resolve_device(device) if launcher == "local" else torch.device("cpu")   # a task resolves its own
    rs, st, study_name, stage, space, identity = plan(name, profile, storage, study, refine)
    for folder in (run_dir(rs.base.id, rs.profile), study_dir(study_name)):   # a killed sweep's leftovers
        remove_orphan_temporaries(folder)
    kind = rs.sweep.sampler if stage == "main" else rs.sweep.refine.sampler
    budget = rs.budget() if stage == "main" else rs.sweep.refine.n_trials
    t0 = time.perf_counter()
    the_study = open_study(st, study_name, identity, rs.directions,
                           make_sampler(kind, space, budget, rs.sweep.seed, len(rs.metrics)))
    points = rs.grid_points() if stage == "main" and kind == "grid" else None
    invocation = uuid.uuid4().hex[:12]
    queue.sync(st, the_study, points, invocation)
    before = queue.progress(st, the_study, points, budget)
    summary = SweepSummary(rs.id, rs.profile, study_name, st.label, stage, before, [])
    if not before["remaining"]:
        close_dead_runs(rs.base.id)   # an invocation killed after its last trial: its parent run is KILLED
        summary.best = best_trials(the_study, rs)
        summary.artifacts_dir = write_artifacts(the_study, rs, study_name, stage)
        return summary
    if workers > 1 and launcher == "local" and _anything_to_compute(rs, points, before):
        train_missing_models(rs.base, dev)   # once, here: the workers only load them
    tags = {"repro.sweep": rs.id, "repro.study": study_name, "repro.stage": stage,
            "repro.storage": st.label, "repro.workers": workers}
    params = {"sweep": {"id": rs.id, "stage": stage, "sampler": kind, "budget": budget,
                        "objectives": [o.model_dump() for o in rs.sweep.objectives],
                        "space": {n: p.model_dump(mode="json") for n, p in space.items()}}}
    with open_run(rs.base, dev, name=f"sweep-{rs.id}-{rs.profile}" + ("-refine" if stage == "refine" else ""),
                  tags=tags, params=params) as tracker:
        summary.mlflow_run_id = tracker.run_id
        shares = _shares(n_trials, workers)
        base_args = dict(sweep=rs.id, profile=rs.profile, study=study_name, stage=stage,
                         space={n: p.model_dump(mode="json") for n, p in space.items()},
                         storage=st.url, invocation=invocation, parent_run_id=tracker.run_id, device=device)
        threads = None if workers == 1 else max(1, (os.cpu_count() or 1) // workers)
        args = [WorkerArgs(**base_args, index=i, cap=shares[i], threads=threads) for i in range(workers)]
        summary.counts = (_run_workers(args, rs, echo) if launcher == "local" else
                          _submit_workers(args, rs, launcher, array or SlurmOptions(workers=workers), echo))
        summary.progress = queue.progress(st, the_study, points, budget)
        summary.best = best_trials(the_study, rs)
        summary.artifacts_dir = write_artifacts(the_study, rs, study_name, stage)
        if tracker.parent is not None:
            for path in sorted(summary.artifacts_dir.glob("*")):
                tracker.parent.log_artifact(path, "sweep")
    summary.seconds = time.perf_counter() - t0
    return summary


def _shares(n_trials: int | None, workers: int) -> list[int | None]:
    if n_trials is None:
        return [None] * workers
    return [n_trials // workers + (1 if i < n_trials % workers else 0) for i in range(workers)]


def _anything_to_compute(rs: ResolvedSweep, points, progress: dict[str, Any]) -> bool:
    if points is None:
        return True
    keys = set(progress["remaining_keys"])
    return any(finished_record(rs.base, cell_key(p)) is None for p in points if cell_key(p) in keys)


class SweepTask(submitit.helpers.Checkpointable):
    """One array task: a sweep worker (requeued as it is; a trial it left running is failed by the
    study's heartbeat and run again)."""

    def __init__(self, args: WorkerArgs):
        self.args = args

    def __call__(self) -> dict[str, Any]:
        return work(self.args)


def _submit_workers(args: list, rs: ResolvedSweep, launcher: str, opts: SlurmOptions, echo) -> dict[str, int]:
    """The workers as a job array (repro.launchers.slurm); waits for all of them."""
    threads = threads_setting(opts.cpus_per_task)
    for a in args:
        a.threads = threads
    done, errors = submit_tasks([SweepTask(a) for a in args], launcher, opts, threads,
                                jobs_folder(rs.base.id, rs.profile), f"sweep {rs.id} [{rs.profile}]", echo)
    if errors:
        raise SweepCrashed(f"{'; '.join(errors)}; finished trials are kept, run the same command again to retry the rest")
    counts: dict[str, int] = {}
    for d in done:
        for k, v in (d or {}).items():
            if isinstance(v, int):
                counts[k] = counts.get(k, 0) + v
    return counts


def _run_workers(args: list, rs: ResolvedSweep, echo) -> dict[str, int]:
    """Worker 0 runs in this process, which is set up already, so it starts at once; the others
    are processes of their own (`python -m repro.sweeps.worker`), started by the suite's one
    launcher (repro.launchers.processes, as `repro run --jobs` cells are). Waits for all of them."""
    launched = launch("repro.sweeps.worker", [a.to_json() for a in args[1:]],
                      in_process=lambda: work(args[0], echo=echo, rs=rs), envs=[worker_env() for _ in args[1:]])
    failures = []
    if launched.error is not None:
        if not isinstance(launched.error, TrialFailed):
            raise launched.error
        traceback.print_exception(launched.error.__cause__, file=sys.stderr)
        failures.append(f"worker 0: {launched.error}")
    failures += [f"worker {a.index} exited {c}" for a, c in zip(args[1:], launched.codes) if c != 0]
    if failures:
        raise SweepCrashed(f"{'; '.join(failures)}; finished trials are kept, run the same command again to "
                           f"retry the rest")
    return launched.result or {}
