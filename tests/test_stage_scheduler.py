"""Independent DVC stages side by side (repro.launchers.dvc_stages, `repro dvc-repro`)."""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from repro.launchers.dvc_stages import (chain_seconds, downstream_closure, run_schedule, stage_graph,
                                   upstream_closure)

# A pipeline of the suite's shape: code -> two trainings (one learning from the other) -> specs -> reports.
STAGES = {
    "code": {"deps": ["repro"], "outs": [{"fingerprints": {"cache": False}}]},
    "train_a": {"deps": ["fingerprints/train_a.txt"], "outs": ["artifacts/a"]},
    "train_b": {"deps": ["fingerprints/train_b.txt", "artifacts/a"], "outs": ["artifacts/b"]},
    "train_c": {"deps": ["fingerprints/train_c.txt"], "outs": ["artifacts/c"]},
    "spec_x": {"deps": ["artifacts/a", "artifacts/b"], "outs": ["results/spec_x/${profile}"],
               "metrics": [{"metrics/spec_x.json": {"cache": False}}]},
    "spec_y": {"deps": ["artifacts/c"], "outs": ["results/spec_y/${profile}"]},
    "reports": {"deps": ["results/spec_x/${profile}", "results/spec_y/${profile}"], "outs": ["reports"]},
}


def test_graph_links_a_dep_to_the_stage_whose_output_holds_it():
    up = stage_graph(STAGES, "smoke")
    assert up == {"code": set(), "train_a": {"code"}, "train_b": {"code", "train_a"}, "train_c": {"code"},
                  "spec_x": {"train_a", "train_b"}, "spec_y": {"train_c"}, "reports": {"spec_x", "spec_y"}}
    # ${profile} is resolved: a dep on another profile's results is not this stage's output.
    assert stage_graph({"s": {"outs": ["results/x/${profile}"]}, "r": {"deps": ["results/x/test"]}},
                       "smoke")["r"] == set()
    assert downstream_closure(up, ["train_c"]) == {"train_c", "spec_y", "reports"}
    assert upstream_closure(up, ["spec_x"]) == {"spec_x", "train_a", "train_b", "code"}


def test_chain_seconds_is_own_time_plus_longest_chain_below():
    up = stage_graph(STAGES, "smoke")
    w = {"code": 1, "train_a": 10, "train_b": 5, "train_c": 30, "spec_x": 7, "spec_y": 2, "reports": 3}
    c = chain_seconds(up, w)
    assert c["reports"] == 3 and c["spec_x"] == 10 and c["train_b"] == 15 and c["train_a"] == 25
    assert c["train_c"] == 35 and c["code"] == 36   # code -> train_c -> spec_y -> reports


def _fake_runner(seconds: dict[str, float], fail: set[str] = frozenset()):
    log: list[tuple[str, str, float]] = []
    lock = threading.Lock()

    def run(stage: str) -> int:
        with lock:
            log.append(("start", stage, time.perf_counter()))
        time.sleep(seconds.get(stage, 0.05))
        with lock:
            log.append(("end", stage, time.perf_counter()))
        return 1 if stage in fail else 0
    return run, log


def test_schedule_respects_dependencies_and_the_job_limit():
    up = stage_graph(STAGES, "smoke")
    run, log = _fake_runner({"train_a": 0.3, "train_c": 0.1})
    sched = run_schedule(up, set(STAGES), run, jobs=2)
    assert not sched.failed and not sched.not_started
    assert sorted(o.stage for o in sched.finished) == sorted(STAGES)
    t = {(kind, s): when for kind, s, when in log}
    for s, ups in up.items():
        for u in ups:
            assert t[("end", u)] <= t[("start", s)], f"{s} started before {u} ended"
    running = peak = 0
    for kind, _, _ in sorted(log, key=lambda e: e[2]):
        running += 1 if kind == "start" else -1
        peak = max(peak, running)
    assert peak == 2   # train_a beside train_c, and spec_y beside train_b
    assert t[("start", "train_c")] < t[("end", "train_a")]


def test_schedule_with_one_job_is_serial_and_starts_the_longest_chain_first():
    up = stage_graph(STAGES, "smoke")
    run, log = _fake_runner({})
    weights = {s: 1.0 for s in STAGES} | {"train_c": 100.0}   # holds up the most: before train_a
    run_schedule(up, set(STAGES), run, jobs=1, weights=weights)
    starts = [s for kind, s, _ in log if kind == "start"]
    ends = [s for kind, s, _ in log if kind == "end"]
    assert starts == ends   # one at a time
    assert starts[:2] == ["code", "train_c"]


def test_stages_outside_todo_count_as_done():
    up = stage_graph(STAGES, "smoke")
    run, log = _fake_runner({})
    sched = run_schedule(up, {"spec_y", "reports"}, run, jobs=2)
    assert [o.stage for o in sched.finished] == ["spec_y", "reports"]


