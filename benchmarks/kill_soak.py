"""Kill soak: SIGKILL `repro run`, `repro train` and `repro sweep` at random moments, run the same
command again, and check that nothing was lost, repeated or changed.

For each of N rounds (seeded): a fresh working directory, the command started, killed after a random
delay drawn within the uninterrupted run's duration, the leftovers inspected (what was in progress),
the same command run again to completion. Then:
- recovered: the rerun exits 0, leaves no temporary file, and no MLflow run is RUNNING (the killed
  invocation's runs are KILLED);
- identical: the final cell files (what each cell computed: numbers, model sha256, seed, spec hash)
  equal an uninterrupted reference run's, bit for bit; for `train`, the weights (model.pt's tensors);
  finished cells are not recomputed (the files present after the kill are byte-identical after the
  rerun; `repro run` reports them as already finished); a sweep ends with the reference's COMPLETE
  trials, one per grid point, with the same values.

    .venv/bin/python benchmarks/kill_soak.py --kills 20 --seed 0

Timings on a shared machine vary; the delays are fractions of the reference durations measured
at the start, so they adapt.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
COMPARED = ("cell", "key", "values", "extra", "seed", "spec_hash", "spec", "profile", "device")

WORKLOADS = {
    "run": (["run", "fig5_9", "--profile", "test", "--no-progress", "--device", "cpu"], "fig5_9"),
    "train": (["train", "noisy_unet", "--profile", "test", "--no-progress", "--device", "cpu"], None),
    "sweep": (["sweep", "snr", "--profile", "test", "--device", "cpu"], "snr_study"),
}


def env_for(work: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REPRO_")}
    env.update(MLFLOW_TRACKING_URI=f"sqlite:///{work / 'mlflow.db'}", PYTHONUNBUFFERED="1",
               OMP_NUM_THREADS="1", REPRO_THREADS="1")
    return env


def start(work: Path, workload: str) -> subprocess.Popen:
    args, _ = WORKLOADS[workload]
    return subprocess.Popen([sys.executable, "-m", "repro.cli", *args], cwd=work, env=env_for(work),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run_to_end(work: Path, workload: str) -> tuple[int, str, str, float]:
    t0 = time.perf_counter()
    p = start(work, workload)
    out, err = p.communicate(timeout=900)
    return p.returncode, out, err, time.perf_counter() - t0


TIMING = re.compile(r"seconds|ms_per|per_second|elapsed|throughput")   # measured durations differ by design


def without_timings(x):
    if isinstance(x, dict):
        return {k: without_timings(v) for k, v in x.items() if not TIMING.search(k)}
    return x


def cells(work: Path, spec: str) -> dict[str, dict]:
    folder = work / "results" / spec / "test" / "cells"
    return {p.stem: without_timings({k: json.loads(p.read_text()).get(k) for k in COMPARED})
            for p in sorted(folder.glob("*.json"))}


def cell_bytes(work: Path, spec: str | None) -> dict[str, bytes]:
    if spec is None:
        return {}
    return {p.name: p.read_bytes() for p in (work / "results" / spec / "test" / "cells").glob("*.json")}


def weights(work: Path) -> dict[str, str]:
    """sha256 of every model.pt's tensors (by name), per artifact folder."""
    import hashlib

    import torch

    out = {}
    for path in sorted((work / "artifacts").rglob("model.pt")):
        state = torch.load(path, map_location="cpu", weights_only=True)
        h = hashlib.sha256()
        for k in sorted(state):
            h.update(k.encode())
            h.update(state[k].contiguous().numpy().tobytes())
        out[str(path.parent.relative_to(work / "artifacts"))] = h.hexdigest()
    return out


def final_state(work: Path, workload: str) -> dict:
    _, spec = WORKLOADS[workload]
    state = {"weights": weights(work)}
    if spec is not None:
        state["cells"] = cells(work, spec)
    if workload == "sweep":
        state["complete_trials"] = complete_trials(work)
    return state


