"""Benchmark: `repro sweep --workers 2` vs `--workers 1` on a grid of CPU-bound trials.

The target (issue 11): 2 workers finish a grid of at least 8 CPU-bound trials in at most 0.6 of
the time 1 worker takes. The grid is fig12_3's (Heun + discriminator guidance + epsilon scaling)
at the `test` profile's tiny models, with more samples and the paper's 18 Heun steps per cell, so
that each trial computes for seconds: a copy of experiments/ in a temporary folder whose fig12_3 test profile samples
--samples images per cell in --steps steps, and a sweep `bench-workers` over --w x --b grid values. The models are
trained once before timing; every timed run starts from empty results (nothing to reuse) and
times the whole command as a user runs it (start-up, each worker's preparation, the trials).
Each worker gets --threads torch threads (OMP_NUM_THREADS; default 1), so the figure measures
scaling over workers, not torch's intra-op threading. The machine's load average is printed
beside the times, and the machine's own headroom for two processes, measured first: a pure-Python
loop run once alone and twice side by side (2.0 on idle cores; other processes on the cores take
their share from either run, and no sweep can beat 1 / headroom).

Run: python benchmarks/bench_sweep_workers.py [--samples 480] [--repeats 1] [--threads 1]
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


def _experiments(root: Path, samples: int, steps: int, w: list[float], b: list[float]) -> Path:
    exp = root / "experiments"
    (exp / "sweeps").mkdir(parents=True)
    for p in (REPO / "experiments").iterdir():
        if p.name not in ("sweeps", "fig12_3.yaml"):
            (exp / p.name).symlink_to(p)
    spec = yaml.safe_load((REPO / "experiments" / "fig12_3.yaml").read_text())
    spec["profiles"]["test"]["fixed"].update(n_samples=samples, batch_size=min(samples, 120), steps=steps)
    (exp / "fig12_3.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    sweep = {"id": "bench-workers", "title": "benchmark grid", "base": "fig12_3", "profile": "test",
             "sampler": "grid", "space": {"w_dg": {"type": "grid", "values": w}, "eps_scale": {"type": "grid", "values": b}},
             "objectives": [{"metric": "fd_evalnet", "direction": "minimize"}]}
    (exp / "sweeps" / "bench-workers.yaml").write_text(yaml.safe_dump(sweep, sort_keys=False))
    return exp


_SPIN = "import time; t = time.perf_counter(); sum(range(30_000_000)); print(time.perf_counter() - t)"


def parallel_headroom() -> float:
    """Throughput of two CPU-bound processes side by side over one alone (2.0: two free cores)."""
    def run(n: int) -> list[float]:
        procs = [subprocess.Popen([sys.executable, "-c", _SPIN], stdout=subprocess.PIPE, text=True) for _ in range(n)]
        return [float(p.communicate()[0]) for p in procs]

    alone = run(1)[0]
    return round(2 * alone / max(run(2)), 2)


def _timed_sweep(root: Path, env: dict[str, str], workers: int, tag: str) -> float:
    run_env = {**env, "REPRO_RESULTS": str(root / f"results-{tag}"),
               "MLFLOW_TRACKING_URI": f"sqlite:///{root / f'mlflow-{tag}.db'}"}
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "repro.cli", "sweep", "bench-workers", "--workers", str(workers)],
                         cwd=root, env=run_env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"sweep with {workers} worker(s) failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    return seconds


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=480, help="images sampled per cell (fig12_3 test: 12)")
    ap.add_argument("--steps", type=int, default=18, help="Heun steps per image (the paper's 18; fig12_3 test: 2)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    ap.add_argument("--w", type=float, nargs="+", default=[0.0, 0.5, 1.0, 2.0], help="w_DG_1st grid values")
    ap.add_argument("--b", type=float, nargs="+", default=[1.0, 1.05, 1.1, 1.15], help="epsilon scale grid values")
    ap.add_argument("--repeats", type=int, default=1, help="timed pairs (1 worker, 2 workers), median taken")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = ap.parse_args(argv)
    trials = len(args.w) * len(args.b)
    root = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("REPRO_")}
    env.update(REPRO_EXPERIMENTS=str(_experiments(root, args.samples, args.steps, args.w, args.b)),
               REPRO_ARTIFACTS=str(root / "artifacts"), PYTHONUNBUFFERED="1", OMP_NUM_THREADS=str(args.threads))
    try:
        for name in ("edm_digits", "discriminator_digits", "evaluator_digits"):   # trained once, not timed
            subprocess.run([sys.executable, "-m", "repro.cli", "train", name, "--profile", "test", "--no-progress"],
                           cwd=root, env={**env, "REPRO_NO_MLFLOW": "1"}, check=True, capture_output=True)
        one, two = [], []
        load_before, headroom = os.getloadavg()[0], parallel_headroom()
        for i in range(args.repeats):
            one.append(_timed_sweep(root, env, 1, f"1w-{i}"))
            two.append(_timed_sweep(root, env, 2, f"2w-{i}"))
        t1, t2 = statistics.median(one), statistics.median(two)
        cells = [json.loads(p.read_text())["seconds"] for p in (root / "results-1w-0" / "fig12_3" / "test" /
                                                                "cells").glob("*.json")]
        result = {"trials": trials, "samples_per_trial": args.samples, "heun_steps": args.steps, "cpu_count": os.cpu_count(),
                  "seconds_1_worker": round(t1, 1), "seconds_2_workers": round(t2, 1), "ratio": round(t2 / t1, 3),
                  "target_ratio": 0.6, "met": t2 / t1 <= 0.6, "runs_1_worker": [round(s, 1) for s in one],
                  "runs_2_workers": [round(s, 1) for s in two],
                  "median_trial_seconds_1_worker": round(statistics.median(cells), 2), "threads_per_worker": args.threads,
                  "machine_two_process_headroom": headroom, "best_possible_ratio": round(1 / headroom, 3),
                  "load_average_1min_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)]}
        print(json.dumps(result, indent=2))
        return result
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
