"""Parallel runs: a fresh MLflow store under concurrent use, sharded cells under torchrun (gloo),
cells over processes (--jobs), and the shared launcher."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, cli_env

_OPEN_AT_ONCE = """
import os, sys, time
import mlflow, mlflow.tracking, sqlalchemy  # imported before the start signal: the race is on opening
from repro.tracking import Tracker
open(f"ready{sys.argv[1]}", "w").close()
while not os.path.exists("go"):
    time.sleep(0.002)
with Tracker("race", "r" + sys.argv[1]) as tr:
    print("run", tr.run_id)
"""


@pytest.mark.slow
def test_fresh_store_opened_by_several_processes_at_once(workdir):
    """Three processes create their parent runs in one fresh mlflow.db at the same instant (what
    torchrun ranks did): the schema is created once under the lock and all three runs exist.
    Without the lock MLflow's migration fails in the late processes (issue 16)."""
    env = cli_env(workdir)
    procs = [subprocess.Popen([sys.executable, "-c", _OPEN_AT_ONCE, str(i)], cwd=workdir, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(3)]
    deadline = time.time() + 120
    while not all((workdir / f"ready{i}").exists() for i in range(3)) and time.time() < deadline:
        time.sleep(0.05)
    (workdir / "go").touch()
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [o[1][-2000:] for o in outs]
    ids = {line.split()[1] for out, _ in outs for line in out.splitlines() if line.startswith("run ")}
    assert len(ids) == 3
    from repro.tracking import iter_runs

    assert {r.info.run_id for r in iter_runs("race")} == ids


def test_store_lock_sits_beside_the_sqlite_file(tmp_path):
    from repro.parallel.store import lock_path, sqlite_path

    uri = f"sqlite:///{tmp_path}/sub/mlflow.db"
    assert sqlite_path(uri) == tmp_path / "sub" / "mlflow.db"
    assert lock_path(uri) == tmp_path / "sub" / "mlflow.db.init.lock"
    assert sqlite_path("postgresql://u@h/db") is None
    a, b = lock_path("postgresql://u@h/db"), lock_path("postgresql://u@h/other")
    assert a != b and a.parent == b.parent
