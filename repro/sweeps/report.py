"""`repro report sweep:NAME`: a sweep's studies as a markdown report with figures.

Per profile whose study exists: the grid as a heatmap (two grid names) or a curve (one), with the
sweep's best and the published best marked; the optimisation history (value and best so far per
trial); for several objectives the Pareto front, with the published points beside it (the same
axes when the profile measures the published metrics, a panel of their own when it does not:
fd_evalnet on embedded data is never drawn as if it were the paper's FID). Everything is drawn
from the study's trials; nothing is recomputed.
"""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from repro.atomic import atomic_write_text
from repro.plots import pyplot, save
from repro.reporting.render import _markdown, reports_root
from repro.specs import PROFILES, list_spec_ids
from repro.sweeps.refine import refine_study_name
from repro.sweeps.spec import CategoricalParam, GridParam, ResolvedSweep, list_sweep_ids, resolve_sweep
from repro.sweeps.storage import classify, find_study, open_storage
from repro.sweeps.studies import best_trials

PREFIX = "sweep:"


def sweep_name(arg: str) -> str | None:
    """`sweep:NAME` -> NAME; a bare NAME that is a sweep and no spec -> NAME; else None."""
    if arg.startswith(PREFIX):
        return arg[len(PREFIX):]
    if arg in list_sweep_ids() and arg not in list_spec_ids():
        return arg
    return None


def _complete(study) -> list:
    from optuna.trial import TrialState

    return sorted(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), key=lambda t: t.number)


def render_sweep_report(name: str, storage: str | None = None) -> list[Path]:
    """reports/sweep-NAME.md and its figures, from every profile's default study (and refine study)."""
    written = resolve_sweep(name)
    out_dir = reports_root()
    out_dir.mkdir(parents=True, exist_ok=True)
    sw = written.sweep
    lines = [f"# Sweep {sw.id}: {sw.title}", "",
             f"Base spec `{sw.base}`" + (f"; source: {sw.source.cite()}" if sw.source else "") +
             f". Sampler `{sw.sampler}`; objectives: " +
             ", ".join(f"{o.metric} ({o.direction})" for o in sw.objectives) + ".", ""]
    if sw.description:
        lines += [sw.description.strip(), ""]
    lines += _published_lines(written)
    kind, target = classify(storage)
    st = None if kind == "journal" and not Path(target).is_file() else open_storage(storage, readonly=True)
    figures: list[Path] = []
    found_any = False
    for profile in PROFILES:
        rs = resolve_sweep(name, profile)
        study = find_study(st, rs.default_study()) if st is not None else None
        if study is None or not _complete(study):
            continue
        found_any = True
        stem = f"sweep-{name}_{profile}"
        lines += [f"## Profile `{profile}`: study `{study.study_name}`", ""]
        lines += _study_lines(rs, study)
        figs = [history_figure(rs, study, out_dir / f"{stem}_history.png")]
        if rs.sweep.sampler == "grid":
            figs.append(grid_figure(rs, study, out_dir / f"{stem}_grid.png"))
        else:
            figs.append(params_figure(rs, study, out_dir / f"{stem}_params.png"))
        if len(rs.metrics) >= 2:
            figs.append(pareto_figure(rs, study, out_dir / f"{stem}_pareto.png"))
        refine = find_study(st, refine_study_name(study.study_name))
        if refine is not None and _complete(refine):
            lines += [f"### Refinement: study `{refine.study_name}`", ""] + _study_lines(rs, refine)
            figs.append(history_figure(rs, refine, out_dir / f"{stem}_refine_history.png"))
        for f in [f for f in figs if f is not None]:
            lines += [f"![{f.stem}]({f.name})", ""]
            figures.append(f)
    if not found_any:
        lines += ["_No finished trial yet: `repro sweep " + name + " --profile P`._", ""]
    lines += [f"_Rendered {datetime.now(timezone.utc).isoformat(timespec='seconds')} from the studies in "
              f"{st.label if st else target} by `repro report sweep:{name}`._", ""]
    path = out_dir / f"sweep-{name}.md"
    atomic_write_text(path, "\n".join(lines))
    return [path, *figures]


