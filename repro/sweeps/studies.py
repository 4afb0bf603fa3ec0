"""A study's trials as plain rows: the best trial (or Pareto front), and trials.json / best.json
beside the study's storage. Read by `repro sweep` at its end, `--status` and the sweep report."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from repro.atomic import atomic_write_text
from repro.sweeps.spec import ResolvedSweep
from repro.sweeps.storage import _safe, sweeps_root


def best_trials(study, rs: ResolvedSweep) -> list[dict[str, Any]]:
    """The best trial (one objective) or the Pareto front (several), as plain dicts."""
    from optuna.trial import TrialState

    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return []
    best = [study.best_trial] if len(rs.metrics) == 1 else study.best_trials
    return [trial_row(t, rs) for t in sorted(best, key=lambda t: t.number)]


def trial_row(t, rs: ResolvedSweep) -> dict[str, Any]:
    return {"number": t.number, "state": t.state.name, "params": dict(t.params),
            "values": dict(zip(rs.metrics, t.values)) if t.values else {},
            "cell_key": t.user_attrs.get("repro.cell_key"), "reused": t.user_attrs.get("repro.reused"),
            "mlflow_run_id": t.user_attrs.get("mlflow_run_id"),
            "seconds": t.user_attrs.get("repro.seconds"),
            "started": t.datetime_start.isoformat(timespec="seconds") if t.datetime_start else None,
            "finished": t.datetime_complete.isoformat(timespec="seconds") if t.datetime_complete else None}


def study_dir(study_name: str) -> Path:
    return sweeps_root() / _safe(study_name)


def write_artifacts(study, rs: ResolvedSweep, study_name: str, stage: str) -> Path:
    """trials.json (every trial), best.json (best trial or Pareto front), beside the journal."""
    out = study_dir(study_name)
    rows = [trial_row(t, rs) for t in study.get_trials(deepcopy=False)]
    best = best_trials(study, rs)
    atomic_write_text(out / "trials.json", json.dumps(rows, indent=2, default=str))
    body = {"sweep": rs.id, "profile": rs.profile, "study": study_name, "stage": stage,
            "objectives": [o.model_dump() for o in rs.sweep.objectives],
            ("best" if len(rs.metrics) == 1 else "pareto_front"): best,
            "published": rs.sweep.published.model_dump(mode="json")}
    atomic_write_text(out / ("best.json" if len(rs.metrics) == 1 else "pareto.json"),
                      json.dumps(body, indent=2, default=str))
    return out
