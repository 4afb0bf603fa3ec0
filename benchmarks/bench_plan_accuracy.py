"""Estimated vs measured wall time of `repro run` (issue 13): for each spec, calibrate its networks on
the device, then run it at once (back to back, so both see the same machine load), and compare the
plan's estimate of what the run computes with the run's wall time recorded by the engine.

    python benchmarks/bench_plan_accuracy.py sec5_1_digits fig5_9 table12_1 --profile smoke --out /tmp/acc

Results and artifacts go under --out (fresh: models the specs need are trained and counted), unless
--artifacts names a folder of already trained models. Target: within 25 % per spec.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("specs", nargs="+")
    ap.add_argument("--profile", default="smoke")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", required=True)
    ap.add_argument("--artifacts", default=None, help="trained models to reuse (default: OUT/artifacts)")
    args = ap.parse_args()
    out = Path(args.out)
    env = {**os.environ, "REPRO_RESULTS": str(out / "results"),
           "REPRO_ARTIFACTS": args.artifacts or str(out / "artifacts"),
           "MLFLOW_TRACKING_URI": f"sqlite:///{out / 'mlflow.db'}"}
    out.mkdir(parents=True, exist_ok=True)
    repro = str(Path(sys.executable).parent / "repro")
    rows = []
    for spec in args.specs:
        log = out / f"{spec}.plan.txt"
        with open(log, "w") as f:
            subprocess.run([repro, "plan", spec, "--profile", args.profile, "--device", args.device, "--calibrate",
                            "--no-cells"], env=env, stdout=f, stderr=subprocess.STDOUT, check=True)
        estimate = _estimate(spec, args.profile, args.device, env)
        t0 = time.perf_counter()
        with open(out / f"{spec}.run.txt", "w") as f:
            subprocess.run([repro, "run", spec, "--profile", args.profile, "--device", args.device, "--no-progress",
                            "--yes"], env=env, stdout=f, stderr=subprocess.STDOUT, check=True)
        process = time.perf_counter() - t0
        runs = json.loads((out / "results" / spec / args.profile / "run_times.json").read_text())
        measured = runs[-1]["seconds"]
        rows.append((spec, estimate, measured, process))
        print(f"{spec}: estimated {estimate:.1f} s, measured {measured:.1f} s (engine; process {process:.1f} s), "
              f"ratio {estimate / measured:.2f}", flush=True)
    print("\n| spec | estimated (s) | measured (s) | estimate / measured |\n|---|---|---|---|")
    for spec, e, m, _ in rows:
        print(f"| {spec} | {e:.1f} | {m:.1f} | {e / m:.2f} |")


def _estimate(spec: str, profile: str, device: str, env: dict) -> float:
    """The plan's estimate of what `repro run` computes now (models to train, prepare, cells to run)."""
    code = ("import sys; from repro.plan.build import plan_spec; from repro.plan.estimate import estimate; "
            "from repro.plan.store import device_identity, load_calibration; import torch; "
            f"dev=torch.device({device!r}); s, n = device_identity(dev); "
            f"e = estimate(plan_spec({spec!r}, {profile!r}, device_type=dev.type).work_to_do(), load_calibration(s, n)); "
            "print(e.seconds); print(e.missing, e.unknown, file=sys.stderr)")
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    if res.stderr.strip() not in ("[] []", ""):
        print(f"  {spec}: not covered: {res.stderr.strip()}", flush=True)
    return float(res.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
