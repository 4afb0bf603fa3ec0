"""Sweeps in one process: sweep specs, the queue (one trial per grid point), dead-worker detection,
seeds, bad input (one line, exit 2, nothing written), reuse of `repro run`'s cells, the refine
stage, --status and the report. Several processes: test_sweep_workers.py; PostgreSQL:
test_sweep_postgres.py."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from repro.errors import UserError
from tests.conftest import REPO

pytestmark = pytest.mark.xdist_group("sweeps")


def _journal(tmp_path):
    from repro.sweeps.storage import open_storage

    return open_storage(str(tmp_path / "t.journal"))


def _grid_study(st, name="g"):
    from repro.sweeps.samplers import make_sampler
    from repro.sweeps.spec import resolve_sweep
    from repro.sweeps.storage import open_study

    rs = resolve_sweep("dg-epsilon", "test")
    study = open_study(st, name, rs.identity(), rs.directions, make_sampler("grid", rs.space, 16, 0, 1))
    return rs, study


# ----------------------------------------------------------------------------- specs

def test_shipped_sweeps_resolve_at_every_profile():
    from repro.sweeps.spec import list_sweep_ids, resolve_sweep

    assert {"dg-epsilon", "snr"} <= set(list_sweep_ids())
    for name in list_sweep_ids():
        for profile in ("test", "smoke", "paper"):
            rs = resolve_sweep(name, profile)
            assert rs.metrics and all(m in rs.base.spec.metrics for m in rs.metrics)
            if rs.sweep.sampler == "grid":
                assert len(rs.grid_points()) == rs.budget() >= 2
    rs = resolve_sweep("dg-epsilon", "paper")
    assert rs.base.id == "fig12_3" and rs.metrics == ["fid"]
    assert rs.grid_points()[0] == {"w_dg": 0.0, "eps_scale": 1.0}       # the base grid's key order
    assert len(rs.grid_points()) == len(rs.base.cells())                 # the whole Fig. 12.3 grid
    assert rs.sweep.published.best["eps_scale"] == 1.0004 and any("1.004" in c for c in rs.sweep.published.conflicts)


def _write_sweep(tmp_path, monkeypatch, name: str, body: str) -> None:
    """An experiments dir with the real specs and one extra sweep."""
    exp = tmp_path / "experiments"
    (exp / "sweeps").mkdir(parents=True)
    for p in (REPO / "experiments").iterdir():
        if p.name != "sweeps":
            (exp / p.name).symlink_to(p)
    for p in (REPO / "experiments" / "sweeps").glob("*.yaml"):
        (exp / "sweeps" / p.name).symlink_to(p)
    (exp / "sweeps" / f"{name}.yaml").write_text(body)
    monkeypatch.setenv("REPRO_EXPERIMENTS", str(exp))


def test_sweep_spec_mistakes_are_user_errors(tmp_path, monkeypatch):
    from repro.sweeps.spec import resolve_sweep

    base = "id: {id}\ntitle: t\nbase: fig12_3\nsampler: {sampler}\nobjectives: [{{metric: {metric}, direction: minimize}}]\n"
    cases = {
        "bad-name": (base.format(id="bad-name", sampler="grid", metric="fd_evalnet") + "space: {s0: {type: grid}}\n",
                     "search-space name 's0' is not in base spec fig12_3's grid"),
        "fixed-only": (base.format(id="fixed-only", sampler="tpe", metric="fd_evalnet")
                       + "n_trials: 3\nspace: {n_samples: {type: int, low: 4, high: 8}}\n",
                       "cannot vary per cell"),
        "bad-metric": (base.format(id="bad-metric", sampler="grid", metric="miou") + "space: {w_dg: {type: grid}}\n",
                       "objective 'miou' is not a metric"),
        "no-budget": (base.format(id="no-budget", sampler="tpe", metric="fd_evalnet")
                      + "space: {w_dg: {type: float, low: 0, high: 2}}\n", "needs n_trials"),
        "range-in-grid": (base.format(id="range-in-grid", sampler="grid", metric="fd_evalnet")
                          + "space: {w_dg: {type: float, low: 0, high: 2}}\n", "grid or categorical names only"),
        "fine-step": (base.format(id="fine-step", sampler="tpe", metric="fd_evalnet")
                      + "n_trials: 3\nspace: {eps_scale: {type: float, low: 1.0, high: 1.00001, step: 0.0000001}}\n",
                      "finer than the 6 significant digits"),
    }
    for name, (body, message) in cases.items():
        _write_sweep(tmp_path / name, monkeypatch, name, body)
        with pytest.raises(UserError, match=message):
            resolve_sweep(name, "test")
    with pytest.raises(UserError, match="unknown sweep 'nope'"):
        resolve_sweep("nope")


# ----------------------------------------------------------------------------- queue

def test_grid_points_are_enqueued_once_and_a_second_trial_of_a_point_stands_down(tmp_path):
    from optuna.trial import TrialState

    from repro.sweeps import queue

    st = _journal(tmp_path)
    rs, study = _grid_study(st)
    queue.sync(st, study, rs.grid_points(), "inv")
    queue.sync(st, study, rs.grid_points(), "inv")   # a second worker's sync adds nothing
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert len(waiting) == 16 and len({queue.point_key(t) for t in waiting}) == 16
    first = queue.pop(st, study)
    assert first is not None and queue.claim(st, study, first) is None
    # A duplicate (as a storage without a queue lock could make) stands down while the first runs.
    study.enqueue_trial(first.params, user_attrs={queue.KEY_ATTR: first.user_attrs[queue.KEY_ATTR]})
    popped = [queue.pop(st, study) for _ in range(16)]
    dup = [t for t in popped if t.user_attrs[queue.KEY_ATTR] == first.user_attrs[queue.KEY_ATTR]]
    assert len(dup) == 1 and queue.claim(st, study, dup[0]) == first.number
    assert queue.pop(st, study) is None
    # Popping is exclusive: a trial already RUNNING is not popped again by another storage object.
    other = _journal(tmp_path)
    assert queue.pop(other, study) is None


def test_trials_of_dead_workers_are_failed_and_their_points_enqueued_again(tmp_path):
    from optuna.trial import TrialState

    from repro.sweeps import queue
    from repro.sweeps.liveness import WorkerLease

    st = _journal(tmp_path)
    rs, study = _grid_study(st)
    queue.sync(st, study, rs.grid_points(), "inv")
    alive = WorkerLease(st)
    # A worker in another process that dies holding its lease (SIGKILL: nothing is cleaned up).
    code = ("import os, sys; from repro.sweeps.storage import open_storage; from repro.sweeps.liveness import WorkerLease;"
            f"l = WorkerLease(open_storage({str(tmp_path / 't.journal')!r})); print(l.id, flush=True); os._exit(0)")
    dead_id = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                             cwd=REPO).stdout.strip()
    t_alive, t_dead = queue.pop(st, study), queue.pop(st, study)
    t_alive.set_user_attr("repro.worker", alive.id)
    t_dead.set_user_attr("repro.worker", dead_id)
    failed = queue.sync(st, study, rs.grid_points(), "inv")
    assert [t.number for t in failed] == [t_dead.number]
    by_number = {t.number: t for t in study.get_trials()}
    assert by_number[t_dead.number].state == TrialState.FAIL
    assert by_number[t_alive.number].state == TrialState.RUNNING
    retry = [t for t in study.get_trials(states=(TrialState.WAITING,)) if t.user_attrs.get("repro.retry_of") == t_dead.number]
    assert len(retry) == 1 and queue.point_key(retry[0]) == queue.point_key(t_dead)
    assert queue.sync(st, study, rs.grid_points(), "inv") == []   # failed once, by one process
    alive.release()


def test_worker_seeds_differ_by_worker_and_attempt():
    from repro.sweeps.samplers import worker_seed

    seeds = {worker_seed(0, "s", "h", w, a) for w in range(3) for a in (0, 5, 9)}
    assert len(seeds) == 9
    assert worker_seed(0, "s", "h", 1, 5) == worker_seed(0, "s", "h", 1, 5)


# ----------------------------------------------------------------------------- bad input via the CLI

def _cli(args: list[str], monkeypatch, capsys) -> tuple[int, str]:
    """`repro ARGS` in this process: (exit code, stderr)."""
    from repro.cli import main

    monkeypatch.setattr(sys, "argv", ["repro", *args])
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main()
    return e.value.code, capsys.readouterr().err


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_bad_sweep_inputs_are_one_line_exit_2_and_write_nothing(workdir, monkeypatch, capsys):
    import optuna

    from repro.sweeps.storage import open_storage

    _write_sweep(workdir, monkeypatch, "bad-space",
                 "id: bad-space\ntitle: t\nbase: fig12_3\nsampler: grid\nspace: {s0: {type: grid, values: [1]}}\n"
                 "objectives: [{metric: fd_evalnet, direction: minimize}]\n")
    # A study of the snr sweep under the name dg-epsilon would use.
    journal = workdir / "other.journal"
    st = open_storage(str(journal))
    optuna.create_study(study_name="dg-epsilon-test", storage=st.storage).set_user_attr("repro.sweep", "snr")
    before = _tree(workdir)
    size = journal.stat().st_size
    cases = [
        (["sweep", "nope", "-p", "test"], "unknown sweep 'nope'"),
        (["sweep", "bad-space", "-p", "test"], "search-space name 's0' is not in base spec fig12_3"),
        (["sweep", "dg-epsilon", "-p", "test", "--storage", "postgresql://repro@127.0.0.1:9/none"],
         "cannot open the study storage"),
        (["sweep", "dg-epsilon", "-p", "test", "--storage", "redis://127.0.0.1:9"], "not a storage Optuna can share"),
        (["sweep", "dg-epsilon", "-p", "test", "--storage", str(journal)], "belongs to sweep 'snr'"),
        (["sweep", "dg-epsilon", "-p", "test", "--workers", "0"], "--workers 0"),
        (["sweep", "snr", "-p", "test", "--refine"], "has no refine stage"),
        (["report", "sweep:nope"], "unknown sweep 'nope'"),
    ]
    for args, message in cases:
        code, err = _cli(args, monkeypatch, capsys)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and message in lines[0], (args, code, err)
    assert set(_tree(workdir)) ^ set(before) == set() and journal.stat().st_size == size   # nothing written


# ----------------------------------------------------------------------------- a sweep in one process

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """fig12_3 run at `test` by `repro run` (trains the tiny models, finishes its 2 x 2 cells)."""
    from repro.engine.run import run_spec

    root = tmp_path_factory.mktemp("sweep")
    mp = pytest.MonkeyPatch()
    mp.chdir(root)
    for var, sub in (("REPRO_ARTIFACTS", "artifacts"), ("REPRO_RESULTS", "results"), ("REPRO_REPORTS", "reports")):
        mp.setenv(var, str(root / sub))
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    mp.delenv("REPRO_EXPERIMENTS", raising=False)
    summary = run_spec("fig12_3", "test", device="cpu", progress=False)
    yield {"root": root, "run": summary}
    mp.undo()


def test_a_sweep_reuses_repro_runs_cells_then_tracks_refines_and_reports(trained):
    import optuna
    from mlflow.tracking import MlflowClient
    from optuna.trial import TrialState

    from repro import results
    from repro.sweeps.report import render_sweep_report
    from repro.sweeps.runner import run_sweep
    from repro.sweeps.status import status_lines
    from repro.sweeps.storage import default_journal, open_storage

    before = {c["key"]: c["finished_at"] for c in results.read_cells("fig12_3", "test")}
    assert len(before) == 4
    s = run_sweep("dg-epsilon", "test", device="cpu", echo=lambda m: None)
    assert s.progress["finished"] == 16 and s.progress["remaining"] == 0
    study = optuna.load_study(study_name="dg-epsilon-test", storage=open_storage(None).storage)
    done = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(done) == 16 and len({t.user_attrs["repro.cell_key"] for t in done}) == 16
    reused = {t.user_attrs["repro.cell_key"] for t in done if t.user_attrs["repro.reused"]}
    assert reused == set(before)                                     # repro run's cells, not recomputed
    after = {c["key"]: c for c in results.read_cells("fig12_3", "test")}
    assert all(after[k]["finished_at"] == before[k] for k in before) and len(after) == 16
    for t in done:                                                   # each trial is its cell's value
        assert t.values[0] == after[t.user_attrs["repro.cell_key"]]["values"]["fd_evalnet"]
    # Tracking: one parent run for the invocation, a child per trial with the study and trial number.
    client = MlflowClient()
    parent = client.get_run(s.mlflow_run_id)
    assert parent.data.tags["repro.sweep"] == "dg-epsilon" and parent.info.status == "FINISHED"
    assert {a.path for a in client.list_artifacts(s.mlflow_run_id, "sweep")} >= {"sweep/best.json", "sweep/trials.json"}
    for t in done:
        child = client.get_run(t.user_attrs["mlflow_run_id"])
        assert child.data.tags["mlflow.parentRunId"] == s.mlflow_run_id
        assert (child.data.tags["repro.study"], child.data.tags["repro.trial"]) == ("dg-epsilon-test", str(t.number))
    best = json.loads((s.artifacts_dir / "best.json").read_text())["best"][0]
    assert best["number"] == study.best_trial.number
    # Running it again computes nothing and starts no MLflow run.
    again = run_sweep("dg-epsilon", "test", device="cpu", echo=lambda m: None)
    assert again.mlflow_run_id is None and len(study.get_trials()) == 16
    # Refine b around the best, w_DG_1st fixed at the best's.
    r = run_sweep("dg-epsilon", "test", refine=True, device="cpu", echo=lambda m: None)
    refine = optuna.load_study(study_name="dg-epsilon-test-refine", storage=open_storage(None).storage)
    rt = refine.get_trials(states=(TrialState.COMPLETE,))
    assert r.progress["finished"] == 8 <= len(rt) and len(rt) == 8
    w_best, b_best = study.best_trial.params["w_dg"], study.best_trial.params["eps_scale"]
    assert all(t.params["w_dg"] == w_best and 0.95 - 0.05 - 1e-9 <= t.params["eps_scale"] <= b_best + 0.05 + 1e-9
               for t in rt)
    lines = "\n".join(status_lines("dg-epsilon", "test", None, None))
    assert "finished 16/16 grid points" in lines and "remaining 0" in lines and f"trial {study.best_trial.number}" in lines
    paths = render_sweep_report("dg-epsilon")
    names = {p.name for p in paths}
    assert {"sweep-dg-epsilon.md", "sweep-dg-epsilon_test_grid.png", "sweep-dg-epsilon_test_history.png",
            "sweep-dg-epsilon_test_refine_history.png"} <= names
    md = paths[0].read_text()
    assert "1.0004" in md and "1.004" in md and "16 finished trials (4 reused" in md
    assert default_journal().is_file()


def test_s0_front_finds_a_pareto_front_and_reports_it_beside_the_published_curve(workdir):
    """Two objectives (fd_evalnet down, mIoU up) over s0 and snr of table5_3, NSGA-II, 4 trials at test."""
    from repro.sweeps.report import render_sweep_report
    from repro.sweeps.runner import run_sweep
    from repro.sweeps.spec import resolve_sweep

    rs = resolve_sweep("s0-front", "test")
    assert rs.cell({"s0": 0.002, "snr": 0.1}) == {"s0": 0.002}           # the cell `repro run table5_3` makes
    assert rs.cell({"s0": 0.002, "snr": 0.2}) == {"s0": 0.002, "snr": 0.2}
    s = run_sweep("s0-front", "test", device="cpu", echo=lambda m: None)
    assert s.progress["finished"] == 4
    front = json.loads((s.artifacts_dir / "pareto.json").read_text())["pareto_front"]
    trials = json.loads((s.artifacts_dir / "trials.json").read_text())
    point = [(t["values"]["fd_evalnet"], -t["values"]["miou"]) for t in trials]   # both minimised

    def dominated(p):
        return any(q[0] <= p[0] and q[1] <= p[1] and q != p for q in point)

    on_front = {t["number"] for t in front}
    assert on_front and all(not dominated(point[n]) for n in on_front)
    assert all(dominated(point[t["number"]]) or point[t["number"]] in {point[n] for n in on_front}
               for t in trials if t["number"] not in on_front)
    assert all(0.0 <= t["params"]["s0"] <= 0.004 and t["params"]["snr"] in (0.05, 0.075, 0.1, 0.15, 0.2) for t in trials)
    names = {p.name for p in render_sweep_report("s0-front")}
    assert {"sweep-s0-front_test_pareto.png", "sweep-s0-front_test_params.png"} <= names


def test_ui_optuna_serves_the_dashboard_on_localhost_over_the_journal(tmp_path):
    import socket
    import time
    import urllib.request

    import optuna

    from repro.sweeps.storage import open_storage

    journal = tmp_path / "studies.journal"
    optuna.create_study(study_name="seen-by-the-dashboard", storage=open_storage(str(journal)).storage)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "repro.cli", "ui", "--optuna", "--storage", str(journal),
                             "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        body, deadline = None, time.monotonic() + 120
        while body is None and time.monotonic() < deadline and proc.poll() is None:
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=5).read().decode()
            except OSError:
                time.sleep(0.5)
        assert body is not None and "seen-by-the-dashboard" in body, proc.poll()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
