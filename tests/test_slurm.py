"""`repro run --launcher slurm | submitit-local` (repro.launchers.slurm): a spec's cells as a job array.

submitit-local runs everywhere. The SLURM tests start a real one-node cluster of Debian's `slurm-wlm`
(munged, slurmctld and slurmd on 127.0.0.1 as root, configured in a temporary folder; `make slurm`
installs the packages as root, as on CI) and skip, saying why, where it cannot be had. Every test
compares the cells with those of a plain `repro run` (one process, the same thread count): the same
values, seeds and model weights, whichever task computed a cell and however often it was started.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import cli_env
from tests.test_sweep_workers import models  # noqa: F401  (fig12_3's models, trained once)

pytestmark = pytest.mark.slow

SPEC, KEYS = "fig5_9", ["t=0", "t=0.4", "t=0.8", "t=1"]
RUN = [sys.executable, "-m", "repro.cli", "run", SPEC, "--profile", "test", "--no-progress", "--device", "cpu"]
SAME = ("values", "seed", "spec_hash", "cell")   # what a cell computed (not its time, device or run id)


def cells(root: Path) -> dict[str, dict]:
    out = {}
    for p in sorted((root / "results" / SPEC / "test" / "cells").glob("*.json")):
        r = json.loads(p.read_text())
        out[p.stem] = {k: r.get(k) for k in SAME} | {"model": r["extra"].get("model_sha256", r["extra"].get("model_hash"))}
    return out


def run(root: Path, *extra: str, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    root.mkdir(parents=True, exist_ok=True)
    return subprocess.run([*RUN, *extra], cwd=root, env={**cli_env(root), **(env or {})}, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[str, dict]:
    """The cells of a plain one-process `repro run`."""
    root = tmp_path_factory.mktemp("reference")
    p = run(root)
    assert p.returncode == 0, p.stderr[-3000:]
    got = cells(root)
    assert sorted(got) == KEYS
    return got


def test_submitit_local_array_computes_the_same_cells(tmp_path, reference):
    p = run(tmp_path, "--launcher", "submitit-local", "--workers", "2")
    assert p.returncode == 0, p.stderr[-3000:]
    assert "2 job(s) submitted (submitit-local" in p.stderr and "4 cells (4 run, 0 already finished)" in p.stdout
    assert cells(tmp_path) == reference
    assert not list((tmp_path / "results" / SPEC / "test").glob(".claims-*"))   # the claim folder is gone
    p = run(tmp_path, "--launcher", "submitit-local", "--workers", "2")           # nothing left: nothing submitted
    assert p.returncode == 0 and "(0 run, 4 already finished)" in p.stdout and "submitted" not in p.stderr


def test_a_requeued_task_takes_back_its_own_claims(tmp_path):
    from repro.launchers.cells import claim

    assert claim(tmp_path, "t=0", "1")            # task 1 claims the cell
    assert not claim(tmp_path, "t=0", "0")        # task 0 does not get it
    assert claim(tmp_path, "t=0", "1")            # task 1, requeued, takes it back
    assert claim(tmp_path, "t=0.4", "")           # without an owner (no requeue): the first claim only
    assert not claim(tmp_path, "t=0.4", "")


# ---------------------------------------------------------------------------------- a real SLURM

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(check, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.3)
    pytest.fail(f"{what} within {seconds:g} s")


@pytest.fixture(scope="module")
def slurm():
    """A one-node SLURM cluster on 127.0.0.1 for this module: the environment its commands need."""
    missing = [c for c in ("munged", "slurmctld", "slurmd", "sbatch", "scontrol") if shutil.which(c) is None
               and not Path(f"/usr/sbin/{c}").exists()]
    if missing:
        pytest.skip(f"SLURM not installed ({', '.join(missing)} missing; Debian packages slurm-wlm and munge, "
                    f"`make slurm` installs them as root)")
    if os.geteuid() != 0:
        pytest.skip("starting slurmctld/slurmd needs root (as on CI)")
    folder = Path(tempfile.mkdtemp(prefix="repro-slurm-"))
    host = platform.node()
    conf = folder / "slurm.conf"
    conf.write_text("\n".join([
        "ClusterName=repro", f"SlurmctldHost={host}(127.0.0.1)", "SlurmUser=root", "SlurmdUser=root",
        "AuthType=auth/munge", "CredType=cred/munge", "MpiDefault=none",
        f"StateSaveLocation={folder}/state", f"SlurmdSpoolDir={folder}/spool",
        f"SlurmctldPidFile={folder}/slurmctld.pid", f"SlurmdPidFile={folder}/slurmd.pid",
        f"SlurmctldLogFile={folder}/slurmctld.log", f"SlurmdLogFile={folder}/slurmd.log",
        "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none", "SchedulerType=sched/builtin",
        "SelectType=select/cons_tres", "SelectTypeParameters=CR_CPU", "ReturnToService=2",
        f"SlurmctldPort={_free_port()}", f"SlurmdPort={_free_port()}",
        f"NodeName={host} NodeAddr=127.0.0.1 CPUs={os.cpu_count() or 1} RealMemory=2000 State=UNKNOWN",
        "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP", ""]))
    for sub in ("state", "spool"):
        (folder / sub).mkdir()
    env = {**os.environ, "SLURM_CONF": str(conf)}
    if subprocess.run(["munge", "-n"], capture_output=True).returncode != 0:   # no munged yet: start one
        Path("/run/munge").mkdir(parents=True, exist_ok=True)
        shutil.chown("/run/munge", "munge", "munge")
        started = subprocess.run(["runuser", "-u", "munge", "--", "/usr/sbin/munged"], capture_output=True, text=True)
        if started.returncode != 0:
            pytest.skip(f"munged does not start: {started.stderr.strip()[:200]}")
    daemons = []
    try:
        for daemon in ("slurmctld", "slurmd"):
            subprocess.run([f"/usr/sbin/{daemon}"], env=env, check=True, capture_output=True)
        daemons = [int((folder / f"{d}.pid").read_text()) for d in ("slurmctld", "slurmd")
                   if (folder / f"{d}.pid").exists()]
        _wait_for(lambda: "idle" in subprocess.run(["sinfo", "-h", "-o", "%t"], env=env, capture_output=True,
                                                   text=True).stdout, 60, "the SLURM node is not idle")
        yield {"SLURM_CONF": str(conf)}
    finally:
        subprocess.run(["scontrol", "shutdown"], env=env, capture_output=True)
        for pid in daemons:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(folder, ignore_errors=True)


def _job_of(root: Path) -> str | None:
    jobs = root / "results" / ".jobs" / f"{SPEC}.test"
    found = sorted(p.name for p in jobs.iterdir() if p.name[:1].isdigit()) if jobs.is_dir() else []
    return found[0].split("_")[0] if found else None


def test_slurm_array_computes_the_same_cells(tmp_path, reference, slurm):
    p = run(tmp_path, "--launcher", "slurm", "--workers", "2", "--time", "5", env=slurm)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "2 job(s) submitted (slurm, job " in p.stderr and "4 cells (4 run, 0 already finished)" in p.stdout
    assert cells(tmp_path) == reference


def test_a_requeued_job_resumes_and_a_killed_one_is_submitted_again(tmp_path, reference, slurm):
    # one task; requeued by SLURM (what preemption does) once its first cell is written: it starts again,
    # skips that cell and computes the rest. Then a run whose task is SIGKILLed mid-way (a node lost;
    # on this one-node cluster scancel's signals do not reach the task: proctrack/linuxproc) exits 1
    # naming the job, and the same command again submits only the cells that are left.
    env = {**cli_env(tmp_path), **slurm, "REPRO_TEST_SLEEP_AT": "cell:done=2"}   # a window after each cell
    proc = subprocess.Popen([*RUN, "--launcher", "slurm", "--time", "5"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    done = tmp_path / "results" / SPEC / "test" / "cells"
    _wait_for(lambda: len(list(done.glob("*.json"))) >= 1, 300, "no cell was written")
    requeued = subprocess.run(["scontrol", "requeue", _job_of(tmp_path)], env=env, capture_output=True, text=True)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    assert requeued.returncode == 0, requeued.stderr            # it was running: SLURM requeued it
    assert "4 cells (4 run, 0 already finished)" in out         # the submitter waited through the requeue
    assert cells(tmp_path) == reference

    second = tmp_path / "second"
    second.mkdir()
    env = {**cli_env(second), **slurm, "REPRO_TEST_SLEEP_AT": "cell:done=2"}
    proc = subprocess.Popen([*RUN, "--launcher", "slurm", "--time", "5"], cwd=second, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    done = second / "results" / SPEC / "test" / "cells"
    _wait_for(lambda: len(list(done.glob("*.json"))) >= 1, 300, "no cell was written")
    job = _job_of(second)
    folder = str(second / "results" / ".jobs")
    assert subprocess.run(["pkill", "-KILL", "-f", f"submitit.core._submit {folder}"]).returncode == 0
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 1 and f"job {job}" in err and "failed (it left the queue without a result" in err
    assert "run the same command again" in err
    kept = len(list(done.glob("*.json")))
    env.pop("REPRO_TEST_SLEEP_AT")
    p = subprocess.run([*RUN, "--launcher", "slurm", "--time", "5"], cwd=second, env=env, capture_output=True,
                       text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    assert f"({4 - kept} run, {kept} already finished)" in p.stdout
    assert cells(second) == reference


def _sweep(root: Path, artifacts: Path, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
    from tests.test_sweep_workers import _env

    root.mkdir(parents=True, exist_ok=True)
    return subprocess.run([sys.executable, "-m", "repro.cli", "sweep", "dg-epsilon", "--profile", "test",
                           "--device", "cpu", *extra], cwd=root, env={**_env(root, artifacts), **(env or {})},
                          capture_output=True, text=True, timeout=900)


@pytest.mark.parametrize("launcher", ["submitit-local", "slurm"])
def test_sweep_workers_as_a_job_array_complete_every_point_once(launcher, tmp_path, models, request):
    # `repro sweep --launcher`: the workers are array tasks on one study; every grid point ends with one
    # COMPLETE trial whose values equal a one-process sweep's
    from tests.test_sweep_workers import _trials

    env = request.getfixturevalue("slurm") if launcher == "slurm" else {}
    one = _sweep(tmp_path / "one", models)
    assert one.returncode == 0, one.stderr[-3000:]
    p = _sweep(tmp_path / "array", models, "--launcher", launcher, "--workers", "2", env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    assert f"2 job(s) submitted ({launcher}, job " in p.stderr
    journal = lambda root: root / "results" / "sweeps" / "optuna.journal"  # noqa: E731
    done = lambda root: {str(sorted(t.params.items())): t.values  # noqa: E731
                         for t in _trials(journal(root)) if t.state.name == "COMPLETE"}
    complete = [t for t in _trials(journal(tmp_path / "array")) if t.state.name == "COMPLETE"]
    assert len(complete) == len(done(tmp_path / "array")) == len(done(tmp_path / "one"))   # one per point
    assert done(tmp_path / "array") == done(tmp_path / "one")