def _published_lines(rs: ResolvedSweep) -> list[str]:
    pub = rs.sweep.published
    lines = ["## Published", ""]
    if pub.best:
        lines += ["Published best: " + ", ".join(f"{k} = {v}" for k, v in pub.best.items()) + ".", ""]
    if pub.notes:
        lines += [pub.notes.strip(), ""]
    for c in pub.conflicts:
        lines += [f"**Sources disagree:** {c.strip()}", ""]
    if not (pub.best or pub.notes or pub.conflicts or published_points(rs)):
        lines += ["None.", ""]
    return lines


def _study_lines(rs: ResolvedSweep, study) -> list[str]:
    trials = _complete(study)
    reused = sum(1 for t in trials if t.user_attrs.get("repro.reused"))
    failed = sum(1 for t in study.get_trials(deepcopy=False) if t.state.name == "FAIL")
    lines = [f"{len(trials)} finished trials ({reused} reused from the results store), {failed} failed "
             f"(dead workers' or stood-down duplicates, retried).", ""]
    best = best_trials(study, rs)
    label = "Best trial" if len(rs.metrics) == 1 else f"Pareto front ({len(best)} trials)"
    rows = [{"trial": str(b["number"]), **{k: repr(v) for k, v in b["params"].items()},
             **{m: f"{v:.4g}" for m, v in b["values"].items()}} for b in best]
    lines += [f"{label}:", "", _markdown(rows), ""]
    return lines


def history_figure(rs: ResolvedSweep, study, path: Path) -> Path | None:
    trials = _complete(study)
    if not trials:
        return None
    from matplotlib.ticker import MaxNLocator

    plt = pyplot()
    n = len(rs.metrics)
    fig, axes = plt.subplots(1, n, figsize=(5.2 * n, 3.4), squeeze=False)
    for j, (m, d) in enumerate(zip(rs.metrics, rs.directions)):
        ax = axes[0][j]
        xs = [t.number for t in trials]
        ys = [t.values[j] for t in trials]
        pick = min if d == "minimize" else max
        best = [pick(ys[: i + 1]) for i in range(len(ys))]
        reused = [t.user_attrs.get("repro.reused", False) for t in trials]
        ax.scatter([x for x, r in zip(xs, reused) if not r], [y for y, r in zip(ys, reused) if not r],
                   s=18, label="computed")
        if any(reused):
            ax.scatter([x for x, r in zip(xs, reused) if r], [y for y, r in zip(ys, reused) if r], s=18,
                       marker="s", facecolors="none", edgecolors="C2", label="reused cell")
        ax.step(xs, best, where="post", color="C3", label="best so far")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("trial")
        ax.set_ylabel(f"{m} ({d})")
        ax.legend(fontsize=7)
    fig.suptitle(f"{rs.id} [{rs.profile}]: optimisation history of {study.study_name}", fontsize=10)
    return save(fig, path)


def _grid_names(rs: ResolvedSweep) -> list[str]:
    return [n for n in rs.names if isinstance(rs.space[n], (GridParam, CategoricalParam))
            and len(rs.space[n].values if isinstance(rs.space[n], GridParam) else rs.space[n].choices) > 1]


def _position(v: float, axis: list[float]) -> float | None:
    """Where a value falls on a categorical axis (linear between neighbours); None outside it."""
    if not axis or v < min(axis) - 1e-12 or v > max(axis) + 1e-12:
        return None
    for i in range(len(axis) - 1):
        a, b = axis[i], axis[i + 1]
        if min(a, b) - 1e-12 <= v <= max(a, b) + 1e-12:
            return i + (0.0 if b == a else (v - a) / (b - a))
    return float(axis.index(min(axis, key=lambda x: abs(x - v))))


