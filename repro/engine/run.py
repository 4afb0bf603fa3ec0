"""Runs every cell of a spec's grid: skip finished cells, write each result atomically, track it.

The engine is the same for every kind of experiment; what a cell computes is the runner's.
"""
from __future__ import annotations

import platform
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from repro import environment, results
from repro.atomic import atomic_write_text, remove_orphan_temporaries
from repro.errors import UserError
from repro.environment import resolve_device
from repro.experiments import runner_module
from repro.engine.ranks import (agree, barrier, follow_cell, is_main, join, parallel_tags,
                                  train_models_on_every_rank)
from repro.killpoints import kill_point
from repro.results import failed_cells_dir
from repro.rng import seed_for
from repro.specs import ResolvedSpec, cell_key
from repro.experiments import resolve_spec
from repro.tracking.runs import Tracker


@dataclass
class RunContext:
    resolved: ResolvedSpec
    device: torch.device
    progress: bool = True
    force: bool = False
    work_dir: Path = field(default_factory=Path)
    tracker: Tracker | None = None

    @property
    def spec(self):
        return self.resolved.spec

    @property
    def profile(self) -> str:
        return self.resolved.profile

    def generator(self, *salt: Any) -> torch.Generator:
        g = torch.Generator(device="cpu")
        g.manual_seed(seed_for(self.spec.seed, *salt))
        return g

    def shard(self, n: int) -> list[int]:
        """This process's units of a cell's n work units: all of them, or its rank's share under torchrun."""
        from repro.engine.ranks import shard_indices

        return shard_indices(n)

    def gather(self, local: dict[int, Any], n: int | None = None) -> list[Any] | None:
        """{unit: payload} of every rank -> all payloads in unit order on rank 0, None on the others."""
        from repro.engine.ranks import gather_units

        return gather_units(local, n)

    def model(self, role: str, overrides: dict[str, Any] | None = None):
        """The trained model the spec names for `role`, trained now if it does not exist yet."""
        from repro.trainers.ensure import ensure_model

        if role not in self.spec.models:
            raise UserError(f"spec {self.spec.id} names no model for role {role!r}")
        name, merged, inject = self.resolved.model_args(role, overrides)
        return ensure_model(name, self.profile, overrides=merged, inject=inject, device=self.device,
                            progress=self.progress)

    def artifacts_dir(self, key: str) -> Path:
        d = self.work_dir / "artifacts" / key
        d.mkdir(parents=True, exist_ok=True)
        return d


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


def preflight(resolved: ResolvedSpec) -> None:
    """Check every input a run needs before anything is written (datasets, model configs and
    the checkpoints they name, the FID weights)."""
    from repro.data import load_dataset
    from repro.trainers import kind_module

    from repro.engine.problems import Problems

    problems = Problems()   # every missing dataset / checkpoint / weights file, named in one line
    ds = resolved.spec.dataset
    with problems.check():
        load_dataset(ds.name, split=ds.split, resolution=ds.resolution, root=ds.root, n=1, seed=ds.seed)
    for role in resolved.spec.models:
        with problems.check():
            model = resolved.model(role)
            mds = model.config.dataset
            with problems.check():   # a missing dataset does not hide a missing checkpoint
                load_dataset(mds.name, split=mds.split, resolution=mds.resolution, root=mds.root, n=1, seed=mds.seed)
            module = kind_module(model.config.kind)
            if hasattr(module, "validate"):
                module.validate(model)
    if "fid" in resolved.spec.metrics:   # checked now: hours of training are no use without them
        from repro.metrics.frechet import require_more_samples_than_dims
        from repro.metrics.inception import FID_FEATURE_DIM, require_inception_weights

        with problems.check():
            require_inception_weights(resolved.spec.fixed.get("fid_weights"))
        # A spec may mirror a published rank-deficient protocol (thesis Tab. 5.3: FID on 100
        # samples) only by saying so (fixed.allow_rank_deficient); its report labels the value.
        sizes = () if resolved.spec.fixed.get("allow_rank_deficient") else ("n_samples", "n_ref", "n_reference")
        for key in sizes:   # the runners' names for the two sets' sizes
            n = resolved.spec.fixed.get(key)
            if isinstance(n, int):
                with problems.check():
                    require_more_samples_than_dims(n, FID_FEATURE_DIM, f"Inception pool3 features (fid; fixed.{key})")
    from repro.trainers.weights import validate_spec_files

    validate_spec_files(resolved, problems)   # every weights file opened, checked against its network's keys/shapes
    problems.raise_if_any()
    check_outputs_writable(resolved)


