"""MLflow tracking: one experiment per spec, a parent run per invocation, a child run per cell.

The store is MLflow's own default (a SQLite file `mlflow.db` in the working directory for
MLflow 3) unless MLFLOW_TRACKING_URI points elsewhere (e.g. a shared server). A crash inside
a run marks it FAILED, Ctrl-C marks it KILLED; finished child runs keep their status.
"""
from __future__ import annotations

import logging
import os
import platform
import time
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

from repro.environment import tags as environment_tags
from repro.liveness import is_dead_here, this_process
from repro.tracking.store import prepare_store
from repro.tracking.view import child_run_name, experiment_tags, experiment_url, report_line

MAX_PARAM_LEN = 500
T = TypeVar("T")
UNREACHABLE = ("Max retries exceeded", "Connection refused", "Failed to establish a new connection",
               "Read timed out", "Connection aborted", "RemoteDisconnected")


def unreachable(e: BaseException) -> bool:
    """Whether an MLflow call failed because its server could not be reached (a refused request, a
    bad parameter, is not that): MLflow wraps the requests error in an MlflowException's message."""
    import requests

    seen: BaseException | None = e
    while seen is not None:
        if isinstance(seen, (requests.exceptions.ConnectionError, requests.exceptions.Timeout, ConnectionError,
                             TimeoutError)):
            return True
        seen = seen.__cause__ or seen.__context__
    return any(s in str(e) for s in UNREACHABLE)


def quiet_mlflow() -> None:
    # MLflow logs schema migrations and experiment creation at INFO; users see our output instead.
    import mlflow  # noqa: F401  (configures its loggers on import; override after)

    for name in ("mlflow", "alembic", "mlflow.store.db.utils"):
        logging.getLogger(name).setLevel(logging.WARNING)


def flatten(d: Any, prefix: str = "") -> dict[str, str]:
    """Nested dict/list -> {"a.b.0": "value"} with string values, for MLflow params."""
    out: dict[str, str] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(flatten(v, f"{prefix}{k}."))
    elif isinstance(d, (list, tuple)) and len(d) <= 16 and all(isinstance(x, (dict, list)) for x in d):
        for i, v in enumerate(d):
            out.update(flatten(v, f"{prefix}{i}."))
    else:
        s = str(d)
        out[prefix[:-1]] = s if len(s) <= MAX_PARAM_LEN else s[: MAX_PARAM_LEN - 3] + "..."
    return out


def tracking_uri() -> str:
    import mlflow

    return mlflow.get_tracking_uri()


class Run:
    """A thin handle on one MLflow run (parent or child). With a `guard` (Tracker.guard), a call the
    server does not answer is noted and skipped instead of raised."""

    def __init__(self, client: Any, run_id: str, experiment_id: str,
                 guard: Callable[[Callable[[], Any]], Any] | None = None):
        self.client = client
        self.run_id = run_id
        self.experiment_id = experiment_id
        self._guard = guard or (lambda call: call())

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, v) for k, v in flatten(params).items()]
        for i in range(0, len(items), 100):
            self._guard(lambda: self.client.log_batch(self.run_id, params=items[i: i + 100]))

    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step or 0) for k, v in metrics.items()
                 if isinstance(v, (int, float)) and not isinstance(v, bool)]
        for i in range(0, len(items), 500):
            self._guard(lambda: self.client.log_batch(self.run_id, metrics=items[i: i + 500]))

    def set_tags(self, tags: dict[str, Any]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(k, str(v)) for k, v in tags.items()]
        if items:
            self._guard(lambda: self.client.log_batch(self.run_id, tags=items))

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self._guard(lambda: self.client.log_artifact(self.run_id, str(path), artifact_path))

    def end(self, status: str = "FINISHED") -> None:
        self._guard(lambda: self.client.set_terminated(self.run_id, status=status))


