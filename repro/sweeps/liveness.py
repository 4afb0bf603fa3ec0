"""Which RUNNING trials belong to a dead worker, so they can be failed and their point retried.

Journal file (one machine): every worker holds an exclusive flock on its own lease file
`<journal>.d/workers/<worker-id>.lock` for its whole life, and writes its id on each trial it
runs (user attr `repro.worker`). The kernel drops an flock when its process dies, however it
dies (SIGKILL included), so a RUNNING trial whose worker's lease can be locked by someone else
is an orphan. A trial popped by a worker that died before writing its id is an orphan once it
has run longer than CLAIM_GRACE_S without one. Leases of another host cannot be tested here;
those trials are left alone (share a study between machines through PostgreSQL instead).

RDB: Optuna's heartbeat. Each running trial records one every storage.HEARTBEAT_S (Heartbeat);
`fail_stale_trials` fails those silent for storage.GRACE_S.
"""
from __future__ import annotations

import fcntl
import json
import os
import platform
import threading
import uuid
from datetime import datetime, timedelta

from repro.sweeps.storage import SweepStorage

CLAIM_GRACE_S = 60.0


class WorkerLease:
    """This process's lease: held (flocked) until the process exits."""

    def __init__(self, st: SweepStorage):
        self.id = uuid.uuid4().hex[:12]
        self.host = platform.node()
        folder = st.local_dir / "workers"
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"{self.id}.lock"
        self._fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
        fcntl.flock(self._fd, fcntl.LOCK_EX)   # before any trial names this worker
        os.write(self._fd, json.dumps({"pid": os.getpid(), "host": self.host,
                                       "started": datetime.now().isoformat(timespec="seconds")}).encode())

    def release(self) -> None:
        if self._fd is not None:
            self.path.unlink(missing_ok=True)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def lease_is_dead(st: SweepStorage, worker_id: str) -> bool:
    path = st.local_dir / "workers" / f"{worker_id}.lock"
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return True   # released: its worker ended (a finished worker leaves no RUNNING trial)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    else:
        path.unlink(missing_ok=True)   # a dead worker's lease; nobody will hold it again
        fcntl.flock(fd, fcntl.LOCK_UN)
        return True
    finally:
        os.close(fd)


def orphaned_journal_trials(st: SweepStorage, trials) -> list:
    """RUNNING trials of the journal whose worker on this host is dead."""
    from optuna.trial import TrialState

    here, now, out = platform.node(), datetime.now(), []
    for t in trials:
        if t.state != TrialState.RUNNING:
            continue
        worker = t.user_attrs.get("repro.worker")
        if worker is None:
            started = t.datetime_start or now
            if now - started > timedelta(seconds=CLAIM_GRACE_S):
                out.append(t)
        elif t.user_attrs.get("repro.host", here) == here and lease_is_dead(st, worker):
            out.append(t)
    return out


def fail_orphans(st: SweepStorage, study) -> list:
    """Fail the trials of dead workers; returns those this process failed (and so must retry)."""
    import optuna
    from optuna.trial import TrialState

    if st.kind == "rdb":
        st.stale.clear()
        optuna.storages.fail_stale_trials(study)   # calls back into st.stale for each it failed
        return list(st.stale)
    failed = []
    for t in orphaned_journal_trials(st, study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))):
        trial_id = st.storage.get_trial_id_from_study_id_trial_number(
            st.storage.get_study_id_from_name(study.study_name), t.number)
        try:
            st.storage.set_trial_user_attr(trial_id, "repro.failed_because", "its worker died")
            if st.storage.set_trial_state_values(trial_id, TrialState.FAIL):
                failed.append(t)
        except optuna.exceptions.UpdateFinishedTrialError:
            pass   # another worker failed it first
    return failed


class Heartbeat:
    """RDB only: records the trial's heartbeat every interval while it runs (Optuna's mechanism)."""

    def __init__(self, st: SweepStorage, trial_id: int):
        self._st, self._trial_id = st, trial_id
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "Heartbeat":
        if self._st.kind == "rdb":
            interval = self._st.storage.get_heartbeat_interval()
            self._st.storage.record_heartbeat(self._trial_id)

            def beat() -> None:
                while not self._stop.wait(interval):
                    self._st.storage.record_heartbeat(self._trial_id)

            self._thread = threading.Thread(target=beat, daemon=True, name="optuna-heartbeat")
            self._thread.start()
        return self

    def __exit__(self, *exc) -> bool:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        return False
