"""`repro track`: log to MLflow the finished cells it does not have, from their results files.

The results files are the record; MLflow is a view of them. When the tracking store stopped answering
during a run (repro.tracking.runs.Tracker.guard), the run computed and wrote its cells without logging
them. Once the store answers again, every cell file whose cell has no FINISHED run in the spec's
experiment (tags `repro.cell` and `repro.spec_hash`, at the profile) is logged as a child run of one
new parent run named `<spec>-<profile>-track`: its cell as params, its values and seconds as
metrics, the cell file as an artifact. A cell is identified by its key and spec hash, so logging
twice logs nothing twice. Runs left RUNNING by a dead process of this host are marked KILLED first
(as every invocation does).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from repro import results
from repro.tracking.runs import Run, describe_experiment, mark_dead_runs_killed, quiet_mlflow
from repro.tracking.store import check_store, prepare_store
from repro.tracking.view import child_run_name
from repro.liveness import this_process


def logged_cells(client: Any, experiment_id: str, profile: str) -> set[tuple[str, str]]:
    """(cell key, spec hash) of every FINISHED cell run of the experiment at this profile."""
    found, token = set(), None
    while True:
        page = client.search_runs([experiment_id], max_results=1000, page_token=token,
                                  filter_string=f"attributes.status = 'FINISHED' and tags.`repro.profile` = '{profile}'")
        for r in page:
            tags = r.data.tags
            if tags.get("repro.cell") and tags.get("repro.spec_hash"):
                found.add((tags["repro.cell"], tags["repro.spec_hash"]))
        token = page.token
        if not token:
            return found


def track_spec(spec_id: str, profile: str) -> tuple[list[str], int]:
    """(keys of the cells logged now, cells already logged) for one spec's results at a profile."""
    records = results.read_cells(spec_id, profile)
    if not records:
        return [], 0
    check_store()   # one line naming the store when it is still away
    quiet_mlflow()
    from mlflow.tracking import MlflowClient

    prepare_store()
    client = MlflowClient()
    exp = client.get_experiment_by_name(spec_id)
    exp_id = exp.experiment_id if exp is not None else client.create_experiment(spec_id)
    describe_experiment(client, exp_id, spec_id)
    mark_dead_runs_killed(client, exp_id)
    have = logged_cells(client, exp_id, profile)
    missing = [r for r in records if (r.get("key"), r.get("spec_hash")) not in have]
    if not missing:
        return [], len(records)
    base = {"repro.spec": spec_id, "repro.profile": profile, "repro.track": "from results files",
            **this_process()}
    parent = client.create_run(exp_id, run_name=f"{spec_id}-{profile}-track", tags=base)
    top = Run(client, parent.info.run_id, exp_id)
    logged = []
    try:
        for r in missing:
            _log_cell(client, exp_id, top.run_id, base, r)
            logged.append(r["key"])
    except BaseException:
        top.end("FAILED")
        raise
    top.end("FINISHED")
    return logged, len(records) - len(missing)


def _log_cell(client: Any, exp_id: str, parent_id: str, base: dict[str, str], record: dict[str, Any]) -> None:
    """One cell file as a FINISHED child run (what run_one_cell logs, read back from the file)."""
    key = record["key"]
    tags = {**base, "mlflow.parentRunId": parent_id, "repro.cell": key,
            "repro.spec_hash": str(record.get("spec_hash")), "repro.device": str(record.get("device")),
            "repro.git_commit": str(record.get("git_commit")), "repro.finished_at": str(record.get("finished_at"))}
    run = Run(client, client.create_run(exp_id, run_name=child_run_name(key, tags), tags=tags).info.run_id, exp_id)
    run.log_params({"cell": record.get("cell", {})})
    run.log_metrics({**(record.get("values") or {}), "seconds": record.get("seconds")})
    path = results.cells_dir(record["spec"], record["profile"]) / f"{key}.json"
    if Path(path).is_file():
        run.log_artifact(path)
    run.end("FINISHED")
