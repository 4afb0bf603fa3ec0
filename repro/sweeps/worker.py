"""The loop one worker runs: pop a point (or ask the sampler), run its trial, until the study is done.

`repro sweep --workers N` runs N of these as processes (`python -m repro.sweeps.worker ARGS`),
one runs in the command's own process when N = 1, and workers on other machines join the same
study by running the same command against the same RDB storage. A grid worker whose queue is
empty while other trials still run waits and looks again, so a point whose worker dies is taken
over (queue.sync) instead of waiting for the next invocation.
"""
from __future__ import annotations

import json
import os
import platform
import sys
import time
import traceback
from dataclasses import asdict, dataclass
from typing import Any

from pydantic import TypeAdapter

from repro.engine.tracked import attach_run
from repro.environment import resolve_device
from repro.errors import UserError
from repro.sweeps import queue
from repro.sweeps.liveness import WorkerLease
from repro.sweeps.samplers import make_sampler, worker_seed
from repro.sweeps.spec import Param, ResolvedSweep, resolve_sweep
from repro.sweeps.storage import open_storage
from repro.sweeps.trial import CellSource, TrialFailed, run_trial

POLL_S = {"journal": 0.5, "rdb": 2.0}


@dataclass
class WorkerArgs:
    sweep: str
    profile: str
    study: str
    stage: str                      # "main" | "refine"
    space: dict[str, dict]          # the stage's search space (Param dumps)
    storage: str | None             # as given to --storage (None: the default journal)
    invocation: str                 # one id per `repro sweep` command
    index: int = 0
    cap: int | None = None          # at most this many trials from this worker (--n-trials share)
    parent_run_id: str | None = None
    device: str = "auto"
    threads: int | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self))


def _space(dumps: dict[str, dict]) -> dict[str, Any]:
    adapter = TypeAdapter(Param)
    return {n: adapter.validate_python(d) for n, d in dumps.items()}


def work(args: WorkerArgs, echo=None, rs: ResolvedSweep | None = None) -> dict[str, Any]:
    """Run trials until the study needs no more from this worker; returns counts. The worker in the
    command's own process gets its resolved sweep; a worker process resolves it from its arguments."""
    import optuna
    import torch

    echo = echo or (lambda msg: print(msg, flush=True))
    if args.threads:
        torch.set_num_threads(args.threads)
    if rs is None:
        rs = resolve_sweep(args.sweep, args.profile)
    space = _space(args.space)
    grid = args.stage == "main" and rs.sweep.sampler == "grid"
    points = rs.grid_points() if grid else None
    budget = rs.budget() if args.stage == "main" else rs.sweep.refine.n_trials
    kind = rs.sweep.sampler if args.stage == "main" else rs.sweep.refine.sampler
    st = open_storage(args.storage)
    attempt = len(optuna.load_study(study_name=args.study, storage=st.storage).get_trials(deepcopy=False))
    seed = worker_seed(rs.sweep.seed, args.study, platform.node(), args.index, attempt)
    study = optuna.load_study(study_name=args.study, storage=st.storage,
                              sampler=make_sampler(kind, space, budget, seed, len(rs.metrics)))
    dev = resolve_device(args.device)
    tracker = attach_run(rs.base, dev, args.parent_run_id,
                         {"repro.sweep": rs.id, "repro.study": args.study, "repro.worker_index": args.index})
    cells = CellSource(rs.base, dev, tracker)
    lease = WorkerLease(st)
    me = f"w{args.index}"
    counts = {"computed": 0, "reused": 0, "stood_down": 0, "failed": 0}
    try:
        while args.cap is None or counts["computed"] + counts["reused"] < args.cap:
            trial = queue.pop(st, study)
            if trial is None:
                queue.sync(st, study, points, args.invocation)
                trial = queue.pop(st, study)
            if trial is None:
                prog = queue.progress(st, study, points, budget)
                if not grid:   # failed cells count too, so that a sweep whose every cell fails ends
                    if prog["finished"] + prog["running"] + counts["failed"] >= budget:
                        break
                    trial = study.ask()
                elif not prog["remaining"] or not prog["running"]:
                    break   # all done, or what remains raised in this invocation
                else:
                    time.sleep(POLL_S[st.kind])   # others are running the last points
                    continue
            other = queue.claim(st, study, trial)
            if other is not None:
                trial.set_user_attr("repro.duplicate_of", other)
                study.tell(trial, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
                counts["stood_down"] += 1
                continue
            out = run_trial(study, trial, rs, space, cells, st, lease.id, args.invocation, echo)
            how = "reused" if out["reused"] else "computed"
            counts[how] += 1
            if out["state"] != "COMPLETE":
                counts["failed"] += 1
            shown = ", ".join(f"{m}={v:.4g}" for m, v in zip(rs.metrics, out["values"])) or out["problem"]
            echo(f"[{me}] trial {out['number']} {out['key']}: {shown} ({how}, {out['seconds']:.1f} s, {out['state']})")
    finally:
        lease.release()
    return counts


def main(argv: list[str]) -> int:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")   # as the CLI does: shared cores
    args = WorkerArgs(**json.loads(argv[0]))
    try:
        work(args)
    except UserError as e:
        print(f"error: [w{args.index}] {str(e).splitlines()[0]}", file=sys.stderr, flush=True)
        return 2
    except TrialFailed as e:
        traceback.print_exception(e.__cause__, file=sys.stderr)
        print(f"error: [w{args.index}] {e}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
