"""Two `repro sweep` processes, as on two machines, share one study in a real PostgreSQL server.

The server is Debian's `postgresql` package (`make postgres` installs it where it can: root and
apt-get, as on CI), started here by initdb / pg_ctl in a temporary folder on 127.0.0.1 as a non-root
user (initdb refuses root), and stopped at the end. Without the package the test skips, saying so.
"""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.test_sweep_workers import _env, models  # noqa: F401  (the module's trained-models fixture)

pytestmark = [pytest.mark.xdist_group("sweeps"), pytest.mark.slow]


def _pg_bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    which = shutil.which("pg_ctl")
    return Path(which).parent if which else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url():
    bindir = _pg_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server not installed (Debian package `postgresql`; `make postgres` installs it as root)")
    as_user: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="repro-pg-"))
    if os.getuid() == 0:   # initdb refuses to run as root: the package's `postgres` user runs the server
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no `postgres` user to run the server as")
        shutil.chown(folder, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = folder / "data", _free_port()
    subprocess.run([*as_user, str(bindir / "initdb"), "-D", str(data), "-U", "repro", "--auth=trust", "-E", "UTF8"],
                   check=True, capture_output=True)
    subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(folder / "server.log"), "-w",
                    "-o", f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off", "start"],
                   check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg2://repro@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def test_two_processes_share_one_study_in_postgresql(tmp_path, models, postgres_url):  # noqa: F811
    import optuna
    from optuna.trial import TrialState

    from repro.specs import cell_key
    from repro.sweeps.spec import resolve_sweep

    keys = {cell_key(p) for p in resolve_sweep("dg-epsilon", "test").grid_points()}
    cmd = [sys.executable, "-m", "repro.cli", "sweep", "dg-epsilon", "--profile", "test", "--storage", postgres_url,
           "--study", "shared"]
    procs = []
    for machine in ("a", "b"):   # each with its own results and MLflow store, as two machines would have
        root = tmp_path / machine
        root.mkdir()
        procs.append(subprocess.Popen(cmd, cwd=root, env=_env(root, models), stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(o[-3000:] for o in outs)
    study = optuna.load_study(study_name="shared", storage=postgres_url)
    trials = study.get_trials()
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert sorted(t.user_attrs["repro.cell_key"] for t in complete) == sorted(keys)   # once per point
    assert not [t for t in trials if t.state != TrialState.COMPLETE]                  # no duplicate, no loss
    assert all("study 'shared' in postgresql+psycopg2://repro@127.0.0.1" in o and "16/16 finished" in o
               for o in outs)
    workers = {t.user_attrs["repro.worker"] for t in complete}
    invocations = {t.user_attrs["repro.invocation"] for t in complete}
    assert 1 <= len(workers) == len(invocations) <= 2   # (both usually: 3 + 13 trials in one run here)
    # Optuna's heartbeat ran for every trial (the RDB way to find a dead worker's trial).
    from sqlalchemy import create_engine, text

    with create_engine(postgres_url).connect() as conn:
        beats = conn.execute(text("SELECT count(*) FROM trial_heartbeats")).scalar()
    assert beats == len(complete)


def test_a_trial_whose_heartbeat_stops_is_failed_and_its_point_enqueued_again(postgres_url, monkeypatch):
    """Optuna's RDB heartbeat: a RUNNING trial silent for the grace period belongs to a dead worker."""
    import time

    from optuna.trial import TrialState

    from repro.sweeps import queue, storage
    from repro.sweeps.samplers import make_sampler
    from repro.sweeps.spec import resolve_sweep

    monkeypatch.setattr(storage, "HEARTBEAT_S", 1)
    monkeypatch.setattr(storage, "GRACE_S", 2)
    monkeypatch.setenv("REPRO_RESULTS", str(Path(tempfile.mkdtemp(prefix="repro-pg-results-"))))
    st = storage.open_storage(postgres_url)
    rs = resolve_sweep("dg-epsilon", "test")
    study = storage.open_study(st, "heartbeat", rs.identity(), rs.directions, make_sampler("grid", rs.space, 16, 0, 1))
    queue.sync(st, study, rs.grid_points(), "inv")
    trial = queue.pop(st, study)
    trial_id = st.storage.get_trial_id_from_study_id_trial_number(st.storage.get_study_id_from_name("heartbeat"),
                                                                  trial.number)
    st.storage.record_heartbeat(trial_id)   # its worker beat once, then died
    assert queue.sync(st, study, rs.grid_points(), "inv") == []   # not stale yet
    time.sleep(3)
    failed = queue.sync(st, study, rs.grid_points(), "inv")
    assert [t.number for t in failed] == [trial.number]
    trials = study.get_trials()
    assert trials[trial.number].state == TrialState.FAIL
    key = trial.user_attrs[queue.KEY_ATTR]
    retry = [t for t in trials if t.state == TrialState.WAITING and queue.point_key(t) == key]
    assert len(retry) == 1 and retry[0].user_attrs["repro.retry_of"] == trial.number