def check_outputs_writable(resolved: ResolvedSpec) -> None:
    """The results folder, and the artifacts folder when a model must still be trained, take files now
    (not a file, not read-only, not full): otherwise one line before any MLflow run or result."""
    from repro.atomic import check_writable
    from repro.models import artifact_dir, artifacts_root

    check_writable(results.results_root(), "the results folder ($REPRO_RESULTS)")
    if any(not (artifact_dir(resolved.model(role)) / "meta.json").exists() for role in resolved.spec.models):
        check_writable(artifacts_root(), "the artifacts folder ($REPRO_ARTIFACTS)")


def finished_record(resolved: ResolvedSpec, key: str) -> dict[str, Any] | None:
    """The cell's results file when it was computed with this resolved spec (same hash), else None."""
    rec = results.read_cell(resolved.id, resolved.profile, key)
    return rec if rec is not None and rec.get("spec_hash") == resolved.hash else None


def run_tags(resolved: ResolvedSpec, dev: torch.device) -> dict[str, str]:
    """The tags of a run's parent MLflow run (and, through the tracker, of its child runs)."""
    spec = resolved.spec
    return {"repro.spec": spec.id, "repro.kind": spec.kind, "repro.profile": resolved.profile,
            "repro.spec_hash": resolved.hash, "repro.git_commit": results.git_commit(),
            "repro.device": str(dev), "repro.dataset": spec.dataset.name,
            "repro.host": platform.node(), **parallel_tags()}


def run_params(resolved: ResolvedSpec) -> dict[str, Any]:
    """The resolved spec as the parent run's params."""
    return {"profile": resolved.profile,
            **resolved.spec.model_dump(mode="json", exclude={"paper", "profiles", "title", "description", "source"})}


def write_run_meta(resolved: ResolvedSpec, work_dir: Path) -> None:
    atomic_write_text(work_dir / "spec.json", _resolved_json(resolved))


class _CellFailed(Exception):
    """Raised inside a cell's child run so that MLflow marks it FAILED; caught by run_one_cell."""


