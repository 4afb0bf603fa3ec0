"""`repro sweep`: run a sweep's trials, or print its status, or serve its dashboard."""
from __future__ import annotations

from typing import Callable

from repro.environment import apply_threads
from repro.errors import UserError
from repro.launchers.slurm import SlurmOptions
from repro.sweeps.dashboard import serve
from repro.sweeps.runner import SweepCrashed, run_sweep
from repro.sweeps.spec import resolve_sweep
from repro.sweeps.status import status_lines


def sweep_command(name: str, profile: str | None, *, workers: int, storage: str | None, n_trials: int | None,
                  study: str | None, refine: bool, status: bool, dashboard: bool, port: int, device: str,
                  threads: int | None, echo: Callable[..., None], launcher: str = "local",
                  array: dict | None = None) -> int:
    """The exit code: 1 when a trial crashed (finished trials are kept), else 0."""
    apply_threads(threads)   # with --workers N > 1 each worker process gets cores / N threads instead
    if status and dashboard:
        raise UserError("--status and --dashboard: give one of them (the status prints and exits; the "
                        "dashboard serves until Ctrl-C)")
    if status:
        for line in status_lines(name, profile, storage, study, refine):
            echo(line)
        return 0
    if dashboard:
        resolve_sweep(name, profile)
        serve(storage, port, echo=echo)
        return 0
    try:
        opts = SlurmOptions(workers=workers, cpus_per_task=threads, device=device, **(array or {}))
        if launcher != "local":
            opts.check(launcher)   # every option, before the study is opened or anything submitted
        s = run_sweep(name, profile, workers=workers, storage=storage, n_trials=n_trials, study=study,
                      refine=refine, device=device, echo=echo, launcher=launcher, array=opts)
    except SweepCrashed as e:
        echo(f"error: sweep {name}: {e}", err=True)
        return 1
    p = s.progress
    echo(f"{s.sweep} [{s.profile}]: study {s.study!r} in {s.storage}: {p['finished']}/{p['budget']} finished, "
         f"{p['remaining']} remaining, {p['failed']} failed")
    for b in s.best[:10]:
        vals = ", ".join(f"{m}={v:.4g}" for m, v in b["values"].items())
        echo(f"  {'best' if len(b['values']) == 1 else 'Pareto front'}: trial {b['number']} "
             f"({', '.join(f'{k}={v!r}' for k, v in b['params'].items())}): {vals}")
    if s.artifacts_dir is not None:
        mlf = f"; MLflow run {s.mlflow_run_id}" if s.mlflow_run_id else ""
        echo(f"  trials and best in {s.artifacts_dir}{mlf}")
    return 0
