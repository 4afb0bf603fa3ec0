"""`repro run`: resolve and preflight every named spec once, warn before a long run, run each
(serially, over torchrun's ranks, or cells over worker processes), print what happened."""
from __future__ import annotations

from typing import Any, Callable

from repro.commands.specs import spec_ids
from repro.engine.ranks import leave
from repro.engine.run import RunSummary, check_spec, one_run, run_resolved
from repro.environment import export_threads, resolve_device, threads_setting
from repro.errors import UserError
from repro.launchers.cells import run_spec_jobs
from repro.launchers.slurm import SlurmOptions, submit_spec
from repro.plan import run_guard
from repro.specs import parse_set
from repro.train.distributed import launched_rank


def run_command(spec_arg: str, profile: str, sets: list[str] | None, *, device: str, jobs: int | None,
                devices: str | None, force: bool, progress: bool, threads: int | None, yes: bool,
                max_hours: float | None, wait: bool = True, echo: Callable[..., None],
                launcher: str = "local", array: dict[str, Any] | None = None) -> None:
    export_threads(threads_setting(threads))   # the engine applies it before any work
    ids = spec_ids(spec_arg)
    overrides = parse_set(sets)
    opts = SlurmOptions(**(array or {}), cpus_per_task=threads, device=device)
    if launcher != "local":   # every option checked before anything is resolved, trained or submitted
        opts.check(launcher)
        if jobs is not None or devices is not None:
            raise UserError(f"--launcher {launcher} runs its cells in --workers array tasks; leave out --jobs/--devices")
    elif array and (array.get("workers", 1) != 1 or array.get("partition") or array.get("gpus_per_node")):
        raise UserError("--workers, --partition and --gpus-per-node go with --launcher slurm or submitit-local")
    else:
        resolve_device(device)
    resolved = [check_spec(i, profile, overrides) for i in ids]   # every spec checked before any runs
    run_guard(resolved, device if launcher == "local" else "auto", yes, echo, max_hours)   # a long run needs --yes

    try:
        for r in resolved:
            with one_run(r.id, r.profile, wait, lambda line: echo(line, err=True)):
                if launcher != "local":   # a job array through submitit (repro.launchers.slurm)
                    summary = submit_spec(r, launcher, opts, force=force, echo=echo)
                elif jobs is not None or devices is not None:   # cells over processes (repro.launchers.cells)
                    summary = run_spec_jobs(r, jobs=jobs, devices=devices, device=device, threads=threads,
                                            force=force, echo=echo)
                else:
                    summary = run_resolved(r, device=device, force=force, progress=progress)
            if launched_rank() == 0:   # under torchrun rank 0 speaks for all
                report_summary(summary, echo)
    finally:
        leave()   # under torchrun: every rank leaves the group before it exits


def report_summary(summary: RunSummary, echo: Callable[..., None]) -> None:
    i, profile = summary.spec_id, summary.profile
    done = f"{len(summary.ran)} run, {len(summary.skipped)} already finished"
    where = f"results in {summary.work_dir}"
    mlf = f"; MLflow run {summary.mlflow_run_id}" if summary.mlflow_run_id else ""
    echo(f"{i} [{profile}]: {summary.total} cells ({done}); {where}{mlf}")
    if summary.tracking_away:   # the cells are written; their MLflow runs are logged later from the files
        echo(f"{i} [{profile}]: MLflow store {summary.tracking_away}: {len(summary.not_logged)} cell(s) not "
             f"logged ({', '.join(summary.not_logged[:8])}{', ...' if len(summary.not_logged) > 8 else ''}); "
             f"`repro track {i} --profile {profile}` logs them from their files once it answers", err=True)
    if summary.failed:   # a runner's reported failure (e.g. a diverged training arm): kept out of results
        echo(f"{i} [{profile}]: {len(summary.failed)} cell(s) failed ({', '.join(summary.failed)}); "
             f"see {summary.work_dir / 'failed'}; a rerun tries them again", err=True)