class Tracker:
    """Context manager for one invocation: the parent run, with child runs for its cells."""

    def __init__(self, experiment: str, run_name: str, tags: dict[str, Any] | None = None,
                 params: dict[str, Any] | None = None, enabled: bool = True):
        self.experiment = experiment
        self.run_name = run_name
        self.tags = {**(tags or {}), **this_process()}   # pid/host: a later run can tell this one died
        self.params = params or {}
        self.enabled = enabled and os.environ.get("REPRO_NO_MLFLOW") != "1"
        self.parent: Run | None = None
        self.away: str | None = None          # why the store stopped answering mid-run (None: it did not)
        self.not_logged: list[str] = []       # child runs (cells) not logged whole since then

    def guard(self, call: Callable[[], T]) -> T | None:
        """`call()`, unless the store has stopped answering: then nothing is sent (no minutes of retries
        per call) and None returned. The results files stay the record; `repro track` logs what is
        missing once the store answers again. An error of another kind is raised as before."""
        if self.away is not None:
            return None
        try:
            return call()
        except Exception as e:  # noqa: BLE001 (sorted below: only an unreachable store is absorbed)
            if not unreachable(e):
                raise
            self.away = f"{tracking_uri()} stopped answering ({type(e).__name__})"
            return None

    def __enter__(self) -> "Tracker":
        if not self.enabled:
            return self
        quiet_mlflow()
        from mlflow.tracking import MlflowClient

        # repro.env.*: torch/numpy/metric package versions, threads, BLAS (children inherit them)
        self.tags = {**environment_tags(), **self.tags}
        prepare_store()   # a fresh store's schema is created once, under a lock (parallel ranks/workers)
        client = MlflowClient()
        exp = client.get_experiment_by_name(self.experiment)
        exp_id = exp.experiment_id if exp is not None else client.create_experiment(self.experiment)
        describe_experiment(client, exp_id, self.experiment)   # opens on its runs; says what it reproduces
        mark_dead_runs_killed(client, exp_id)
        run = client.create_run(exp_id, run_name=self.run_name,
                                tags={k: str(v) for k, v in self.tags.items()})
        self.parent = Run(client, run.info.run_id, exp_id, self.guard)
        if self.params:
            self.parent.log_params(self.params)
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if self.parent is not None:
            if exc_type is None:
                self.parent.end("FINISHED")
            elif issubclass(exc_type, KeyboardInterrupt):
                self.parent.end("KILLED")
            else:
                self.parent.set_tags({"error": f"{exc_type.__name__}: {exc}"[:4000]})
                self.parent.end("FAILED")
        return False

    def child(self, name: str, params: dict[str, Any] | None = None,
              tags: dict[str, Any] | None = None) -> "ChildRunContext":
        return ChildRunContext(self, name, params or {}, tags or {})

    @property
    def run_id(self) -> str | None:
        return self.parent.run_id if self.parent else None


class NullRun:
    """Stands in for a run when tracking is off, so runners need no `if tracker` checks."""

    run_id = None

    def log_params(self, *a: Any, **k: Any) -> None: ...
    def log_metrics(self, *a: Any, **k: Any) -> None: ...
    def set_tags(self, *a: Any, **k: Any) -> None: ...
    def log_artifact(self, *a: Any, **k: Any) -> None: ...


class ChildRunContext:
    def __init__(self, tracker: Tracker, name: str, params: dict[str, Any], tags: dict[str, Any]):
        self.tracker, self.name, self.params, self.tags = tracker, name, params, tags
        self.run: Run | NullRun = NullRun()

    def __enter__(self) -> Run | NullRun:
        parent, tracker = self.tracker.parent, self.tracker
        if parent is None:
            return self.run
        run = tracker.guard(lambda: parent.client.create_run(
            parent.experiment_id, run_name=child_run_name(self.name, {**tracker.tags, **self.tags}),
            tags={"mlflow.parentRunId": parent.run_id,
                  **{k: str(v) for k, v in {**tracker.tags, **self.tags}.items()}}))
        if run is None:   # the store is away: the cell is computed and written, not logged
            return self.run
        self.run = Run(parent.client, run.info.run_id, parent.experiment_id, tracker.guard)
        if self.params:
            self.run.log_params(self.params)
        return self.run

    def __exit__(self, exc_type, exc, tb) -> bool:
        if isinstance(self.run, Run):
            if exc_type is None:
                self.run.end("FINISHED")
            elif issubclass(exc_type, KeyboardInterrupt):
                self.run.end("KILLED")
            else:
                self.run.end("FAILED")
        if self.tracker.parent is not None and self.tracker.away is not None and exc_type is None:
            self.tracker.not_logged.append(self.name)   # not logged whole: `repro track` logs it again
        return False


