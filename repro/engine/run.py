"""Runs every cell of a resolved spec's grid: skip finished cells, write each result atomically, track it.

The engine is the same for every kind of experiment; what a cell computes is the runner's. The
command resolves the spec and preflights it once (`check_spec`) and hands the ResolvedSpec to
`run_resolved`; `run_spec` does both for a caller that names a spec by id.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from repro import environment, results
from repro.atomic import remove_orphan_temporaries
from repro.engine.cells import run_one_cell
from repro.results import finished_record, record_run
from repro.engine.context import RunContext
from repro.engine.preflight import preflight
from repro.engine.ranks import agree, barrier, join, train_models_on_every_rank
from repro.engine.tracked import open_run, write_run_meta
from repro.environment import resolve_device
from repro.runlock import held, lock_file
from repro.experiments import resolve_spec, runner_module

from repro.specs import ResolvedSpec, cell_key
from repro.tracking.runs import close_dead_runs
from repro.train.distributed import is_main, launched_rank


@dataclass
class RunSummary:
    spec_id: str
    profile: str
    total: int
    ran: list[str]
    skipped: list[str]
    work_dir: Path
    mlflow_run_id: str | None
    seconds: float
    failed: list[str] = field(default_factory=list)  # cells whose runner reported a failure (e.g. diverged)
    tracking_away: str | None = None   # the MLflow store stopped answering mid-run (why)
    not_logged: list[str] = field(default_factory=list)   # cells written but not logged since then


def one_run(spec_id: str, profile: str, wait: bool = True, say: Callable[[str], None] | None = None):
    """The lock that one invocation running a spec at a profile holds (repro.runlock): a second one
    waits for it, or refuses with `wait=False`; under torchrun rank 0 alone takes it."""
    if launched_rank() != 0:
        return nullcontext()
    return held(lock_file(results.results_root(), spec_id, profile), f"{spec_id} [{profile}]", wait=wait,
                **({"say": say} if say else {}))


def check_spec(spec_id: str, profile: str = "smoke", overrides: dict[str, Any] | None = None) -> ResolvedSpec:
    """The spec resolved at a profile with its overrides and preflighted: what `run_resolved` takes."""
    resolved = resolve_spec(spec_id, profile, overrides)
    preflight(resolved)
    return resolved


def run_spec(spec_id: str, profile: str = "smoke", overrides: dict[str, Any] | None = None,
             device: str = "auto", force: bool = False, progress: bool = True,
             only: list[str] | None = None) -> RunSummary:
    """Resolve, preflight and run a spec named by id."""
    return run_resolved(check_spec(spec_id, profile, overrides), device=device, force=force, progress=progress,
                        only=only)


def run_resolved(resolved: ResolvedSpec, device: str = "auto", force: bool = False, progress: bool = True,
                 only: list[str] | None = None) -> RunSummary:
    """Run the cells of a resolved spec that preflight passed (finished cells are skipped)."""
    environment.apply_threads()   # --threads / $REPRO_THREADS / 2, before any work: same threads, same numbers
    spec_id, profile = resolved.id, resolved.profile
    dev = join(resolve_device(device))   # under torchrun: this rank's device in the process group
    module = runner_module(resolved.spec.kind)
    remove_orphan_temporaries(results.run_dir(spec_id, profile))   # a killed run's half-written files
    if is_main():
        results.set_aside_damaged(spec_id, profile)   # damaged stored files: named, moved aside, redone

    cells = resolved.cells()
    keys = [cell_key(c) for c in cells]
    if only is not None:
        wanted = set(only)
        cells, keys = [c for c, k in zip(cells, keys) if k in wanted], [k for k in keys if k in wanted]

    todo = agree([(c, k) for c, k in zip(cells, keys) if force or finished_record(resolved, k) is None])
    skipped = [k for k in keys if k not in {k2 for _, k2 in todo}]
    work_dir = results.run_dir(spec_id, profile)
    summary = RunSummary(spec_id, profile, len(cells), [], skipped, work_dir, None, 0.0)
    if not todo:
        close_dead_runs(spec_id)   # a run killed after its last cell: its MLflow run is KILLED, not RUNNING
        return summary

    t_start = time.perf_counter()
    ctx = RunContext(resolved=resolved, device=dev, progress=progress, force=force, work_dir=work_dir)
    with open_run(resolved, dev, enabled=is_main()) as tracker:
        ctx.tracker = tracker
        summary.mlflow_run_id = tracker.run_id
        if is_main():
            write_run_meta(resolved, work_dir)
        train_models_on_every_rank(ctx)   # under torchrun: no rank trains alone inside a cell
        state = module.prepare(ctx)
        prepare_seconds = time.perf_counter() - t_start
        with _progress(progress and is_main(), len(todo), f"{spec_id} [{profile}]") as advance:
            for cell, key in todo:
                record = run_one_cell(ctx, module, state, cell)
                (summary.failed if "failed" in record else summary.ran).append(key)
                advance()
        barrier()
        summary.tracking_away, summary.not_logged = tracker.away, list(tracker.not_logged)
    summary.seconds = time.perf_counter() - t_start
    if is_main():   # the run's measured wall time, for the report's cost line
        record_run(spec_id, profile, resolved.hash, str(dev), summary.seconds, prepare_seconds,
                   len(summary.ran), len(summary.failed))
    return summary


class _progress:
    """A rich progress bar over cells (silent when progress is off)."""

    def __init__(self, enabled: bool, total: int, label: str):
        self.enabled, self.total, self.label = enabled, total, label
        self._bar = None

    def __enter__(self):
        if not self.enabled:
            return lambda: None
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)

        self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                             TimeElapsedColumn(), TimeRemainingColumn(), transient=False)
        self._bar.__enter__()
        task = self._bar.add_task(f"cells of {self.label}", total=self.total)
        return lambda: self._bar.advance(task)

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.__exit__(*exc)
        return False
