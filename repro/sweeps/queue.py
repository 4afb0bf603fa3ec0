"""Trials as a queue of points: grid points enqueued once, each popped by one worker.

Optuna's GridSampler picks a grid point inside each worker; workers with different seeds lose
points and with one seed can still duplicate them (measured with Optuna 5.0). Here the points
are enqueued as WAITING trials instead, and a worker pops one by Optuna's atomic
WAITING -> RUNNING transition. Every decision to enqueue (the first enqueue, re-enqueuing the
point of a trial whose worker died, a point an earlier crash left without a trial) is taken under
`storage.queue_lock`, from a fresh read of the study, so a point is never enqueued twice. After a
pop, `claim` checks the point once more: if another trial of it is running or complete (a storage
without a queue lock, or a worker that was only slow and is running still), the popped trial
stands down, so a grid ends with exactly one COMPLETE trial per point.
"""
from __future__ import annotations

from typing import Any

from repro.specs import cell_key
from repro.sweeps.liveness import fail_orphans
from repro.sweeps.storage import SweepStorage, queue_lock

KEY_ATTR = "repro.cell_key"


def point_key(trial) -> str | None:
    return trial.user_attrs.get(KEY_ATTR)


def _study_id(st: SweepStorage, study) -> int:
    return st.storage.get_study_id_from_name(study.study_name)


def _trial_id(st: SweepStorage, study, number: int) -> int:
    return st.storage.get_trial_id_from_study_id_trial_number(_study_id(st, study), number)


def fresh_trials(st: SweepStorage, study) -> list:
    """Every trial of the study, read from the storage itself (not Optuna's per-process cache)."""
    return st.storage.get_all_trials(_study_id(st, study), deepcopy=False)


def sync(st: SweepStorage, study, points: list[dict[str, Any]] | None, invocation: str | None = None) -> list:
    """Fail the trials of dead workers and enqueue their points again; for a grid (points given),
    enqueue every point that has no WAITING, RUNNING or COMPLETE trial, except those whose trial
    raised in this invocation (the next invocation retries them). Returns the trials failed."""
    from optuna.trial import TrialState

    with queue_lock(st, study.study_name):
        failed = fail_orphans(st, study)
        if points is None:   # a sampled sweep: a dead worker's params are tried again
            for t in failed:
                study.enqueue_trial(t.params, user_attrs={"repro.retry_of": t.number})
            return failed
        live = (TrialState.WAITING, TrialState.RUNNING, TrialState.COMPLETE)
        trials = fresh_trials(st, study)
        covered = {point_key(t) for t in trials if t.state in live}
        raised = {point_key(t) for t in trials if "repro.error" in t.user_attrs
                  and invocation is not None and t.user_attrs.get("repro.invocation") == invocation}
        retried = {point_key(t): t.number for t in failed}
        for p in points:
            key = cell_key(p)
            if key in covered or key in raised:
                continue
            attrs = {KEY_ATTR: key}
            if key in retried:
                attrs["repro.retry_of"] = retried[key]
            study.enqueue_trial(p, user_attrs=attrs)
        return failed


def pop(st: SweepStorage, study):
    """The next WAITING trial, now RUNNING and this process's; None when the queue is empty."""
    import optuna
    from optuna.trial import TrialState

    for t in sorted(st.storage.get_all_trials(_study_id(st, study), deepcopy=False, states=(TrialState.WAITING,)),
                    key=lambda t: t.number):
        trial_id = _trial_id(st, study, t.number)
        try:
            if st.storage.set_trial_state_values(trial_id, TrialState.RUNNING):
                study.get_trials(deepcopy=False)   # so the study's own (cached) storage knows the trial
                return optuna.trial.Trial(study, trial_id)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
    return None


def claim(st: SweepStorage, study, trial) -> int | None:
    """None if this trial may compute its point; else the number of the other trial that has it."""
    from optuna.trial import TrialState

    key = trial.user_attrs.get(KEY_ATTR)
    if key is None:
        return None
    for t in fresh_trials(st, study):
        if t.number != trial.number and point_key(t) == key and t.state in (TrialState.RUNNING, TrialState.COMPLETE):
            return t.number
    return None


def progress(st: SweepStorage, study, points: list[dict[str, Any]] | None, budget: int) -> dict[str, Any]:
    """Counts for --status and the workers' stopping rule."""
    from optuna.trial import TrialState

    trials = fresh_trials(st, study)
    by_state = {s: [t for t in trials if t.state == s] for s in TrialState}
    failed, retried = by_state[TrialState.FAIL], []
    if points is not None:   # a grid point that failed (or was interrupted) and was then finished is finished
        done = {point_key(t) for t in by_state[TrialState.COMPLETE]}
        retried = [t for t in failed if point_key(t) in done]
        failed = [t for t in failed if point_key(t) not in done]
    if points is not None:
        keys = [cell_key(p) for p in points]
        complete = {point_key(t) for t in by_state[TrialState.COMPLETE]} & set(keys)
        remaining = [k for k in keys if k not in complete]
        finished = len(complete)
    else:
        finished = len(by_state[TrialState.COMPLETE])
        remaining = list(range(max(0, budget - finished)))
    return {"finished": finished, "running": len(by_state[TrialState.RUNNING]),
            "waiting": len(by_state[TrialState.WAITING]), "failed": len(failed), "retried": len(retried),
            "pruned": len(by_state[TrialState.PRUNED]), "remaining": len(remaining), "budget": budget,
            "remaining_keys": remaining if points is not None else [], "trials": trials}