def temporaries(work: Path) -> list[Path]:
    return [p for p in work.rglob(".*.tmp")]


def mlflow_statuses(work: Path) -> list[str]:
    db = work / "mlflow.db"
    if not db.exists():
        return []
    import sqlite3

    with sqlite3.connect(db) as con:   # read-only look at MLflow's own table
        return [row[0] for row in con.execute("select status from runs where lifecycle_stage = 'active'")]


def in_progress(work: Path, workload: str) -> str:
    """What the killed process had got to, read from what it left."""
    parts = []
    tmps = temporaries(work)
    if tmps:
        parts.append("atomic write of " + ", ".join(sorted({t.name.split(".")[1] for t in tmps})))
    for art in sorted((work / "artifacts").glob("*/*")) if (work / "artifacts").is_dir() else []:
        if art.parent.name == ".locks":   # a killed trainer's lock file (repro.runlock): taken over by the rerun
            continue
        if not (art / "meta.json").exists():
            ckpt = art / "checkpoint.pt"
            if ckpt.exists():
                import torch

                epoch = torch.load(ckpt, map_location="cpu", weights_only=True).get("epoch", "?")
                parts.append(f"training {art.parent.name} (checkpoint after epoch {epoch})")
            else:
                parts.append(f"training {art.parent.name} (no checkpoint yet)")
    _, spec = WORKLOADS[workload]
    if spec is not None:
        n = len(cell_bytes(work, spec))
        if n or (work / "results" / spec).exists():
            parts.append(f"{n} cell(s) finished")
    return "; ".join(parts) or "start-up (imports, preflight)"


