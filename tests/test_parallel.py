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
from repro.tracking.runs import Tracker
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
    from repro.tracking.runs import iter_runs

    assert {r.info.run_id for r in iter_runs("race")} == ids


def test_store_lock_is_one_per_store(tmp_path, monkeypatch):
    from repro.tracking.store import lock_path, sqlite_path

    uri = f"sqlite:///{tmp_path}/sub/mlflow.db"
    assert sqlite_path(uri) == tmp_path / "sub" / "mlflow.db"
    monkeypatch.chdir(tmp_path)
    assert lock_path(uri) == lock_path("sqlite:///sub/mlflow.db")   # relative and absolute: one store
    assert lock_path(uri) != lock_path(f"sqlite:///{tmp_path}/other.db")
    assert sqlite_path("postgresql://u@h/db") is None
    assert lock_path("postgresql://u@h/db") != lock_path("postgresql://u@h/other")
    assert not any(tmp_path.rglob("*.lock"))


# ----------------------------------------------------------------------------- sharding units

def test_shards_cover_every_unit_once_for_any_world_size():
    from repro.engine.ranks import shard_indices

    for n in (0, 1, 5, 12):
        for world in (1, 2, 3, 8):
            shares = [shard_indices(n, r, world) for r in range(world)]
            assert sorted(i for s in shares for i in s) == list(range(n))
            assert max(map(len, shares)) - min(map(len, shares)) <= 1


def test_gather_in_one_process_orders_units_and_checks_them():
    from repro.engine.ranks import gather_units

    assert gather_units({2: "c", 0: "a", 1: "b"}, 3) == ["a", "b", "c"]
    with pytest.raises(RuntimeError, match="missing"):
        gather_units({0: "a", 2: "c"}, 3)


def test_launcher_runs_one_worker_here_and_reports_the_others_exit_codes(tmp_path):
    from repro.launchers.cells import claim
    from repro.launchers.processes import launch

    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    good.write_text('{"a": 1}')
    bad.write_text("{not json")
    out = launch("json.tool", [str(good), str(bad)], in_process=lambda: 42)
    assert (out.result, out.error, out.codes) == (42, None, [0, 1])
    failing = launch("json.tool", [str(good)], in_process=lambda: 1 / 0)
    assert isinstance(failing.error, ZeroDivisionError) and failing.codes == [0]
    assert claim(tmp_path, "k") and not claim(tmp_path, "k") and claim(tmp_path, "other")


# ----------------------------------------------------------------------------- torchrun (gloo) vs one process

SPEC = "fig12_3"
# 8 batches of 4 per cell: both ranks sample, and a 2-rank cell is long enough to be killed after.
SETS = ["--set", "fixed.n_samples=32", "--set", "fixed.batch_size=4"]


def _env(root: Path, results: str) -> dict[str, str]:
    env = cli_env(root) | {"REPRO_ARTIFACTS": str(root / "artifacts"), "REPRO_RESULTS": str(root / results),
                           "MLFLOW_TRACKING_URI": f"sqlite:///{root / results}.db",
                           # the same thread count in both runs (float reductions depend on it)
                           "REPRO_THREADS": "1", "OMP_NUM_THREADS": "1"}
    env.pop("RANK", None), env.pop("WORLD_SIZE", None)
    return env


def _repro(ranks: int = 1) -> list[str]:
    head = ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(ranks), "-m"]
            if ranks > 1 else [sys.executable, "-m"])
    return head + ["repro.cli", "run", SPEC, "--profile", "test", "--device", "cpu", "--no-progress", "--yes", *SETS]


def _cells(root: Path, results: str) -> dict[str, dict]:
    folder = root / results / SPEC / "test" / "cells"
    return {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}


def _images(root: Path, results: str) -> dict[str, bytes]:
    folder = root / results / SPEC / "test" / "artifacts"
    return {p.parent.name: p.read_bytes() for p in sorted(folder.glob("*/samples.png"))}


