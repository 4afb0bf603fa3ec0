"""Plans and costs in words: `repro plan`'s listing, the cost line of a report, `repro run`'s warning."""
from __future__ import annotations

from repro.errors import UserError
from repro.plan.build import SpecPlan, plan_spec
from repro.plan.estimate import Estimate, estimate, fmt_count, fmt_seconds
from repro.results import last_run
from repro.plan.store import Calibration, calibrations_newest_first
from repro.work import LOOP, SIGMA_PAIRS, CellWork

UNITS = {"eval": "network evaluations", "grad": "guide forward+backward", "train": "training images (steps x batch)",
         "features": "feature-extraction images"}


def unit_counts_text(work: CellWork) -> str:
    """The work in its units: network evaluations per op, and the sigma_max image pairs; the training
    loop's own per-step item repeats the training images and is not shown."""
    counts: dict[str, int] = {}
    pairs = 0
    for w in work.items:
        if w.net.name == SIGMA_PAIRS:
            pairs += w.images
        elif w.net.name != LOOP:
            counts[w.op] = counts.get(w.op, 0) + w.images
    parts = [f"{fmt_count(n)} {UNITS[op]}" for op, n in counts.items()]
    if pairs:
        parts.append(f"{fmt_count(pairs)} image pairs (sigma_max estimate)")
    return ", ".join(parts) or "nothing"


def units_text(work: CellWork) -> str:
    """e.g. 'eval 1.6M (ncsnpp_cityscapes), grad 800k (noisy_unet)'."""
    by: dict[tuple[str, str], int] = {}
    for w in work.items:
        by[(w.op, w.net.name)] = by.get((w.op, w.net.name), 0) + w.images
    return ", ".join(f"{op} {fmt_count(n)} ({name})" for (op, name), n in by.items()) or "no network work"


def cost_text(est: Estimate, cal: Calibration | None) -> str:
    if cal is None or not cal.entries:
        return "no calibration for this device"
    if est.missing and not est.seconds:
        return "not calibrated on this device"
    parts = [f"at least {fmt_seconds(est.seconds)} ({len(est.missing)} uncalibrated network op(s) not included)"
             if est.missing else f"~{fmt_seconds(est.seconds)}"]
    if est.dominant is not None:
        name, op, ips = est.dominant
        parts.append(f"mostly {name} {op} at {ips:.3g} images/s")
    if est.unknown:
        parts.append(f"+ {len(est.unknown)} uncounted part(s)")
    if est.peak_memory_mb is not None:
        parts.append(f"peak {est.peak_memory_mb:.0f} MiB ({est.memory_kind})")
    return ", ".join(parts)


def calibration_text(cal: Calibration | None) -> str:
    if cal is None or not cal.entries:
        return "no stored calibration"
    return f"calibration of {cal.device}, last measured {cal.latest}"


def plan_lines(plan: SpecPlan, cal: Calibration | None, cells: bool = True) -> list[str]:
    lines = [f"{plan.spec_id} [{plan.profile}] {plan.kind}, spec hash {plan.hash}: {len(plan.cells)} cells, "
             f"{len(plan.cells) - len(plan.todo)} finished, {len(plan.todo)} to run"]
    if plan.unknown_kind:
        lines.append(f"  work units unknown for kind {plan.kind}")
    for m in plan.models:
        state = (f"in {m.path}" if m.present else f"to train -> {m.path}" if m.work.items
                 else f"not in artifacts/ yet (no training) -> {m.path}")
        lines.append(f"  model {m.name} ({m.kind}, {m.needed_by}): {state}")
        if not m.present:
            for w in m.work.items:
                lines.append(f"    {w.what}")
            for note in m.work.notes + m.work.unknown:
                lines.append(f"    {note}")
            lines.append(f"    cost: {cost_text(estimate(m.work, cal), cal)}")
    if plan.prepare.items or plan.prepare.unknown:
        lines.append(f"  prepare (once per run): {units_text(plan.prepare)}; "
                     f"{cost_text(estimate(plan.prepare, cal), cal)}")
    if cells:
        for c in plan.cells:
            work = c.work if c.finished else c.resume
            state = "finished" if c.finished else "to run"
            extra = "; " + "; ".join(dict.fromkeys(work.unknown + work.notes)) if work.unknown or work.notes else ""
            lines.append(f"  cell {c.key} [{state}]: {units_text(work)}; {cost_text(estimate(work, cal), cal)}{extra}")
    todo = plan.work_to_do()
    est = estimate(todo, cal)
    lines.append(f"  to run now: {unit_counts_text(todo)}; {cost_text(est, cal)}")
    if est.missing:
        lines.append(f"  not calibrated: {', '.join(est.missing)}")
    return lines


def report_cost_lines(spec_id: str, profile: str, spec_hash: str, cell_seconds: list[float]) -> list[str]:
    """The cost line of a report's profile section: the measured wall time of the last `repro run` of
    this resolved spec (engine-recorded), else the sum of its cells' own times."""
    rec = last_run(spec_id, profile, spec_hash)
    if rec is not None:
        return [f"Cost: the last `repro run` took {fmt_seconds(rec['seconds'])} wall time on {rec['device']} "
                f"({rec['cells_run']} cell(s) computed; before the first cell: {fmt_seconds(rec['prepare_seconds'])} "
                f"of preparation and model training; finished {rec['finished_at']}).", ""]
    if cell_seconds:
        return [f"Cost: the cells shown took {fmt_seconds(sum(cell_seconds))} of compute in total (the sum of "
                f"their own times; the run's total wall time, with preparation and training, was not recorded).", ""]
    return []


def paper_estimate_line(spec_id: str) -> str:
    """The estimated wall time of the whole table at the paper profile on the device of the last
    calibration (every model trained, every cell), or why there is none."""
    try:
        plan = plan_spec(spec_id, "paper")
    except UserError as e:
        return f"Paper-scale cost: no plan ({e})."
    work = plan.work_all()
    units = unit_counts_text(work)
    cals = calibrations_newest_first()
    if not cals:
        return (f"Paper-scale cost: {units}; no calibration stored (`repro plan {spec_id} --profile paper "
                f"--calibrate` on the target device).")
    # the most recent calibration that covers this table's paper networks (else the most recent one)
    cal = next((c for c in cals if estimate(work, c).seconds > 0), cals[0])
    est = estimate(work, cal)
    gaps = ""
    if est.missing:
        gaps = f"; networks not calibrated there: {', '.join(sorted({m.split(' ')[0] for m in est.missing}))}"
    if est.unknown:
        gaps += f"; not counted: {'; '.join(est.unknown)}"
    if not est.seconds and est.missing:
        return f"Paper-scale cost: {units}; the calibration of {cal.device} ({cal.latest}) covers none of its networks."
    return (f"Paper-scale cost: {units}; estimated {fmt_seconds(est.seconds)} on {cal.device} "
            f"(calibrated {cal.latest}, `repro plan {spec_id} --profile paper`){gaps}.")