def complete_trials(work: Path) -> list[tuple]:
    """The sweep's COMPLETE trials as sorted (params, values): one per grid point, none twice."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    storage = JournalStorage(JournalFileBackend(str(work / "results" / "sweeps" / "optuna.journal")))
    study = optuna.load_study(study_name="snr-test", storage=storage)
    return sorted((tuple(sorted(t.params.items())), tuple(t.values)) for t in study.get_trials(deepcopy=False)
                  if t.state.name == "COMPLETE")


@dataclass
class Round:
    index: int
    workload: str
    delay: float
    progress: str
    recovered: bool
    identical: bool
    note: str


def soak_round(i: int, workload: str, delay: float, ref: dict, root: Path, keep: bool = False,
               warm_from: Path | None = None) -> Round:
    work = root / f"round{i:02d}-{workload}"
    work.mkdir()
    if warm_from is not None:   # the models trained already: the kill lands in the cells
        shutil.copytree(warm_from / "artifacts", work / "artifacts")
    p = start(work, workload)
    time.sleep(delay)
    finished_first = p.poll() is not None
    if not finished_first:
        os.kill(p.pid, signal.SIGKILL)
    p.communicate()
    progress = "finished before the kill" if finished_first else in_progress(work, workload)
    _, spec = WORKLOADS[workload]
    kept = cell_bytes(work, spec)
    rc, out, err, _ = run_to_end(work, workload)
    notes = []
    leftovers = temporaries(work)
    statuses = mlflow_statuses(work)
    recovered = rc == 0 and not leftovers and "RUNNING" not in statuses
    if rc != 0:
        notes.append(f"rerun exit {rc}: {err.strip().splitlines()[-1] if err.strip() else ''}")
    if leftovers:
        notes.append(f"{len(leftovers)} temporary file(s) left")
    if "RUNNING" in statuses:
        notes.append(f"{statuses.count('RUNNING')} MLflow run(s) RUNNING")
    final = final_state(work, workload) if recovered else {}
    identical = recovered and final == ref[workload]
    if recovered and not identical:
        differ = [k for k in ref[workload] if final.get(k) != ref[workload][k]]
        notes.append(f"differs: {', '.join(differ)}")
        if "cells" in differ:
            keys = [c for c in ref[workload]["cells"] if final["cells"].get(c) != ref[workload]["cells"][c]]
            notes.append(f"cells {keys[:4]}")
    after = cell_bytes(work, spec)
    if any(after.get(n) != b for n, b in kept.items()):
        identical = False
        notes.append("a finished cell was rewritten")
    if workload == "run" and kept and f"{len(kept)} already finished" not in out:
        identical = False
        notes.append("finished cells not reported as skipped")
    if not finished_first:
        notes.append(f"KILLED runs: {statuses.count('KILLED')}")
    if not keep:
        shutil.rmtree(work, ignore_errors=True)
    return Round(i, workload, delay, progress, recovered, identical, "; ".join(notes))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workloads", default="run,train,sweep")
    ap.add_argument("--json", type=Path, help="also write the rounds here")
    ap.add_argument("--keep", action="store_true", help="keep the working directories")
    ap.add_argument("--warm", default="", help="comma-separated workloads whose rounds start with the "
                    "reference's trained models (kills land in the cells; faster on a loaded machine)")
    a = ap.parse_args()
    names = a.workloads.split(",")
    warm = set(filter(None, a.warm.split(",")))
    root = Path(tempfile.mkdtemp(prefix="kill-soak-"))
    ref, seconds = {}, {}
    for w in names:   # uninterrupted references (and how long each takes, to place the kills)
        work = root / f"reference-{w}"
        work.mkdir()
        rc, out, err, secs = run_to_end(work, w)
        if rc != 0:
            print(f"reference {w} failed (exit {rc}):\n{err}", file=sys.stderr)
            return 1
        ref[w], seconds[w] = final_state(work, w), secs
        print(f"reference {w}: {secs:.1f} s (shared CPU)", flush=True)
        if w in warm:   # warm rounds are placed within a warm run's duration (and must end the same)
            again = root / f"reference-{w}-warm"
            shutil.copytree(work / "artifacts", again / "artifacts")
            rc, out, err, secs = run_to_end(again, w)
            if rc != 0 or final_state(again, w) != ref[w]:
                print(f"warm reference {w} differs from the cold one (exit {rc})", file=sys.stderr)
                return 1
            seconds[w] = secs
            print(f"reference {w} with its models trained: {secs:.1f} s (shared CPU)", flush=True)
    rng = random.Random(a.seed)
    rounds = []
    print(f"\n{'#':>2}  {'command':<6} {'kill at':>8}  {'in progress':<62} {'recovered':<9} {'identical':<9} note")
    i = 0
    while len(rounds) < a.kills:   # a round whose command finished before its kill is shown, not counted
        w = names[len(rounds) % len(names)]
        delay = rng.uniform(0.05, 0.95) * seconds[w]
        r = soak_round(i, w, delay, ref, root, a.keep, root / f"reference-{w}" if w in warm else None)
        i += 1
        if r.progress == "finished before the kill":
            seconds[w] *= 0.8   # the machine got faster than the reference: place kills earlier
        else:
            rounds.append(r)
        print(f"{i:>2}  {w:<6} {delay:>7.2f}s  {r.progress[:62]:<62} {'yes' if r.recovered else 'NO':<9} "
              f"{'yes' if r.identical else 'NO':<9} {r.note}", flush=True)
    ok_r = sum(r.recovered for r in rounds)
    ok_i = sum(r.identical for r in rounds)
    print(f"\n{ok_r}/{len(rounds)} recovered, {ok_i}/{len(rounds)} identical to the uninterrupted run "
          f"(seed {a.seed}; delays uniform in 5-95% of each reference's duration; warm: {sorted(warm) or 'none'})")
    if a.json:
        a.json.write_text(json.dumps([r.__dict__ for r in rounds], indent=2))
    if not a.keep:
        shutil.rmtree(root, ignore_errors=True)
    return 0 if ok_r == ok_i == len(rounds) else 1


if __name__ == "__main__":
    sys.exit(main())
