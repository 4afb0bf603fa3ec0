"""Independent cells of one spec in parallel processes: `repro run SPEC --jobs N` (CPU) or
`--devices cuda:0,cuda:1,...` (one process per device).

The parent (given a spec that the command resolved and preflighted once) trains missing models
once, opens the invocation's parent MLflow run (engine.tracked.open_run) and starts the workers through repro.launchers.processes (worker 0 in its own process). Every
worker takes the next unclaimed cell (an O_EXCL claim file per cell and invocation, so no cell runs
twice and a fast worker takes more) and runs it with the engine's run_one_cell: the same results
file and a child run under the one parent. Cells are seeded by their key, not their order, so the
values are a serial run's when the thread count is the same (float reductions depend on how many
threads split them; `--threads` fixes it). A killed invocation resumes like a serial one.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from repro import results
from repro.atomic import remove_orphan_temporaries
from repro.engine.cells import run_one_cell
from repro.results import finished_record, read_failed_cells
from repro.engine.context import RunContext
from repro.engine.models import train_missing_models
from repro.engine.run import RunSummary, run_resolved
from repro.engine.tracked import attach_run, open_run, write_run_meta
from repro.environment import resolve_device
from repro.errors import UserError
from repro.experiments import resolve_spec, runner_module
from repro.launchers.processes import launch, worker_env
from repro.liveness import pid_alive
from repro.specs import ResolvedSpec, cell_key
from repro.train.distributed import launched_by_torchrun

MODULE = "repro.launchers.cells"
CLAIMS_PREFIX = ".claims-"   # + the parent's pid: a dead parent's folder is removed by the next run


class CellWorkersFailed(RuntimeError):
    """A cell worker crashed; finished cells are kept and the next run computes the rest."""


@dataclass
class CellWorkerArgs:
    spec: str
    profile: str
    overrides: dict[str, Any]
    device: str
    keys: list[str]                 # unfinished cells, in grid order
    claims: str                     # this invocation's claim folder
    index: int = 0
    threads: int | None = None
    parent_run_id: str | None = None
    force: bool = False
    tags: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self))


def worker_devices(jobs: int | None, devices: str | None, device: str) -> list[str]:
    """One device string per worker: --devices round robin (one worker each by default), else
    --jobs copies of --device."""
    if jobs is not None and jobs < 1:
        raise UserError(f"--jobs {jobs}: must be at least 1")
    if devices:
        names = [d.strip() for d in devices.split(",") if d.strip()]
        if not names:
            raise UserError(f"--devices {devices!r}: name devices, e.g. cuda:0,cuda:1")
        for name in names:
            resolve_device(name)
        return [names[i % len(names)] for i in range(jobs or len(names))]
    return [str(resolve_device(device))] * (jobs or 1)


def threads_per_job(jobs: int, threads: int | None) -> int:
    """--threads when given; else the run's thread setting ($REPRO_THREADS) or fewer, the cores
    shared out, so that N jobs do not oversubscribe the machine. The same count as a serial run
    gives the same numbers (float reductions depend on how many threads split them)."""
    if threads is not None:
        return int(threads)
    shared = max(1, (os.cpu_count() or 1) // jobs)
    setting = os.environ.get("REPRO_THREADS", "").strip()
    return min(int(setting), shared) if setting.isdigit() and int(setting) > 0 else shared


def runs_cells_in_parallel(module: Any) -> bool:
    """False for a kind whose cells measure their own cost (CELLS_IN_PARALLEL = False in its runner)."""
    return bool(getattr(module, "CELLS_IN_PARALLEL", True))


def claim(folder: Path, key: str, owner: str = "") -> bool:
    """True for the one worker whose claim file for `key` is created first, and again for that
    worker (`owner`, its index) when it is started anew (a requeued SLURM task takes back its cells)."""
    path = folder / f"{key}.claim"
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        try:
            return bool(owner) and path.read_text() == owner
        except OSError:
            return False
    try:
        os.write(fd, owner.encode())
    finally:
        os.close(fd)
    return True


def run_spec_jobs(resolved: ResolvedSpec, *, jobs: int | None = None, devices: str | None = None,
                  device: str = "auto", threads: int | None = None, force: bool = False,
                  echo: Callable[[str], None] = print) -> RunSummary:
    """`repro run` with cells over worker processes, for a resolved spec that preflight passed;
    returns the engine's RunSummary."""
    spec_id, profile = resolved.id, resolved.profile
    if launched_by_torchrun():
        raise UserError("--jobs/--devices start their own processes; under torchrun leave them out "
                        "(the ranks shard each cell)")
    devs = worker_devices(jobs, devices, device)
    if not runs_cells_in_parallel(runner_module(resolved.spec.kind)):
        echo(f"{spec_id}: kind {resolved.spec.kind} measures each cell's own time and memory; its cells run "
             f"one at a time on {devs[0]}")
        return run_resolved(resolved, device=devs[0], force=force, progress=False)
    todo, summary = pending_cells(resolved, force)
    work_dir = summary.work_dir
    if not todo:
        return summary
    t0 = time.perf_counter()
    n = min(len(devs), len(todo))   # no worker without a cell
    devs = devs[:n]
    per_job = threads_per_job(n, threads)
    dev0 = resolve_device(devs[0])
    train_missing_models(resolved, dev0)   # once, here: workers only load them
    with open_run(resolved, dev0, tags={"repro.jobs": n, "repro.devices": ",".join(devs),
                                        "repro.threads": per_job}) as tracker:
        summary.mlflow_run_id = tracker.run_id
        write_run_meta(resolved, work_dir)
        claims = Path(tempfile.mkdtemp(prefix=f"{CLAIMS_PREFIX}{os.getpid()}-", dir=work_dir))
        try:
            args = [CellWorkerArgs(spec_id, profile, resolved.overrides or {}, d, todo, str(claims), i, per_job,
                                   tracker.run_id, force, {"repro.jobs": n, "repro.threads": per_job})
                    for i, d in enumerate(devs)]
            launched = launch(MODULE, [a.to_json() for a in args[1:]],
                              in_process=lambda: work(args[0], resolved=resolved, tracker=tracker, echo=echo),
                              envs=[worker_env(per_job) for _ in args[1:]])
        finally:
            shutil.rmtree(claims, ignore_errors=True)
        tally(resolved, todo, summary)
        if launched.error is not None:
            raise launched.error
        bad = [f"worker {i + 1} exited {c}" for i, c in enumerate(launched.codes) if c != 0]
        if bad:
            raise CellWorkersFailed(f"{'; '.join(bad)}; finished cells are kept, run the same command again "
                                    f"to compute the rest")
    summary.seconds = time.perf_counter() - t0
    return summary


