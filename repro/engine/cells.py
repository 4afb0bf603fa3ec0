"""One cell: computed by the kind's runner, written atomically, tracked as a child MLflow run.

`repro run`, the parallel cell workers (repro.launchers.cells) and every sweep trial
(repro.sweeps.trial) run a cell with `run_one_cell`; a cell whose results file holds this
resolved spec's result (`finished_record`) is not computed again.
"""
from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from typing import Any

from repro import environment, results
from repro.atomic import atomic_write_text
from repro.engine.context import RunContext
from repro.engine.ranks import follow_cell
from repro.killpoints import kill_point
from repro.results import failed_cells_dir
from repro.rng import seed_for
from repro.specs import cell_key
from repro.train.distributed import is_main

class _CellFailed(Exception):
    """Raised inside a cell's child run so that MLflow marks it FAILED; caught by run_one_cell."""


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


def _record_failure(ctx: RunContext, run: Any, cell: dict[str, Any], key: str, failure: dict[str, Any],
                    seconds: float) -> dict[str, Any]:
    """A runner may return {"failed": {"reason": ..., ...}} for a cell that ran but produced nothing to
    report (thesis Sec. 5.3.1: a mixed-precision run whose loss became NaN "had to be discarded"): the
    record goes to failed/ (so it is no finished cell: a rerun tries it again, a report never shows
    its numbers), its MLflow child run is tagged with the failure and marked FAILED."""
    resolved, spec = ctx.resolved, ctx.spec
    record = {"spec": spec.id, "profile": resolved.profile, "key": key, "cell": cell, "failed": failure,
              "seconds": seconds, "spec_hash": resolved.hash, "git_commit": results.git_commit(),
              "device": str(ctx.device), "mlflow_run_id": run.run_id, "environment": environment.record(),
              "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    path = failed_cells_dir(spec.id, resolved.profile) / f"{key}.json"
    atomic_write_text(path, json.dumps(record, indent=2, sort_keys=True, default=results.json_default))
    run.set_tags({"repro.status": "failed", **{f"repro.failure.{k}": v for k, v in failure.items()
                                               if isinstance(v, (str, int, float, bool)) or v is None}})
    run.log_metrics({f"failure_{k}": v for k, v in failure.items() if isinstance(v, (int, float))})
    run.log_artifact(path)
    return record