def grid_figure(rs: ResolvedSweep, study, path: Path) -> Path | None:
    """Two grid names: a heatmap of the first objective; one: the objective over it."""
    import numpy as np

    names = _grid_names(rs)
    trials = _complete(study)
    if not names or not trials or len(names) > 2:
        return None
    m, d = rs.metrics[0], rs.directions[0]
    pub = rs.sweep.published.best or {}
    plt = pyplot()
    if len(names) == 1:
        x = names[0]
        pts = sorted((float(t.params[x]), t.values[0]) for t in trials)
        fig, ax = plt.subplots(figsize=(5.6, 3.6))
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o")
        b = (min if d == "minimize" else max)(pts, key=lambda p: p[1])
        ax.scatter([b[0]], [b[1]], s=120, marker="*", color="C3", zorder=5, label=f"sweep best ({x} = {b[0]:g})")
        if x in pub:
            ax.axvline(float(pub[x]), ls="--", color="C1", label=f"published: {x} = {pub[x]}"
                       + (f" ({pub['note']})" if "note" in pub else ""))
        ax.set_xlabel(x)
        ax.set_ylabel(f"{m} ({d})")
        ax.legend(fontsize=7)
        fig.suptitle(f"{rs.id} [{rs.profile}]: {m} over {x}", fontsize=10)
        return save(fig, path)
    rows, cols = names
    row_vals = sorted({float(t.params[rows]) for t in trials} | set(map(float, _values(rs, rows))))
    col_vals = sorted({float(t.params[cols]) for t in trials} | set(map(float, _values(rs, cols))))
    M = np.full((len(row_vals), len(col_vals)), np.nan)
    for t in trials:
        M[row_vals.index(float(t.params[rows])), col_vals.index(float(t.params[cols]))] = t.values[0]
    fig, ax = plt.subplots(figsize=(1.1 * len(col_vals) + 3.2, 0.6 * len(row_vals) + 2.6))
    im = ax.imshow(np.ma.masked_invalid(M), cmap="viridis_r" if d == "minimize" else "viridis", aspect="auto")
    ax.set_facecolor("#dddddd")
    ax.grid(False)
    ax.set_xticks(range(len(col_vals)), [f"{v:g}" for v in col_vals], rotation=45, fontsize=8)
    ax.set_yticks(range(len(row_vals)), [f"{v:g}" for v in row_vals], fontsize=8)
    ax.set_xlabel(cols)
    ax.set_ylabel(rows)
    from matplotlib.patches import Rectangle

    lo, hi = float(np.nanmin(M)), float(np.nanmax(M))
    for i in range(M.shape[0]):
        for j in range(M.shape[1]):
            if np.isfinite(M[i, j]):
                good = (M[i, j] - lo) / max(hi - lo, 1e-12)
                light = good < 0.5 if d == "minimize" else good >= 0.5   # the colormap's light end
                ax.text(j, i, f"{M[i, j]:.4g}", ha="center", va="center", fontsize=7,
                        color="black" if light else "white")
    bi, bj = np.unravel_index(np.nanargmin(M) if d == "minimize" else np.nanargmax(M), M.shape)
    ax.add_patch(Rectangle((bj - 0.5, bi - 0.5), 1, 1, fill=False, ec="red", lw=2.5,
                           label=f"sweep best ({rows} = {row_vals[bi]:g}, {cols} = {col_vals[bj]:g})"))
    note = None
    if rows in pub and cols in pub:
        label = f"published best ({rows} = {pub[rows]}, {cols} = {pub[cols]}" + \
                "".join(f", {k} {v}" for k, v in pub.items() if k not in (rows, cols, "note")) + ")"
        pr, pc = _position(float(pub[rows]), row_vals), _position(float(pub[cols]), col_vals)
        if pr is not None and pc is not None:
            ax.scatter([pc], [pr], s=140, marker="P", color="orange", edgecolors="black", zorder=6, label=label)
        else:
            note = f"{label} lies outside this profile's grid"
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.28 if note is None else -0.24), ncol=1)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label=m)
    fig.suptitle(f"{rs.id} [{rs.profile}]: {m} over {rows} x {cols}", fontsize=10)
    if note:
        fig.text(0.5, 0.01, note, ha="center", va="bottom", fontsize=7)
    return save(fig, path)


