"""Know the cost before the run (issue 13): `repro plan SPEC|all` lists the cells to run and those
finished, the models to train and those in artifacts/, and the work of each in the units that
decide its cost; `--calibrate` times the networks involved on the device and turns the work into
wall time and memory; `repro run` warns before a long run; every report carries its cost.

The units are repro.work's; each experiment kind's estimator sits with the kind, in its family's
cost module (repro.experiments.<family>.cost, found through KINDS). Here: training.py (per model
kind), build.py (a spec's plan), calibrate.py (timing networks), store.py (calibrations per device),
estimate.py, runs.py (measured wall times), render.py.
"""
from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable

from repro.environment import resolve_device
from repro.errors import UserError
from repro.specs import ResolvedSpec
from repro.plan.build import plan_resolved, plan_spec
from repro.plan.calibrate import calibrate as run_calibration
from repro.plan.estimate import estimate, fmt_seconds
from repro.plan.render import calibration_text, plan_lines
from repro.plan.store import Calibration, device_identity, load_calibration, save_calibration
from repro.work import CellWork

WARN_HOURS_ENV = "REPRO_PLAN_WARN_HOURS"
DEFAULT_WARN_HOURS = 1.0


def plan_command(ids: list[str], profile: str, overrides: dict, device: str, calibrate: bool,
                 echo: Callable[[str], None], cells: bool = True, budget_s: float = 2.0) -> None:
    """`repro plan`: print each spec's plan and cost; with `calibrate`, time its networks first."""
    dev = resolve_device(device)
    plans = [plan_spec(i, profile, overrides, device_type=dev.type) for i in ids]
    slug, name = device_identity(dev)
    cal = load_calibration(slug, name)
    if calibrate:
        work = CellWork()
        for p in plans:
            work.extend(p.work_all())
        echo(f"calibrating on {name} (random weights; warm-up, then the median of calls for ~{budget_s:g} s each)")
        fresh = run_calibration(work, dev, Calibration(slug, name), budget_s, echo)
        path = save_calibration(fresh)
        echo(f"calibration stored in {path}")
        cal = load_calibration(slug, name)
    echo(f"device {name}: {calibration_text(cal)}")
    for p in plans:
        for line in plan_lines(p, cal, cells=cells):
            echo(line)


def warn_hours() -> float:
    raw = os.environ.get(WARN_HOURS_ENV)
    if raw is None:
        return DEFAULT_WARN_HOURS
    try:
        value = float(raw)
    except ValueError:
        raise UserError(f"{WARN_HOURS_ENV}={raw!r}: expected a number of hours") from None
    if value <= 0:
        raise UserError(f"{WARN_HOURS_ENV}={raw!r}: must be positive")
    return value


def run_guard(resolved: list[ResolvedSpec], device: str, yes: bool, echo: Callable[[str], None],
              max_hours: float | None = None, interactive: bool | None = None) -> None:
    """Before `repro run`: estimate what the run will compute now; above the threshold, require --yes
    on a terminal, or proceed and say so when stdin is not one. Without a calibration, say so."""
    ids = [r.id for r in resolved]
    profile = resolved[0].profile if resolved else "smoke"
    if max_hours is not None and not (math.isfinite(max_hours) and max_hours > 0):
        raise UserError(f"--max-hours {max_hours}: must be a positive number of hours")
    limit = warn_hours() if max_hours is None else max_hours
    dev = resolve_device(device)
    slug, name = device_identity(dev, start_cuda=False)   # the run's parent starts no CUDA context
    if not slug:
        echo(f"note: {name}: the run's cost is not estimated")
        return
    try:   # the estimate must never stop a run that the preflight let through
        cal = load_calibration(slug, name)
        work = CellWork()
        for r in resolved:
            work.extend(plan_resolved(r, device_type=dev.type).work_to_do())
        est = estimate(work, cal)
    except Exception as e:   # noqa: BLE001
        echo(f"note: the run's cost could not be estimated ({type(e).__name__}: {e})")
        return
    if not work.items:
        return
    if not cal.entries or not est.seconds:
        echo(f"note: no calibration on {name} for this run: its cost is unknown "
             f"(`repro plan {ids[0] if len(ids) == 1 else 'all'} --profile {profile} --calibrate`)")
        return
    if est.missing:
        echo(f"note: {len(est.missing)} network op(s) of this run are not calibrated on {name}; the estimate "
             f"({fmt_seconds(est.seconds)}) is a lower bound (`repro plan ... --calibrate`)")
    if est.seconds <= limit * 3600:
        return
    gaps = f" (+ {len(est.missing)} uncalibrated network op(s))" if est.missing else ""
    msg = (f"estimated {fmt_seconds(est.seconds)}{gaps} on {name} (calibrated {cal.latest}), above the "
           f"{limit:g} h threshold ({WARN_HOURS_ENV} or --max-hours)")
    if yes:
        echo(f"note: {msg}; proceeding (--yes)")
        return
    interactive = sys.stdin.isatty() if interactive is None else interactive
    if interactive:
        raise UserError(f"{msg}; `repro plan` shows the work; rerun with --yes to start it")
    echo(f"note: {msg}; stdin is not a terminal, proceeding without --yes")