def test_a_failure_stops_new_stages_and_lets_running_ones_finish():
    up = stage_graph(STAGES, "smoke")
    run, log = _fake_runner({"train_a": 0.05, "train_c": 0.4}, fail={"train_a"})
    sched = run_schedule(up, set(STAGES), run, jobs=2)
    assert [o.stage for o in sched.failed] == ["train_a"]
    finished = {o.stage for o in sched.finished}
    assert "train_c" in finished   # was running beside the failure: finished, not abandoned
    assert set(sched.not_started) == {"train_b", "spec_x", "spec_y", "reports"}


def test_a_runner_that_raises_is_a_failed_stage():
    def run(stage: str) -> int:
        raise OSError("no dvc")
    sched = run_schedule({"a": set(), "b": {"a"}}, {"a", "b"}, run, jobs=2)
    assert [o.stage for o in sched.failed] == ["a"] and sched.not_started == ["b"]


def test_jobs_below_one_is_refused():
    with pytest.raises(ValueError):
        run_schedule({"a": set()}, {"a"}, lambda s: 0, jobs=0)


@pytest.mark.parametrize("args, message", [
    (["dvc-repro", "--jobs", "0"], "--jobs 0: must be at least 1"),
    (["dvc-repro", "no_such_stage"], "unknown stage 'no_such_stage'"),
])
def test_dvc_repro_bad_input_exits_2_with_one_line(workdir, args, message):
    from tests.conftest import cli_env
    from repro.specs import repo_root

    out = subprocess.run([sys.executable, "-m", "repro.cli", *args], cwd=repo_root(), env=cli_env(workdir),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stdout + out.stderr
    assert message in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr


def _cells(repo: Path, spec: str) -> dict:
    return {json.loads(p.read_text())["key"]: json.loads(p.read_text())["values"]
            for p in sorted((repo / f"results/{spec}/test/cells").glob("*.json"))}


@pytest.mark.slow
def test_stages_side_by_side_give_the_serial_results(workdir):
    """Two copies of the repository at the test profile: `repro dvc-repro --jobs 2` in one (the two
    trainings side by side, then the two specs), `dvc repro` in the other. Same cells, same model
    bytes; afterwards `dvc repro` has nothing to do and `dvc status` is clean."""
    from repro.commands.pipeline import render_dvc_yaml, render_params
    from tests.test_dvc_changes import copy_repo as _copy_repo, dvc as _dvc, dvc_env as _dvc_env

    targets = ["fig5_9", "sec5_2_2"]   # train_noisy_unet -> fig5_9; + train_noisy_unet_t -> sec5_2_2
    repos = {}
    for name in ("parallel", "serial"):
        repo = repos[name] = workdir / name
        _copy_repo(repo)
        (repo / "params.yaml").write_text(render_params("test"))
        (repo / "dvc.yaml").write_text(render_dvc_yaml("test"))
        for cmd in (["git", "init", "-q"], ["git", "add", "-A"],
                    ["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "x"]):
            subprocess.run(cmd, cwd=repo, check=True, env=_dvc_env(repo), capture_output=True)
    par = repos["parallel"]
    out = subprocess.run([sys.executable, "-m", "repro.cli", "dvc-repro", *targets, "--jobs", "2"], cwd=par,
                         env=_dvc_env(par) | {"REPRO_THREADS": "1"}, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout + out.stderr
    events = [line.split()[3:5] for line in out.stdout.splitlines() if line.startswith("[")]
    order = [f"{kind} {stage}" for kind, stage in events]
    # Both trainings started before either finished: they ran side by side (after `code`, which
    # hashes the code and has never run in this copy).
    first_done = next(i for i, e in enumerate(order) if e.startswith("done train_"))
    assert {"start train_noisy_unet", "start train_noisy_unet_t"} <= set(order[:first_done]), out.stdout
    summary = json.loads((par / "logs/pipeline/summary.json").read_text())
    assert {"train_noisy_unet", "train_noisy_unet_t", "fig5_9", "sec5_2_2"} <= set(summary["stage_seconds"])
    assert summary["failed"] == [] and summary["jobs"] == 2
    again = _dvc(par, "repro", *targets, timeout=300)
    assert "Running stage" not in again.stdout, again.stdout
    assert json.loads(_dvc(par, "status", "--json", *targets).stdout or "{}") == {}
    noop = subprocess.run([sys.executable, "-m", "repro.cli", "dvc-repro", *targets], cwd=par,
                          env=_dvc_env(par), capture_output=True, text=True, timeout=300)
    assert noop.returncode == 0 and "up to date" in noop.stdout, noop.stdout + noop.stderr

    ser = repos["serial"]
    subprocess.run([str(Path(sys.executable).parent / "dvc"), "repro", *targets], cwd=ser,
                   env=_dvc_env(ser) | {"REPRO_THREADS": "1"}, check=True, capture_output=True, timeout=900)
    for spec in targets:
        assert _cells(par, spec) and _cells(par, spec) == _cells(ser, spec)
    for model in ("noisy_unet", "noisy_unet_t"):
        (a,), (b,) = (list((r / "artifacts" / model).glob("*/model.pt")) for r in (par, ser))
        assert a.relative_to(par) == b.relative_to(ser) and a.read_bytes() == b.read_bytes()
