"""The one way to open a run's MLflow tracking: `open_run` starts the invocation's parent run
(`repro run`, `repro run --jobs`, `repro sweep`); `attach_run` puts a worker process's child runs
under a parent run another process opened (cell workers, sweep workers). Both open the store
through repro.tracking.store.prepare_store, so that a fresh store's schema is made once."""
from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

import torch

from repro import results
from repro.atomic import atomic_write_text
from repro.engine.ranks import parallel_tags
from repro.specs import ResolvedSpec
from repro.tracking.runs import Run, Tracker, quiet_mlflow
from repro.tracking.store import prepare_store


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


def open_run(resolved: ResolvedSpec, dev: torch.device, *, name: str | None = None,
             tags: dict[str, Any] | None = None, params: dict[str, Any] | None = None,
             enabled: bool = True) -> Tracker:
    """The invocation's parent run (a context manager: FINISHED, FAILED or KILLED on exit) in the
    spec's experiment, tagged and parametrised with the resolved spec plus the caller's extras."""
    return Tracker(resolved.id, name or f"{resolved.id}-{resolved.profile}",
                   tags={**run_tags(resolved, dev), **(tags or {})},
                   params={**run_params(resolved), **(params or {})}, enabled=enabled)


def attach_run(resolved: ResolvedSpec, dev: torch.device, parent_run_id: str | None,
               tags: dict[str, Any]) -> Tracker:
    """A tracker whose child runs go under an existing parent run (another process opened it and
    ends it); tracking is off without a parent run id."""
    tracker = Tracker(resolved.id, "", tags={**run_tags(resolved, dev), **tags}, enabled=parent_run_id is not None)
    if tracker.enabled:
        quiet_mlflow()
        from mlflow.tracking import MlflowClient

        prepare_store()   # a fresh store's schema, made once under a lock (parallel workers)
        client = MlflowClient()
        tracker.parent = Run(client, parent_run_id, client.get_run(parent_run_id).info.experiment_id)
    return tracker


def write_run_meta(resolved: ResolvedSpec, work_dir: Path) -> None:
    """spec.json in the run's folder: the resolved spec (the report resolves it again from here)."""
    atomic_write_text(work_dir / "spec.json", json.dumps(
        {"hash": resolved.hash, "profile": resolved.profile, "overrides": resolved.overrides,
         "spec": resolved.spec.model_dump(mode="json", exclude={"profiles"})}, indent=2, default=str))