def pending_cells(resolved: ResolvedSpec, force: bool) -> tuple[list[str], RunSummary]:
    """Before workers start: a killed invocation's leftovers removed, damaged files set aside, and
    (the unfinished cells' keys, a summary counting the finished ones as skipped)."""
    spec_id, profile = resolved.id, resolved.profile
    work_dir = results.run_dir(spec_id, profile)
    remove_leftovers(work_dir)
    results.set_aside_damaged(spec_id, profile)   # damaged stored files: named, moved aside, redone
    keys = [cell_key(c) for c in resolved.cells()]
    todo = [k for k in keys if force or finished_record(resolved, k) is None]
    return todo, RunSummary(spec_id, profile, len(keys), [], [k for k in keys if k not in set(todo)], work_dir,
                            None, 0.0)


def tally(resolved: ResolvedSpec, todo: list[str], summary: RunSummary) -> None:
    """Sort the cells the workers were given into the summary's ran and failed, from the files."""
    failed_now = {r["key"] for r in read_failed_cells(resolved.id, resolved.profile, resolved.hash)}
    for k in todo:
        if finished_record(resolved, k) is not None:
            summary.ran.append(k)
        elif k in failed_now:
            summary.failed.append(k)


def remove_leftovers(work_dir: Path) -> None:
    """A killed invocation's half-written files and claim folders (their parent process is gone)."""
    remove_orphan_temporaries(work_dir)
    for folder in work_dir.glob(f"{CLAIMS_PREFIX}*") if work_dir.is_dir() else []:
        pid = folder.name[len(CLAIMS_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def work(args: CellWorkerArgs, resolved: ResolvedSpec | None = None, tracker=None,
         echo: Callable[[str], None] | None = None) -> dict[str, list[str]]:
    """Claim and run cells until none is left; returns {"ran": [...], "failed": [...]} of this worker.
    The worker in the parent's process gets the parent's resolved spec and tracker; a worker process
    resolves the spec from its arguments and attaches to the parent run."""
    echo = echo or (lambda msg: print(msg, flush=True))
    threads_before = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        if resolved is None:
            resolved = resolve_spec(args.spec, args.profile, args.overrides)
        dev = resolve_device(args.device)
        module = runner_module(resolved.spec.kind)
        cells = {cell_key(c): c for c in resolved.cells()}
        if tracker is None:
            tracker = attach_run(resolved, dev, args.parent_run_id, args.tags)
        ctx = RunContext(resolved=resolved, device=dev, progress=False, force=args.force,
                         work_dir=results.run_dir(args.spec, args.profile), tracker=tracker)
        state, out, claims = None, {"ran": [], "failed": []}, Path(args.claims)
        for key in args.keys:
            if not claim(claims, key, str(args.index)):
                continue
            if state is None:
                state = module.prepare(ctx)
            t0 = time.perf_counter()
            record = run_one_cell(ctx, module, state, cells[key], tags={"repro.job": args.index})
            how = "failed" if "failed" in record else "ran"
            out[how].append(key)
            echo(f"[job {args.index} {dev}] {key}: {'done' if how == 'ran' else 'FAILED'} "
                 f"({time.perf_counter() - t0:.1f} s)")
        return out
    finally:
        torch.set_num_threads(threads_before)


def main(argv: list[str]) -> int:
    args = CellWorkerArgs(**json.loads(argv[0]))
    try:
        work(args)
    except UserError as e:
        print(f"error: [job {args.index}] {str(e).splitlines()[0]}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as e:   # noqa: BLE001 (the parent reports the exit code; the trace is here)
        traceback.print_exc()
        print(f"error: [job {args.index}] cell crashed: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