def _runs(root: Path, results: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{root / results}.db")
    exp = client.get_experiment_by_name(SPEC)
    return client.search_runs([exp.experiment_id], max_results=1000) if exp else []


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    """The spec at `test` in one process (training its models into the shared artifacts/)."""
    root = tmp_path_factory.mktemp("parallel")
    out = subprocess.run(_repro(), cwd=root, env=_env(root, "single"), capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert len(_cells(root, "single")) == 4
    return root


def _strip(rec: dict) -> dict:
    """What a cell computed (not when, how long, which run recorded it)."""
    extra = {k: v for k, v in rec["extra"].items() if k != "sampling_seconds"}
    return {"cell": rec["cell"], "values": rec["values"], "extra": extra, "spec_hash": rec["spec_hash"]}


@pytest.mark.slow
def test_two_gloo_ranks_give_the_cells_of_one_process(one_process):
    """torchrun --nproc_per_node 2 (gloo): each rank samples every other batch, rank 0 gathers;
    byte-identical cell values and sample images, one parent MLflow run (rank 0's) with 4 children."""
    root = one_process
    out = subprocess.run(_repro(2), cwd=root, env=_env(root, "ranks"), capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    single, ranks = _cells(root, "single"), _cells(root, "ranks")
    assert set(single) == set(ranks) and len(ranks) == 4
    for key in single:
        assert _strip(ranks[key]) == _strip(single[key]), key
        assert json.dumps(ranks[key]["values"]) == json.dumps(single[key]["values"])   # to the last digit
    assert _images(root, "ranks") == _images(root, "single") and len(_images(root, "single")) == 4
    runs = _runs(root, "ranks")
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1 and parents[0].data.tags["repro.world_size"] == "2"
    assert sorted(r.data.tags["repro.cell"] for r in runs if r not in parents) == sorted(single)
    assert out.stdout.count(f"{SPEC} [test]: 4 cells") == 1   # rank 0 speaks for both


@pytest.mark.slow
def test_killed_two_rank_run_resumes(one_process):
    """SIGKILL the torchrun group after its first cell file; the rerun computes only the rest and
    every cell equals the one-process run's."""
    import signal

    root = one_process
    proc = subprocess.Popen(_repro(2), cwd=root, env=_env(root, "killed"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while not _cells(root, "killed") and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    # torchrun starts its workers in sessions of their own: kill the whole tree, workers first
    import psutil

    tree = psutil.Process(proc.pid).children(recursive=True)
    for p in tree:
        p.send_signal(signal.SIGKILL)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    psutil.wait_procs(tree, timeout=30)
    before = _cells(root, "killed")
    assert 1 <= len(before) < 4, "the kill must land between the first and the last cell"
    out = subprocess.run(_repro(2), cwd=root, env=_env(root, "killed"), capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert f"({4 - len(before)} run, {len(before)} already finished)" in out.stdout
    after, single = _cells(root, "killed"), _cells(root, "single")
    assert set(after) == set(single)
    for key, rec in before.items():
        assert after[key]["finished_at"] == rec["finished_at"]   # kept, not recomputed
    for key in single:
        assert _strip(after[key]) == _strip(single[key]), key


# ----------------------------------------------------------------------------- --jobs vs serial

@pytest.mark.slow
def test_jobs_2_gives_the_cells_of_a_serial_run_under_one_parent_run(one_process):
    root = one_process
    env = _env(root, "jobs")
    cmd = _repro() + ["--jobs", "2"]
    out = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    single, jobs = _cells(root, "single"), _cells(root, "jobs")
    assert set(jobs) == set(single)
    for key in single:
        assert _strip(jobs[key]) == _strip(single[key]), key
    runs = _runs(root, "jobs")
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1 and parents[0].data.tags["repro.jobs"] == "2"
    children = [r for r in runs if r not in parents]
    assert sorted(r.data.tags["repro.cell"] for r in children) == sorted(single)
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parents[0].info.run_id}
    assert {r.data.tags["repro.job"] for r in children} <= {"0", "1"}
    assert all(r.info.status == "FINISHED" for r in runs)


def test_worker_devices_threads_and_kinds_that_stay_serial(monkeypatch):
    import torch

    from repro.errors import UserError
    from repro.experiments import runner_module
    from repro.launchers.cells import runs_cells_in_parallel, threads_per_job, worker_devices

    assert worker_devices(None, "cpu, cpu", "auto") == ["cpu", "cpu"]
    assert worker_devices(3, "cpu", "auto") == ["cpu"] * 3
    assert worker_devices(2, None, "cpu") == ["cpu", "cpu"]
    with pytest.raises(UserError, match="--jobs 0"):
        worker_devices(0, None, "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="CUDA is not available"):
            worker_devices(None, "cuda:0,cuda:1", "auto")
    assert threads_per_job(2, 3) == 3   # --threads wins
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    monkeypatch.setenv("REPRO_THREADS", "2")
    assert threads_per_job(2, None) == 2 and threads_per_job(8, None) == 1   # the setting, or the cores shared
    monkeypatch.delenv("REPRO_THREADS")
    assert threads_per_job(2, None) == 4
    assert not runs_cells_in_parallel(runner_module("amp_benchmark"))
    assert runs_cells_in_parallel(runner_module("dg_epsilon_grid"))


def test_a_dead_invocations_claim_folder_is_removed_a_live_ones_kept(tmp_path):
    import psutil

    from repro.launchers.cells import CLAIMS_PREFIX, remove_leftovers

    dead = max(psutil.pids()) + 100_000   # no process has this id
    (tmp_path / f"{CLAIMS_PREFIX}{dead}-abc").mkdir()
    (tmp_path / f"{CLAIMS_PREFIX}{os.getpid()}-def").mkdir()
    remove_leftovers(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [f"{CLAIMS_PREFIX}{os.getpid()}-def"]


@pytest.mark.slow
def test_a_runner_that_does_not_shard_runs_on_rank_0_under_torchrun(workdir):
    """sec5_2_2 (noise_encoding_comparison) asks for its model inside each cell: under torchrun both
    ranks train the models (DDP) first, then rank 0 alone computes and records the cells."""
    env = cli_env(workdir) | {"REPRO_THREADS": "1", "OMP_NUM_THREADS": "1"}
    env.pop("RANK", None), env.pop("WORLD_SIZE", None)
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          "-m", "repro.cli", "run", "sec5_2_2", "--profile", "test", "--device", "cpu",
                          "--no-progress", "--yes"], cwd=workdir, env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    cells = sorted(p.stem for p in (workdir / "results/sec5_2_2/test/cells").glob("*.json"))
    assert cells == ["encoding=log_sigma", "encoding=t"]
    from repro.tracking.runs import iter_runs

    runs = list(iter_runs("sec5_2_2"))
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1 and parents[0].data.tags["repro.world_size"] == "2"
    assert sorted(r.data.tags["repro.cell"] for r in runs if r not in parents) == cells


@pytest.mark.slow
def test_issue_command_in_a_fresh_directory(workdir):
    """Issue 16 as reported: `torchrun --nproc_per_node 2 -m repro.cli run fig12_3 --profile test` in a
    fresh directory (fresh mlflow.db, no models): the ranks train the three models together (DDP),
    rank 0 writes each once, and the run finishes with one parent run and its four cells."""
    env = cli_env(workdir) | {"REPRO_THREADS": "1"}
    env.pop("RANK", None), env.pop("WORLD_SIZE", None)
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "repro.cli",
                          "run", "fig12_3", "--profile", "test", "--yes", "--no-progress"], cwd=workdir, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "fig12_3 [test]: 4 cells (4 run, 0 already finished)" in out.stdout
    from repro.tracking.runs import iter_runs

    for model in ("edm_digits", "discriminator_digits", "evaluator_digits"):
        (folder,) = list((workdir / "artifacts" / model).iterdir())
        assert (folder / "meta.json").exists()
        assert [r.info.status for r in iter_runs(f"train-{model}")] == ["FINISHED"]
    runs = list(iter_runs("fig12_3"))
    assert len([r for r in runs if "mlflow.parentRunId" not in r.data.tags]) == 1 and len(runs) == 5


@pytest.mark.slow
def test_score_sampling_cells_shard_over_two_gloo_ranks(workdir):
    """milstein_study (sampler_comparison; snr_sweep shares its sampling) at `test` with 3 batches
    per sampling run: 2 gloo ranks (batches 0 and 2 on rank 0, batch 1 on rank 1) give the numbers
    of one process to the last digit, the Milstein cell's comparison with Euler-Maruyama on run 0's
    batch 0 included, and the same sample images. Timing fields aside."""
    spec = "milstein_study"
    timing = {"seconds", "seconds_runs", "ms_per_sample"}

    def run(ranks: int, results: str):
        env = _env(workdir, results)
        head = ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(ranks), "-m"]
                if ranks > 1 else [sys.executable, "-m"])
        out = subprocess.run(head + ["repro.cli", "run", spec, "--profile", "test", "--device", "cpu", "--no-progress",
                                     "--yes", "--set", "fixed.batch_size=4"],
                             cwd=workdir, env=env, capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        folder = workdir / results / spec / "test"
        cells = {p.stem: json.loads(p.read_text()) for p in sorted((folder / "cells").glob("*.json"))}
        images = {p.parent.name: p.read_bytes() for p in sorted((folder / "artifacts").glob("*/*.png"))}
        return {k: ({m: v for m, v in c["values"].items() if m not in timing},
                    {m: v for m, v in c["extra"].items() if m not in timing}) for k, c in cells.items()}, images

    single, single_images = run(1, "single")
    ranks, rank_images = run(2, "ranks")
    assert len(single) == 4 and "solver=milstein" in single
    assert json.dumps(ranks, sort_keys=True) == json.dumps(single, sort_keys=True)
    assert rank_images == single_images and single_images
    # the Milstein-vs-EM comparison was made on the gathered batch 0 and has its known answer: the VE
    # SDE's g(t) does not depend on x, so g' = 0 and Milstein takes Euler-Maruyama's steps bit for bit
    assert single["solver=milstein"][0]["max_abs_diff_vs_em"] == 0.0


def test_a_process_killed_while_creating_a_fresh_store_leaves_no_half_made_store(tmp_path):
    """SIGKILL after the schema is built in the temporary file, before the rename (the moment a
    start-up kill used to leave a half-migrated mlflow.db that the next run failed on): no
    mlflow.db, only the dead creator's temporary file; the next process removes it and creates the
    store whole."""
    code = ("from repro.tracking.store import prepare_store; prepare_store(); "
            "from mlflow.tracking import MlflowClient; print(len(MlflowClient().search_experiments()))")
    env = cli_env(tmp_path) | {"REPRO_TEST_KILL_AT": "write:mlflow.db"}
    killed = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert not (tmp_path / "mlflow.db").exists()
    assert len(list(tmp_path.glob(".mlflow.db.*.tmp"))) == 1
    env.pop("REPRO_TEST_KILL_AT")
    again = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.split()[-1] == "1"   # the Default experiment: a complete store
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlflow.db"]
