"""One invocation per spec and profile, one trainer per model (repro.runlock): a second one waits with
a message or refuses with --no-wait; a dead holder's lock is taken over; two `repro train` of one
model at once train it once."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from repro.errors import UserError
from repro.runlock import held, lock_file
from tests.conftest import REPO, cli_env

HOLD = """
import sys, time
from pathlib import Path
from repro.runlock import held
with held(Path(sys.argv[1]), "the test's thing", say=lambda line: None):
    print("holding", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def holder(lock: Path, seconds: float) -> subprocess.Popen:
    """Another process holding `lock` for `seconds` (returns once it holds it)."""
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(lock), str(seconds)], stdout=subprocess.PIPE, text=True,
                         cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert p.stdout.readline().strip() == "holding"
    return p


def test_a_second_holder_is_refused_with_the_first_ones_name(tmp_path):
    lock = lock_file(tmp_path, "fig5_9", "test")
    assert lock == tmp_path / ".locks" / "fig5_9.test.lock"
    with held(lock, "fig5_9 [test]"):
        with pytest.raises(UserError) as e:
            with held(lock, "fig5_9 [test]", wait=False):
                pass
    line = str(e.value)
    assert "\n" not in line and line.startswith("fig5_9 [test] is being run by pid ")
    assert f"pid {os.getpid()} on " in line and "--no-wait" in line
    with held(lock, "fig5_9 [test]", wait=False):   # released: the next one takes it at once
        pass


def test_a_waiter_says_who_it_waits_for_and_goes_on_when_the_holder_ends(tmp_path):
    lock = lock_file(tmp_path, "s", "smoke")
    p = holder(lock, 1.5)
    said: list[str] = []
    t0 = time.monotonic()
    with held(lock, "s [smoke]", say=said.append):
        waited = time.monotonic() - t0
        info = json.loads(lock.read_text())
    p.wait(timeout=30)
    assert len(said) == 1 and said[0].startswith("waiting for s [smoke]: held by pid ")
    assert f"pid {p.pid} on " in said[0]
    assert waited > 0.5                                 # it did wait for the holder
    assert info["pid"] == os.getpid()                   # and wrote itself in once it held the lock


def test_a_dead_holders_lock_is_taken_over_without_waiting(tmp_path):
    lock = lock_file(tmp_path, "s", "smoke")
    p = holder(lock, 600)
    os.kill(p.pid, signal.SIGKILL)   # no clean-up of any kind: the kernel drops its flock
    p.wait(timeout=30)
    said: list[str] = []
    with held(lock, "s [smoke]", wait=False, say=said.append):
        pass
    assert said == []


def test_a_lock_that_cannot_be_created_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(UserError, match=r"cannot create the lock .*file/.locks/s.test.lock for s \[test\]"):
        with held(lock_file(blocker, "s", "test"), "s [test]"):
            pass


def test_a_run_waits_for_the_other_invocation_of_its_spec(workdir, capfd, monkeypatch):
    # another invocation holds fig5_9 at test for 2 s: `repro run` says whom it waits for, then runs
    from repro.cli import main

    p = holder(workdir / "results" / ".locks" / "fig5_9.test.lock", 2.0)
    monkeypatch.setattr(sys, "argv", ["repro", "run", "fig5_9", "--profile", "test", "--no-progress",
                                      "--device", "cpu"])
    main()
    p.wait(timeout=30)
    out, err = capfd.readouterr()
    assert "waiting for fig5_9 [test]: held by pid" in err and "4 cells (4 run, 0 already finished)" in out
    assert len(list((workdir / "results" / "fig5_9" / "test" / "cells").glob("*.json"))) == 4


def test_two_trainings_of_one_model_at_once_train_it_once(workdir):
    # two `repro train` of the same config started together: one trains, the other waits for its lock
    # and loads what it stored; MLflow holds one training run, both print the same weights' hash
    cmd = [sys.executable, "-m", "repro.cli", "train", "evaluator_digits", "--profile", "test", "--no-progress",
           "--device", "cpu"]
    env = cli_env(workdir)
    procs = [subprocess.Popen(cmd, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    hashes = {o.split("(sha256 ")[1].split(")")[0] for o, _ in outs}
    assert len(hashes) == 1

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])
    exp = client.get_experiment_by_name("train-evaluator_digits")
    assert len(client.search_runs([exp.experiment_id])) == 1


COUNT = """
import sys, time
from pathlib import Path
from repro.runlock import held
lock, counter = Path(sys.argv[1]), Path(sys.argv[2])
for _ in range(40):
    with held(lock, "the counter", say=lambda line: None):
        n = int(counter.read_text())    # read, pause, write: two holders at once would lose an increment
        time.sleep(0.001)
        counter.write_text(str(n + 1))
"""


def test_holders_that_remove_the_file_on_release_still_exclude_each_other(tmp_path):
    # 4 processes take and release one lock 40 times each, incrementing a counter in between; the
    # holder removes the lock file (and its folder) on release, a waiter on the removed file takes
    # the new one: no increment is lost, and no lock is left behind
    counter = tmp_path / "counter"
    counter.write_text("0")
    lock = lock_file(tmp_path / "store", "s", "test")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-c", COUNT, str(lock), str(counter)], env=env) for _ in range(4)]
    assert [p.wait(timeout=120) for p in procs] == [0] * 4
    assert counter.read_text() == "160"
    assert not (tmp_path / "store" / ".locks").exists()
