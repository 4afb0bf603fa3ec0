"""`repro sweep NAME --status`: finished / running / failed / remaining and the best so far.

Reads only: a storage or study that does not exist yet is reported, not created.
"""
from __future__ import annotations

from pathlib import Path

from repro.sweeps import queue
from repro.sweeps.refine import refine_study_name
from repro.sweeps.spec import resolve_sweep
from repro.sweeps.storage import check_identity, classify, find_study, open_storage
from repro.sweeps.studies import best_trials


def status_lines(name: str, profile: str | None, storage: str | None, study: str | None,
                 refine: bool = False) -> list[str]:
    rs = resolve_sweep(name, profile)
    main_name = study or rs.default_study()
    study_name = refine_study_name(main_name) if refine else main_name
    kind, target = classify(storage)
    if kind == "journal" and not Path(target).is_file():
        return [f"{rs.id} [{rs.profile}]: not started (no study storage at {target})"]
    st = open_storage(storage, readonly=True)
    found = find_study(st, study_name)
    if found is None:
        return [f"{rs.id} [{rs.profile}]: study {study_name!r} not started in {st.label}"]
    if not refine:
        check_identity(found, study_name, rs.identity("main"), st.label, wait_s=0)
    points = None if refine or rs.sweep.sampler != "grid" else rs.grid_points()
    budget = rs.sweep.refine.n_trials if refine else rs.budget()
    p = queue.progress(st, found, points, budget)
    what = "grid points" if points is not None else "trials"
    lines = [f"{rs.id} [{rs.profile}]: study {study_name!r} in {st.label}",
             f"  finished {p['finished']}/{p['budget']} {what}; running {p['running']}; waiting {p['waiting']}; "
             f"failed {p['failed']}; remaining {p['remaining']}"
             + (f" ({p['retried']} failed or interrupted trial(s) of points finished later)" if p["retried"] else "")]
    reused = sum(1 for t in p["trials"] if t.user_attrs.get("repro.reused") and t.state.name == "COMPLETE")
    if reused:
        lines.append(f"  {reused} finished trial(s) reused cells already in the results store")
    best = best_trials(found, rs)
    label = "best so far" if len(rs.metrics) == 1 else f"Pareto front so far ({len(best)} trials)"
    for b in best[:10]:
        vals = ", ".join(f"{m}={v:.4g}" for m, v in b["values"].items())
        ps = ", ".join(f"{k}={v!r}" for k, v in b["params"].items())
        lines.append(f"  {label}: trial {b['number']} ({ps}): {vals}")
        label = " " * len(label)
    if not best:
        lines.append("  no finished trial yet")
    return lines
