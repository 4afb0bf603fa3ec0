"""Independent DVC stages side by side: DVC's own "parallel stage execution", scheduled.

`dvc repro` runs one stage at a time (iterative/dvc#755). DVC's documentation of `repro`
("Parallel stage execution") says to launch `dvc repro` more than once for independent parts of
the pipeline: DVC lets go of its repository lock while a stage's command runs, guards each path
with a read/write lock, and takes the repository lock back to write that stage into dvc.lock
(re-reading the file under the lock). What it leaves to the user is the scheduling, which is
this module: the stages `dvc status` reports changed, and every stage downstream of them, run as
`dvc --wait-for-lock repro --single-item STAGE` (`--wait-for-lock`: two processes that want the
lock at the same moment wait instead of failing, iterative/dvc#10465), at most `jobs` at a time,
each once all its upstream stages finished, longest remaining chain first. Each stage's output
goes to `logs/pipeline/<stage>.log`; the first failure stops new launches. A plain `dvc repro`
afterwards finds nothing to do.

Every stage is the same command it is under a serial `dvc repro`, with the same torch thread count
(REPRO_THREADS), so its results are the same as in a serial run; only the wall time moves.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import yaml

from repro.environment import cpu_bf16_flags, cpu_model
from repro.errors import UserError

LOG_DIR = Path("logs/pipeline")
DEFAULT_SECONDS = 60.0   # weight of a stage that has no recorded wall time yet


def _paths(entries: Iterable[Any], profile: str) -> list[str]:
    """The paths of a stage's deps/outs/metrics/plots entries (a string or a one-key mapping)."""
    out = []
    for e in entries or []:
        path = e if isinstance(e, str) else next(iter(e))
        out.append(path.replace("${profile}", profile).rstrip("/"))
    return out


def _overlaps(a: str, b: str) -> bool:
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")


def stage_graph(stages: dict[str, Any], profile: str) -> dict[str, set[str]]:
    """Each stage's upstream stages: those with an output that is, holds or lies in one of its deps."""
    outs = {name: _paths([*s.get("outs", []), *s.get("metrics", []), *s.get("plots", [])], profile)
            for name, s in stages.items()}
    upstream: dict[str, set[str]] = {}
    for name, s in stages.items():
        deps = _paths(s.get("deps", []), profile)
        upstream[name] = {other for other, paths in outs.items() if other != name
                          and any(_overlaps(d, o) for d in deps for o in paths)}
    return upstream


def downstream_closure(upstream: dict[str, set[str]], start: Iterable[str]) -> set[str]:
    """`start` and every stage that depends on one of them, directly or not."""
    todo, seen = list(start), set(start)
    while todo:
        s = todo.pop()
        for other, ups in upstream.items():
            if s in ups and other not in seen:
                seen.add(other)
                todo.append(other)
    return seen


def upstream_closure(upstream: dict[str, set[str]], targets: Iterable[str]) -> set[str]:
    """`targets` and every stage they depend on."""
    todo, seen = list(targets), set(targets)
    while todo:
        for u in upstream[todo.pop()]:
            if u not in seen:
                seen.add(u)
                todo.append(u)
    return seen


def chain_seconds(upstream: dict[str, set[str]], weights: dict[str, float]) -> dict[str, float]:
    """A stage's own weight plus the longest chain of weights below it (its priority: the stage
    that holds up the most work starts first)."""
    below: dict[str, set[str]] = {s: set() for s in upstream}
    for s, ups in upstream.items():
        for u in ups:
            below[u].add(s)
    memo: dict[str, float] = {}

    def chain(s: str) -> float:
        if s not in memo:
            memo[s] = weights.get(s, DEFAULT_SECONDS) + max((chain(d) for d in below[s]), default=0.0)
        return memo[s]

    return {s: chain(s) for s in upstream}


@dataclass
class Outcome:
    stage: str
    returncode: int
    seconds: float


@dataclass
class Schedule:
    """What a run did: stages in the order they finished, and the wall time of the whole."""
    finished: list[Outcome] = field(default_factory=list)
    not_started: list[str] = field(default_factory=list)
    wall_seconds: float = 0.0

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.finished if o.returncode != 0]


def run_schedule(upstream: dict[str, set[str]], todo: set[str], run_stage: Callable[[str], int], *,
                 jobs: int, weights: dict[str, float] | None = None,
                 on_event: Callable[[str, str, Schedule, float], None] | None = None) -> Schedule:
    """Run the stages in `todo`, at most `jobs` at a time, each once its upstream stages in `todo`
    have finished (stages outside `todo` count as done); longest remaining chain first. After a
    failure nothing new starts; the stages already running finish."""
    if jobs < 1:
        raise ValueError("jobs must be >= 1")
    priority = chain_seconds({s: upstream[s] & todo for s in todo}, weights or {})
    sched = Schedule()
    done: set[str] = set()
    running: dict[Future, tuple[str, float]] = {}
    waiting = set(todo)
    t0 = time.perf_counter()
    event = on_event or (lambda *a: None)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        while waiting or running:
            if not sched.failed:
                ready = sorted((s for s in waiting if not (upstream[s] & todo) - done),
                               key=lambda s: (-priority[s], s))
                for s in ready[:jobs - len(running)]:
                    waiting.discard(s)
                    running[pool.submit(run_stage, s)] = (s, time.perf_counter())
                    event("start", s, sched, time.perf_counter() - t0)
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for f in finished:
                s, started = running.pop(f)
                try:
                    rc = f.result()
                except Exception:   # the runner itself broke: a failed stage, not a hung scheduler
                    rc = 1
                sched.finished.append(Outcome(s, rc, time.perf_counter() - started))
                if rc == 0:
                    done.add(s)
                event("done" if rc == 0 else "failed", s, sched, time.perf_counter() - t0)
    sched.not_started = sorted(waiting)
    sched.wall_seconds = time.perf_counter() - t0
    return sched