def _record_failure(ctx: RunContext, run: Any, cell: dict[str, Any], key: str, failure: dict[str, Any],
                    seconds: float) -> dict[str, Any]:
    """A runner may return {"failed": {"reason": ..., ...}} for a cell that ran but produced nothing to
    report (thesis Sec. 5.3.1: a mixed-precision run whose loss became NaN "had to be discarded"): the
    record goes to failed/ (so it is no finished cell: a rerun tries it again, a report never shows
    its numbers), its MLflow child run is tagged with the failure and marked FAILED."""
    import json

    resolved, spec = ctx.resolved, ctx.spec
    record = {"spec": spec.id, "profile": resolved.profile, "key": key, "cell": cell, "failed": failure,
              "seconds": seconds, "spec_hash": resolved.hash, "git_commit": results.git_commit(),
              "device": str(ctx.device), "mlflow_run_id": run.run_id, "environment": environment.record(),
              "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    path = failed_cells_dir(spec.id, resolved.profile) / f"{key}.json"
    atomic_write_text(path, json.dumps(record, indent=2, sort_keys=True, default=results._json_default))
    run.set_tags({"repro.status": "failed", **{f"repro.failure.{k}": v for k, v in failure.items()
                                               if isinstance(v, (str, int, float, bool)) or v is None}})
    run.log_metrics({f"failure_{k}": v for k, v in failure.items() if isinstance(v, (int, float))})
    run.log_artifact(path)
    return record


def run_one_cell(ctx: RunContext, module: Any, state: Any, cell: dict[str, Any],
                 tags: dict[str, Any] | None = None) -> dict[str, Any]:
    """Compute one cell with the runner, write its results file atomically, track it as a child
    run of `ctx.tracker`; returns the record written. `repro run` and every sweep trial use this.
    A cell the runner reports as failed returns its failure record (with a "failed" entry)."""
    resolved, spec, key = ctx.resolved, ctx.spec, cell_key(cell)
    if not is_main():   # under torchrun: this rank's share of the cell; rank 0 writes and tracks
        return follow_cell(ctx, module, state, cell)
    failed_record = None
    try:
        with ctx.tracker.child(key, params={"cell": cell}, tags={"repro.cell": key, **(tags or {})}) as run:
            kill_point("cell:start")   # test hook (repro.killpoints): a kill inside a cell
            t0 = time.perf_counter()
            out = module.run_cell(ctx, state, cell, run)
            seconds = time.perf_counter() - t0
            if out.get("failed"):
                failed_record = _record_failure(ctx, run, cell, key, out["failed"], seconds)
                raise _CellFailed(key)
            record = _finish_cell(ctx, run, cell, key, out, seconds)
    except _CellFailed:
        return failed_record
    stale = failed_cells_dir(spec.id, resolved.profile) / f"{key}.json"
    stale.unlink(missing_ok=True)  # an earlier failure of this cell is superseded
    kill_point("cell:done")   # test hook: a kill between cells
    return record


def _finish_cell(ctx: RunContext, run: Any, cell: dict[str, Any], key: str, out: dict[str, Any],
                 seconds: float) -> dict[str, Any]:
    """Write a finished cell's results file and log it to its child run."""
    resolved, spec = ctx.resolved, ctx.spec
    record = {
        "spec": spec.id, "profile": resolved.profile, "key": key, "cell": cell,
        "values": out.get("values", {}), "extra": out.get("extra", {}),
        "seconds": seconds, "seed": seed_for(spec.seed, key),
        "spec_hash": resolved.hash, "git_commit": results.git_commit(),
        "device": str(ctx.device), "mlflow_run_id": run.run_id,
        "environment": environment.record(),   # versions, threads, torch's BLAS/CPU kernels
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    path = results.write_cell(spec.id, resolved.profile, key, record)
    run.log_metrics({**out.get("values", {}), "seconds": seconds})
    run.log_artifact(path)
    for art in out.get("artifacts", []):
        run.log_artifact(art)
    return record


def run_spec(spec_id: str, profile: str = "smoke", overrides: dict[str, Any] | None = None,
             device: str = "auto", force: bool = False, progress: bool = True,
             only: list[str] | None = None) -> RunSummary:
    environment.apply_threads()   # --threads / $REPRO_THREADS / 2, before any work: same threads, same numbers
    resolved = resolve_spec(spec_id, profile, overrides)
    dev = join(resolve_device(device))   # under torchrun: this rank's device in the process group
    module = runner_module(resolved.spec.kind)
    preflight(resolved)
    remove_orphan_temporaries(results.run_dir(spec_id, profile))   # a killed run's half-written files

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
        from repro.tracking.runs import close_dead_runs

        close_dead_runs(spec_id)   # a run killed after its last cell: its MLflow run is KILLED, not RUNNING
        return summary

    t_start = time.perf_counter()
    ctx = RunContext(resolved=resolved, device=dev, progress=progress, force=force, work_dir=work_dir)
    with Tracker(spec_id, f"{spec_id}-{profile}", tags=run_tags(resolved, dev), params=run_params(resolved),
                 enabled=is_main()) as tracker:
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
    summary.seconds = time.perf_counter() - t_start
    if is_main():   # the run's measured wall time, for the report's cost line (repro.results)
        from repro.results import record_run

        record_run(spec_id, profile, resolved.hash, str(dev), summary.seconds, prepare_seconds,
                   len(summary.ran), len(summary.failed))
    return summary


def _resolved_json(resolved: ResolvedSpec) -> str:
    import json

    return json.dumps({"hash": resolved.hash, "profile": resolved.profile, "overrides": resolved.overrides,
                       "spec": resolved.spec.model_dump(mode="json", exclude={"profiles"})},
                      indent=2, default=str)


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
