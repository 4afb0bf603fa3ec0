"""`repro sweep dg-epsilon --profile test --workers 2` as a user runs it: SIGKILLed mid-grid, then the
same command again finishes the remaining points only, with exactly one finished trial per point."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.xdist_group("sweeps"), pytest.mark.slow]
COMMAND = ["sweep", "dg-epsilon", "--profile", "test", "--workers", "2"]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    """The tiny models fig12_3 uses at `test`, trained once (the sweep's own results dir stays empty)."""
    import torch

    from repro.trainers.ensure import ensure_model
    from repro.experiments import resolve_spec

    root = tmp_path_factory.mktemp("sweep_workers")
    mp = pytest.MonkeyPatch()
    mp.setenv("REPRO_ARTIFACTS", str(root / "artifacts"))
    mp.setenv("REPRO_NO_MLFLOW", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        spec = resolve_spec("fig12_3", "test")
        for role in spec.spec.models:
            ensure_model(spec.spec.models[role], "test", device="cpu", progress=False)
    finally:
        torch.set_num_threads(threads)
        mp.undo()
    return root / "artifacts"


def _env(root: Path, artifacts: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REPRO_")}
    env.update(REPRO_ARTIFACTS=str(artifacts), REPRO_RESULTS=str(root / "results"), PYTHONUNBUFFERED="1",
               MLFLOW_TRACKING_URI=f"sqlite:///{root / 'mlflow.db'}")
    return env


def _trials(journal: Path):
    from repro.sweeps.storage import find_study, open_storage

    study = find_study(open_storage(str(journal), readonly=True), "dg-epsilon-test")
    return [] if study is None else study.get_trials()


def _cells(root: Path) -> dict[str, str]:
    folder = root / "results" / "fig12_3" / "test" / "cells"
    return {p.stem: json.loads(p.read_text())["finished_at"] for p in folder.glob("*.json")}


def test_two_workers_sigkilled_mid_grid_then_the_same_command_finishes_the_rest_once_per_point(tmp_path, models):
    from optuna.trial import TrialState

    from repro.sweeps.spec import resolve_sweep
    from repro.specs import cell_key

    keys = {cell_key(p) for p in resolve_sweep("dg-epsilon", "test").grid_points()}
    assert len(keys) == 16
    env = _env(tmp_path, models)
    journal = tmp_path / "results" / "sweeps" / "optuna.journal"
    cmd = [sys.executable, "-m", "repro.cli", *COMMAND]
    with open(tmp_path / "first.log", "w") as log:
        first = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
                                 start_new_session=True)   # its own process group: the command and its workers
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and first.poll() is None:
            if journal.is_file() and sum(t.state == TrialState.COMPLETE for t in _trials(journal)) >= 3:
                break
            time.sleep(0.05)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    killed = _trials(journal)
    done_before = {t.user_attrs["repro.cell_key"]: t.number for t in killed if t.state == TrialState.COMPLETE}
    running_at_kill = [t.number for t in killed if t.state == TrialState.RUNNING]
    cells_before = _cells(tmp_path)
    assert 3 <= len(done_before) < 16, f"not killed mid-sweep: {len(done_before)} of 16 finished\n" + \
        (tmp_path / "first.log").read_text()[-3000:]

    again = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    trials = _trials(journal)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    by_key = {}
    for t in complete:
        by_key.setdefault(t.user_attrs["repro.cell_key"], []).append(t.number)
    assert set(by_key) == keys and all(len(v) == 1 for v in by_key.values())     # one finished trial per point
    assert {k: v[0] for k, v in by_key.items() if k in done_before} == done_before  # kept, not repeated
    assert all(_cells(tmp_path)[k] == cells_before[k] for k in done_before)        # and not recomputed
    states_at_kill = {t.number: t.state for t in killed}
    for t in trials:   # the rerun ran the remaining points only: nothing else changed state
        if t.user_attrs.get("repro.cell_key") in done_before:
            assert t.number in states_at_kill and (t.state == states_at_kill[t.number] or t.number in running_at_kill)
    for n in running_at_kill:   # a dead worker's trial: failed, and its point retried
        t = trials[n]
        assert t.state == TrialState.FAIL and t.user_attrs["repro.failed_because"] == "its worker died"
    for t in complete:   # a cell written just before the kill but not told to the study is reused
        if t.user_attrs["repro.cell_key"] not in done_before:
            assert t.user_attrs["repro.reused"] == (t.user_attrs["repro.cell_key"] in cells_before)
    assert "16/16 finished" in again.stdout
    status = subprocess.run([sys.executable, "-m", "repro.cli", "sweep", "dg-epsilon", "-p", "test", "--status"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    # the dead worker's trials stay FAIL in the study, but their points were finished: not counted as failed
    assert "finished 16/16 grid points; running 0" in status.stdout and "failed 0;" in status.stdout
    if running_at_kill:
        assert f"({len(running_at_kill)} failed or interrupted trial(s) of points finished later)" in status.stdout
