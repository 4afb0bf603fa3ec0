"""Benchmark: a second `dvc repro` of the whole pipeline does nothing, in under 15 s (issue 15).

On a copy of the repository (tracked files plus the package as in the working tree) rendered at
the smoke profile, every stage is recorded as done without computing it: the `code` stage's
fingerprints are real, the other outputs are stand-in files, `dvc commit -f` writes dvc.lock.
Then `dvc repro` (x --repeats) and `dvc status` are timed: wall seconds and the CPU seconds of
the dvc process (on a shared machine the CPU figure is the one that does not depend on load).
Run: python benchmarks/bench_dvc_noop.py [--repeats 2] [--keep DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

TARGET_S = 15.0


def _copy_repo(src: Path, dst: Path) -> None:
    tracked = subprocess.run(["git", "ls-files"], cwd=src, capture_output=True, text=True).stdout.split()
    for rel in tracked:
        if (src / rel).is_file() and not rel.startswith(("reports/", "metrics/")):
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src / rel, dst / rel)
    shutil.copytree(src / "repro", dst / "repro", dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


def _timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float, str]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode != 0:
        sys.exit(out.stdout + out.stderr)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return wall, cpu, out.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--keep", help="build the copy here and keep it")
    args = ap.parse_args()

    from repro.commands.pipeline import render_dvc_yaml, render_params
    from repro.specs import repo_root

    repo = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="dvc-noop-"))
    _copy_repo(repo_root(), repo)
    (repo / "params.yaml").write_text(render_params("smoke"))
    (repo / "dvc.yaml").write_text(render_dvc_yaml("smoke"))
    bin_dir = Path(sys.executable).parent
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", DVC_NO_ANALYTICS="1", PYTHONPATH=str(repo))
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run([sys.executable, "-m", "repro.commands.pipeline", "fingerprints", "--profile", "smoke"], cwd=repo,
                   env=env, check=True, capture_output=True)
    stages = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        for section in ("outs", "metrics", "plots"):
            for out in stage.get(section, []) if name != "code" else []:
                path = repo / (out if isinstance(out, str) else next(iter(out))).replace("${profile}", "smoke")
                if path.suffix in (".json", ".csv"):
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text("{}\n" if path.suffix == ".json" else "a\n1\n")
                else:
                    path.mkdir(parents=True, exist_ok=True)
                    (path / "stand-in").write_text("x")
    dvc = str(bin_dir / "dvc")
    subprocess.run([dvc, "commit", "-f", "-q"], cwd=repo, env=env, check=True)
    rows = []
    for i in range(args.repeats):
        wall, cpu, out = _timed([dvc, "repro"], repo, env)
        assert "Running stage" not in out and "up to date" in out, out
        rows.append({"command": "dvc repro", "wall_s": round(wall, 1), "cpu_s": round(cpu, 1)})
    wall, cpu, _ = _timed([dvc, "status"], repo, env)
    rows.append({"command": "dvc status", "wall_s": round(wall, 1), "cpu_s": round(cpu, 1)})
    print(json.dumps({"stages": len(stages), "load_avg_1min": round(os.getloadavg()[0], 2),
                      "cpu_count": os.cpu_count(), "target_s": TARGET_S, "runs": rows,
                      "met": all(r["wall_s"] < TARGET_S for r in rows if r["command"] == "dvc repro")}, indent=2))
    if not args.keep:
        shutil.rmtree(repo, ignore_errors=True)


if __name__ == "__main__":
    main()
