"""Benchmark: `repro run SPEC --jobs 2` vs a serial `repro run SPEC` on a grid of CPU-bound cells.

The target (issue 16): 2 jobs finish a grid of at least 8 CPU-bound cells in at most 0.6 of the
serial time. The grid is fig12_3's (EDM Heun + discriminator guidance + epsilon scaling) at the
`test` profile's tiny models, with more samples and the paper's 18 Heun steps per cell so that
each cell computes for seconds: a copy of experiments/ in a temporary folder whose fig12_3 test
profile samples --samples images per cell over a --w x --b grid. Models are trained once before
timing; each timed run starts from empty results and times the whole command as a user runs it
(start-up, each job's preparation, the cells). Both runs use --threads torch threads per process
(REPRO_THREADS; default 1), so the figure measures scaling over processes, not torch's intra-op
threading, and both give the same numbers (checked: the cell values of the two runs are compared).
The load average and the machine's headroom for two processes (a pure-Python loop alone and twice
side by side; 2.0 on two idle cores) are printed beside the times: no run can beat 1 / headroom.

Run: python benchmarks/bench_parallel_cells.py [--samples 480] [--repeats 1] [--threads 1]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
SPEC = "fig12_3"


def _experiments(root: Path, samples: int, steps: int, w: list[float], b: list[float]) -> Path:
    exp = root / "experiments"
    exp.mkdir(parents=True)
    for p in (REPO / "experiments").iterdir():
        if p.name != f"{SPEC}.yaml":
            (exp / p.name).symlink_to(p)
    spec = yaml.safe_load((REPO / "experiments" / f"{SPEC}.yaml").read_text())
    spec["profiles"]["test"]["fixed"].update(n_samples=samples, batch_size=min(samples, 120), steps=steps)
    spec["profiles"]["test"]["grid"] = {"w_dg": w, "eps_scale": b}
    (exp / f"{SPEC}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return exp


_SPIN = "import time; t = time.perf_counter(); sum(range(30_000_000)); print(time.perf_counter() - t)"


def parallel_headroom() -> float:
    """Throughput of two CPU-bound processes side by side over one alone (2.0: two free cores)."""
    def run(n: int) -> list[float]:
        procs = [subprocess.Popen([sys.executable, "-c", _SPIN], stdout=subprocess.PIPE, text=True) for _ in range(n)]
        return [float(p.communicate()[0]) for p in procs]

    alone = run(1)[0]
    return round(2 * alone / max(run(2)), 2)


def _timed_run(root: Path, env: dict[str, str], jobs: int, tag: str) -> tuple[float, Path]:
    results = root / f"results-{tag}"
    run_env = {**env, "REPRO_RESULTS": str(results), "MLFLOW_TRACKING_URI": f"sqlite:///{root / f'mlflow-{tag}.db'}"}
    cmd = [sys.executable, "-m", "repro.cli", "run", SPEC, "--profile", "test", "--device", "cpu", "--no-progress",
           "--yes"] + (["--jobs", str(jobs)] if jobs > 1 else [])
    t0 = time.perf_counter()
    out = subprocess.run(cmd, cwd=root, env=run_env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"run with {jobs} job(s) failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    return seconds, results / SPEC / "test" / "cells"


def _values(folder: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text())["values"] for p in sorted(folder.glob("*.json"))}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=480, help="images sampled per cell (fig12_3 test: 12)")
    ap.add_argument("--steps", type=int, default=18, help="Heun steps per image (the paper's 18; fig12_3 test: 2)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process, serial and per job")
    ap.add_argument("--w", type=float, nargs="+", default=[0.0, 0.5, 1.0, 2.0], help="w_DG_1st grid values")
    ap.add_argument("--b", type=float, nargs="+", default=[1.0, 1.05], help="epsilon scale grid values")
    ap.add_argument("--repeats", type=int, default=1, help="timed pairs (serial, 2 jobs), median taken")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = ap.parse_args(argv)
    cells = len(args.w) * len(args.b)
    root = Path(tempfile.mkdtemp(prefix="bench-cells-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("REPRO_")}
    env.update(REPRO_EXPERIMENTS=str(_experiments(root, args.samples, args.steps, args.w, args.b)),
               REPRO_ARTIFACTS=str(root / "artifacts"), PYTHONUNBUFFERED="1", REPRO_THREADS=str(args.threads),
               OMP_NUM_THREADS=str(args.threads))
    try:
        for name in ("edm_digits", "discriminator_digits", "evaluator_digits"):   # trained once, not timed
            subprocess.run([sys.executable, "-m", "repro.cli", "train", name, "--profile", "test", "--no-progress"],
                           cwd=root, env={**env, "REPRO_NO_MLFLOW": "1"}, check=True, capture_output=True)
        serial, jobs = [], []
        load_before, headroom = os.getloadavg()[0], parallel_headroom()
        for i in range(args.repeats):
            s, s_cells = _timed_run(root, env, 1, f"serial-{i}")
            j, j_cells = _timed_run(root, env, 2, f"jobs2-{i}")
            serial.append(s)
            jobs.append(j)
            if _values(s_cells) != _values(j_cells) or len(_values(s_cells)) != cells:
                raise SystemExit("the --jobs 2 cells differ from the serial ones")
        t1, t2 = statistics.median(serial), statistics.median(jobs)
        cell_s = [json.loads(p.read_text())["seconds"] for p in (root / "results-serial-0" / SPEC / "test" /
                                                                 "cells").glob("*.json")]
        result = {"cells": cells, "samples_per_cell": args.samples, "heun_steps": args.steps, "cpu_count": os.cpu_count(),
                  "seconds_serial": round(t1, 1), "seconds_jobs_2": round(t2, 1), "ratio": round(t2 / t1, 3),
                  "target_ratio": 0.6, "met": t2 / t1 <= 0.6, "runs_serial": [round(s, 1) for s in serial],
                  "runs_jobs_2": [round(s, 1) for s in jobs], "same_cell_values": True,
                  "median_cell_seconds_serial": round(statistics.median(cell_s), 2), "threads_per_process": args.threads,
                  "machine_two_process_headroom": headroom, "best_possible_ratio": round(1 / headroom, 3),
                  "load_average_1min_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)]}
        print(json.dumps(result, indent=2))
        return result
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
