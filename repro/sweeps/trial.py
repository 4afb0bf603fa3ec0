"""One trial: its params -> one cell of the base spec -> reused or computed -> told to the study.

The cell is computed by the engine that `repro run` uses (`repro.engine.cells.run_one_cell`), so its results
file lands in results/<spec>/<profile>/cells/<key>.json; a cell whose file already holds this
spec's result (same spec hash, same setting) is reused, not recomputed. Each trial is a child
MLflow run of the invocation's parent run, tagged with the study and trial number; the trial
keeps the run id as its user attr `mlflow_run_id`.
"""
from __future__ import annotations

import math
import platform
import time
from typing import Any

from repro import results
from repro.engine.cells import run_one_cell
from repro.results import finished_record
from repro.engine.context import RunContext
from repro.engine.tracked import write_run_meta
from repro.experiments import runner_module
from repro.specs import ResolvedSpec, cell_key, match_cell
from repro.sweeps.liveness import Heartbeat
from repro.sweeps.queue import KEY_ATTR
from repro.sweeps.spec import CategoricalParam, FloatParam, GridParam, IntParam, LogFloatParam, ResolvedSweep
from repro.sweeps.storage import SweepStorage


class CellSource:
    """The base spec's cells for one worker: the results store first, else the engine (the kind's
    runner is prepared once, when the first cell needs computing)."""

    def __init__(self, base: ResolvedSpec, device, tracker):
        self.base, self.device, self.tracker = base, device, tracker
        self._open: tuple[Any, Any, Any] | None = None

    def finished(self, cell: dict[str, Any]) -> dict[str, Any] | None:
        rec = finished_record(self.base, cell_key(cell))
        if rec is None or set(rec.get("cell", {})) != set(cell) or not match_cell(rec["cell"], cell):
            return None
        return rec

    def compute(self, cell: dict[str, Any], tags: dict[str, Any]) -> dict[str, Any]:
        ctx, module, state = self._prepared()
        return run_one_cell(ctx, module, state, cell, tags=tags)

    def track_reuse(self, record: dict[str, Any], tags: dict[str, Any]) -> str | None:
        """A child run for a trial whose cell was already computed: its values, the cell file."""
        with self.tracker.child(record["key"], params={"cell": record["cell"]},
                                tags={"repro.cell": record["key"], "repro.reused": "true", **tags}) as run:
            run.log_metrics(record.get("values", {}))
            run.log_artifact(results.cells_dir(self.base.id, self.base.profile) / f"{record['key']}.json")
        return run.run_id

    def _prepared(self):
        if self._open is None:
            work_dir = results.run_dir(self.base.id, self.base.profile)
            ctx = RunContext(resolved=self.base, device=self.device, progress=False, work_dir=work_dir,
                             tracker=self.tracker)
            write_run_meta(self.base, work_dir)
            module = runner_module(self.base.spec.kind)
            self._open = (ctx, module, module.prepare(ctx))
        return self._open


def suggest(trial, name: str, p) -> Any:
    if isinstance(p, GridParam):
        return trial.suggest_categorical(name, p.values)
    if isinstance(p, CategoricalParam):
        return trial.suggest_categorical(name, p.choices)
    if isinstance(p, IntParam):
        return trial.suggest_int(name, p.low, p.high, step=p.step, log=p.log)
    if isinstance(p, FloatParam):
        return trial.suggest_float(name, p.low, p.high, step=p.step)
    if isinstance(p, LogFloatParam):
        return trial.suggest_float(name, p.low, p.high, log=True)
    raise TypeError(f"unknown search-space entry {p!r}")


def cell_value(p, value: Any) -> Any:
    """A sampled float at the 6 significant digits that name its results file, so that one file
    never holds a neighbouring setting's result."""
    if isinstance(p, (FloatParam, LogFloatParam)):
        return float(f"{value:.6g}")
    return value


class TrialFailed(Exception):
    """The trial's cell raised; the trial is FAIL, the exception is its cause."""


def run_trial(study, trial, rs: ResolvedSweep, space: dict[str, Any], cells: CellSource, st: SweepStorage,
              worker: str, invocation: str, log) -> dict[str, Any]:
    """Run one popped (or asked) trial to its end; returns what happened, for the worker's log."""
    for k, v in {"repro.worker": worker, "repro.host": platform.node(), "repro.invocation": invocation}.items():
        trial.set_user_attr(k, v)
    params = {n: suggest(trial, n, p) for n, p in space.items()}
    cell = rs.cell({n: cell_value(space[n], v) for n, v in params.items()})
    key = cell_key(cell)
    if trial.user_attrs.get(KEY_ATTR) != key:
        trial.set_user_attr(KEY_ATTR, key)
    tags = {"repro.sweep": rs.id, "repro.study": study.study_name, "repro.trial": trial.number}
    trial_id = st.storage.get_trial_id_from_study_id_trial_number(
        st.storage.get_study_id_from_name(study.study_name), trial.number)
    t0 = time.perf_counter()
    record = cells.finished(cell)
    reused = record is not None
    with Heartbeat(st, trial_id):
        try:
            run_id = cells.track_reuse(record, tags) if reused else None
            if not reused:
                record = cells.compute(cell, tags)
                run_id = record.get("mlflow_run_id")
        except KeyboardInterrupt:
            _finish(study, trial, st, trial_id, None, {"repro.interrupted": True})
            raise
        except Exception as e:
            _finish(study, trial, st, trial_id, None, {"repro.error": f"{type(e).__name__}: {e}"[:500]})
            raise TrialFailed(f"trial {trial.number} ({key}) raised {type(e).__name__}: {e}") from e
    values, problem = objective_values(record, rs.metrics)
    attrs = {"mlflow_run_id": run_id, "repro.reused": reused, "repro.seconds": round(time.perf_counter() - t0, 3)}
    if problem:
        attrs["repro.error"] = problem
    state = _finish(study, trial, st, trial_id, None if problem else values, attrs)
    return {"number": trial.number, "key": key, "values": values, "reused": reused, "state": state,
            "seconds": attrs["repro.seconds"], "problem": problem}


def objective_values(record: dict[str, Any], metrics: list[str]) -> tuple[list[float], str | None]:
    """The objectives from a cell's record; ([], why) when it has none to give (a cell the runner
    reported as failed, e.g. a diverged run, has a "failed" entry and no values)."""
    if record.get("failed"):
        failure = record["failed"]
        return [], f"cell {record.get('key')} failed: {failure.get('reason', failure) if isinstance(failure, dict) else failure}"
    got = record.get("values", {})
    values = []
    for m in metrics:
        v = got.get(m)
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(float(v)):
            return [], f"objective {m} is {v!r} in cell {record.get('key')}"
        values.append(float(v))
    return values, None


def _finish(study, trial, st: SweepStorage, trial_id: int, values: list[float] | None, attrs: dict[str, Any]) -> str:
    """Tell the study; a trial failed meanwhile (its heartbeat went stale) keeps that state: its
    cell file is written, and the retry reuses it."""
    import optuna
    from optuna.trial import TrialState

    if st.storage.get_trial(trial_id).state.is_finished():
        return "failed meanwhile"
    try:
        for k, v in attrs.items():
            trial.set_user_attr(k, v)
        if values is None:
            study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
            return "FAIL"
        study.tell(trial, values, skip_if_finished=True)
        return "COMPLETE"
    except optuna.exceptions.UpdateFinishedTrialError:
        return "failed meanwhile"