def describe_experiment(client: Any, experiment_id: str, experiment: str) -> None:
    """Set the experiment's kind and description tags (repro.tracking.view) where they differ (idempotent)."""
    exp = client.get_experiment(experiment_id)
    for k, v in experiment_tags(experiment).items():
        if exp.tags.get(k) != v:
            client.set_experiment_tag(experiment_id, k, v)


def mark_dead_runs_killed(client: Any, experiment_id: str) -> list[str]:
    """Runs of this experiment left RUNNING by a process of this host that is gone (SIGKILL, power
    loss) are marked KILLED, with a tag saying why; a live process's runs and other hosts' are left
    alone. The next invocation starts a new parent run (it does not resume the dead one)."""
    host = platform.node().replace("'", "")
    found = client.search_runs([experiment_id], max_results=1000,
                               filter_string=f"attributes.status = 'RUNNING' and tags.`repro.host` = '{host}'")
    killed = []
    for r in found:
        tags = r.data.tags
        if is_dead_here(tags.get("repro.host"), tags.get("repro.pid"), tags.get("repro.pid_start")):
            client.set_tag(r.info.run_id, "repro.killed", f"process {tags.get('repro.pid')} on "
                                                          f"{tags.get('repro.host')} died while it ran")
            client.set_terminated(r.info.run_id, status="KILLED")
            killed.append(r.info.run_id)
    return killed


def close_dead_runs(experiment: str) -> list[str]:
    """mark_dead_runs_killed for an invocation that opens no run (nothing left to do): a run killed
    after its last cell was written is still marked KILLED. Opens no store that does not exist."""
    if os.environ.get("REPRO_NO_MLFLOW") == "1":
        return []
    uri = tracking_uri()
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).exists():
        return []
    quiet_mlflow()
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    exp = client.get_experiment_by_name(experiment)
    return mark_dead_runs_killed(client, exp.experiment_id) if exp is not None else []


def iter_runs(experiment: str) -> Iterator[Any]:
    """All runs of an experiment (for tests and `repro doctor`)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return iter(())
    return iter(client.search_runs([exp.experiment_id], max_results=10000))


def log_to_parent_runs(child_run_ids: list[str], paths: list[Path], artifact_path: str) -> list[str]:
    """Attach files to the parent runs of these child runs (those that still exist in the store)."""
    quiet_mlflow()
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    prepare_store()
    client = MlflowClient()
    parents: set[str] = set()
    for rid in set(child_run_ids):
        try:
            parent = client.get_run(rid).data.tags.get("mlflow.parentRunId")
        except MlflowException:  # a run from another store, or deleted
            continue
        if parent:
            parents.add(parent)
    for parent in sorted(parents):
        for path in paths:
            client.log_artifact(parent, str(path), artifact_path)
    return sorted(parents)


def _store_missing(uri: str) -> bool:
    """A SQLite store whose file does not exist yet (nothing to read; opening it would create it)."""
    return uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).expanduser().exists()


def experiment_links(uri: str, base: str) -> list[tuple[str, str]]:
    """(name, runs-view URL) of every active experiment in the store; none for a store not yet made."""
    if _store_missing(uri):
        return []
    quiet_mlflow()
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exps = client.search_experiments(max_results=1000)
    return [(e.name, experiment_url(e.experiment_id, base)) for e in sorted(exps, key=lambda e: e.name)
            if e.name != "Default"]


def report_link(spec_id: str) -> str | None:
    """A report's line linking the spec's experiment in `repro ui` (runs view), if the store has it."""
    if os.environ.get("REPRO_NO_MLFLOW") == "1":
        return None
    if _store_missing(tracking_uri()):
        return None
    from mlflow.tracking import MlflowClient

    exp = MlflowClient().get_experiment_by_name(spec_id)
    return None if exp is None else report_line(spec_id, exp.experiment_id)