def params_figure(rs: ResolvedSweep, study, path: Path) -> Path | None:
    """A sampled sweep: each objective over each searched name, one point per trial."""
    trials = _complete(study)
    names = [n for n in rs.names if len({t.params[n] for t in trials}) > 1]
    if not trials or not names:
        return None
    plt = pyplot()
    fig, axes = plt.subplots(len(rs.metrics), len(names), figsize=(4.4 * len(names), 3.2 * len(rs.metrics)),
                             squeeze=False)
    for i, (m, d) in enumerate(zip(rs.metrics, rs.directions)):
        for j, n in enumerate(names):
            ax = axes[i][j]
            ax.scatter([t.params[n] for t in trials], [t.values[i] for t in trials], s=18, c=[t.number for t in trials],
                       cmap="viridis")
            ax.set_xlabel(n)
            ax.set_ylabel(f"{m} ({d})")
    fig.suptitle(f"{rs.id} [{rs.profile}]: objectives over the searched settings (colour: trial number)", fontsize=10)
    return save(fig, path)


def _values(rs: ResolvedSweep, name: str) -> list[Any]:
    p = rs.space[name]
    return p.values if isinstance(p, GridParam) else p.choices


def published_points(rs: ResolvedSweep) -> list[dict[str, Any]]:
    """Published points with values: the sweep's own, then the base spec's published cells."""
    return [p for p in [*rs.sweep.published.points, *rs.base.spec.paper.cells]
            if any(isinstance(v, (int, float)) and not isinstance(v, bool) for k, v in p.items() if k not in rs.names)]


def _published_metric(metric: str, points: list[dict[str, Any]]) -> str | None:
    """The published metric an objective corresponds to: itself, or `fid` for a Frechet distance."""
    if any(metric in p for p in points):
        return metric
    if metric.startswith("fd_") and any("fid" in p for p in points):
        return "fid"
    return None


def pareto_figure(rs: ResolvedSweep, study, path: Path) -> Path | None:
    trials = _complete(study)
    if len(rs.metrics) < 2 or not trials:
        return None
    (mx, my), (dx, dy) = rs.metrics[:2], rs.directions[:2]
    front = {t.number for t in study.best_trials}
    points = published_points(rs)
    px, py = _published_metric(mx, points), _published_metric(my, points)
    shown = [p for p in points if px and py and px in p and py in p]
    same_axes = (px, py) == (mx, my)
    plt = pyplot()
    panels = 1 if same_axes or not shown else 2
    fig, axes = plt.subplots(1, panels, figsize=(5.4 * panels, 4.0), squeeze=False)
    ax = axes[0][0]
    other = [t for t in trials if t.number not in front]
    ax.scatter([t.values[0] for t in other], [t.values[1] for t in other], s=16, color="C0", alpha=0.6,
               label="trials")
    fr = sorted((t for t in trials if t.number in front), key=lambda t: t.values[0])
    ax.plot([t.values[0] for t in fr], [t.values[1] for t in fr], marker="o", color="C3", label="Pareto front")
    ax.set_xlabel(f"{mx} ({dx})")
    ax.set_ylabel(f"{my} ({dy})")
    ax.set_title(f"reproduced [{rs.profile}]", fontsize=10)
    target = ax if same_axes else (axes[0][1] if shown else None)
    if target is not None and shown:
        # Tab. 5.3 varies s0 only: its points are a curve, labelled with their setting.
        shown = sorted(shown, key=lambda p: p[px])
        target.plot([p[px] for p in shown], [p[py] for p in shown], marker="s", ls="--", color="C1",
                    label="published")
        for p in shown:
            lab = ", ".join(f"{k}={p[k]:g}" for k in rs.names if k in p and isinstance(p[k], (int, float)))
            target.annotate(lab, (p[px], p[py]), fontsize=6, xytext=(3, 3), textcoords="offset points")
        if target is not ax:
            target.set_xlabel(f"{px} (published protocol)")
            target.set_ylabel(py)
            target.set_title("published", fontsize=10)
        target.legend(fontsize=7)
    ax.legend(fontsize=7)
    fig.suptitle(f"{rs.id}: {mx} vs {my}", fontsize=10)
    return save(fig, path)