# --- with DVC ------------------------------------------------------------------------------------

def _dvc() -> str:
    exe = Path(sys.executable).parent / "dvc"
    return str(exe) if exe.exists() else "dvc"


def load_pipeline(root: Path) -> tuple[dict[str, Any], str]:
    """dvc.yaml's stages and params.yaml's profile."""
    dvc_yaml, params = root / "dvc.yaml", root / "params.yaml"
    for p in (dvc_yaml, params):
        if not p.is_file():
            raise UserError(f"no {p.name} in {root}: run this in the repository root")
    try:
        stages = (yaml.safe_load(dvc_yaml.read_text()) or {}).get("stages") or {}
        profile = (yaml.safe_load(params.read_text()) or {}).get("profile", "smoke")
    except yaml.YAMLError as e:
        raise UserError(f"cannot parse dvc.yaml/params.yaml: {str(e).splitlines()[0]}") from None
    if not stages:
        raise UserError("dvc.yaml has no stages (regenerate it: repro pipeline > dvc.yaml)")
    return stages, str(profile)


def changed_stages(root: Path) -> set[str]:
    """The stages `dvc status` reports (changed deps, params or outs, or never run)."""
    try:
        out = subprocess.run([_dvc(), "status", "--json"], cwd=root, capture_output=True, text=True)
    except FileNotFoundError:
        raise UserError("dvc not found: install the suite (make setup) and put .venv/bin on PATH") from None
    if out.returncode != 0:
        raise RuntimeError(f"dvc status failed: {(out.stderr or out.stdout).strip()[-500:]}")
    return set(json.loads(out.stdout or "{}"))


def recorded_seconds(root: Path, stages: Iterable[str]) -> dict[str, float]:
    """Each stage's wall time in its last run (metrics/time/<stage>.json), the scheduling weight."""
    weights = {}
    for s in stages:
        try:
            weights[s] = float(json.loads((root / "metrics/time" / f"{s}.json").read_text())["wall_seconds"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
    return weights


def dvc_stage_runner(root: Path, log_dir: Path) -> Callable[[str], int]:
    def run(stage: str) -> int:
        log = log_dir / f"{stage}.log"
        with open(log, "w") as fh:
            return subprocess.call([_dvc(), "--wait-for-lock", "repro", "--single-item", stage],
                                   cwd=root, stdout=fh, stderr=subprocess.STDOUT)
    return run


def _tail(path: Path, n: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def parallel_repro(root: Path, targets: list[str], jobs: int, echo: Callable[[str], None] = print) -> Schedule:
    """`dvc repro [TARGETS]` with up to `jobs` independent stages side by side (see module doc)."""
    if jobs < 1:
        raise UserError(f"--jobs must be at least 1, got {jobs}")
    stages, profile = load_pipeline(root)
    unknown = [t for t in targets if t not in stages]
    if unknown:
        raise UserError(f"unknown stage {unknown[0]!r} (dvc.yaml has: {', '.join(stages)})")
    upstream = stage_graph(stages, profile)
    wanted = upstream_closure(upstream, targets) if targets else set(stages)
    todo = downstream_closure(upstream, changed_stages(root) & wanted) & wanted
    if not todo:
        echo("Data and pipelines are up to date (no stage changed).")
        return Schedule()
    log_dir = root / LOG_DIR
    log_dir.mkdir(parents=True, exist_ok=True)
    weights = recorded_seconds(root, todo)
    threads = os.environ.get("REPRO_THREADS", "default")
    echo(f"{len(todo)} of {len(stages)} stages to run (changed, or downstream of a change), {jobs} at a time, "
         f"REPRO_THREADS={threads}; logs in {LOG_DIR}/")
    echo(f"CPU: {cpu_model()}, {os.cpu_count()} cores, native bf16: {', '.join(cpu_bf16_flags()) or 'none'} "
         f"(stage times move with the machine: compare runs on the same CPU)")

    def on_event(kind: str, stage: str, sched: Schedule, now: float) -> None:
        if kind == "start":
            echo(f"[{now:7.1f} s] start  {stage}")
        else:
            took = sched.finished[-1].seconds
            echo(f"[{now:7.1f} s] {kind:6s} {stage} ({took:.1f} s; {len(sched.finished)}/{len(todo)} finished)")
            if kind == "failed":
                echo(f"--- last lines of {LOG_DIR}/{stage}.log ---\n{_tail(log_dir / f'{stage}.log')}")

    sched = run_schedule(upstream, todo, dvc_stage_runner(root, log_dir), jobs=jobs, weights=weights,
                         on_event=on_event)
    busy = sum(o.seconds for o in sched.finished)
    echo(f"{len(sched.finished)} stages in {sched.wall_seconds:.1f} s wall ({busy:.1f} s of stage time, "
         f"{busy / max(sched.wall_seconds, 1e-9):.2f} stages at a time on average)")
    (log_dir / "summary.json").write_text(json.dumps({
        "jobs": jobs, "threads": threads, "cpu_model": cpu_model(), "cpu_bf16": cpu_bf16_flags(),
        "wall_seconds": round(sched.wall_seconds, 2),
        "stage_seconds": {o.stage: round(o.seconds, 2) for o in sched.finished},
        "failed": [o.stage for o in sched.failed], "not_started": sched.not_started}, indent=2) + "\n")
    if sched.failed:
        echo(f"failed: {', '.join(o.stage for o in sched.failed)}; not started: "
             f"{', '.join(sched.not_started) or 'none'}")
    return sched
