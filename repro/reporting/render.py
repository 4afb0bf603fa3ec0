"""Reports rendered from the results files alone: reproduced vs published values, figures, notes.

`render_report(id)` writes reports/<id>.md plus figures beside it; `render_index()` writes
reports/README.md with every spec's status (not run / partial / done) and date.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from repro import environment, results
from repro.atomic import atomic_write_text
from repro.errors import UserError
from repro.experiments import report_module, resolve_spec
from repro.reporting.current import resolved_for_results
from repro.reporting.claims import claim_rows, index_lines, report_claims_lines
from repro.plan.render import paper_estimate_line, report_cost_lines
from repro.specs.references import DOCUMENTS
from repro.specs import PROFILES, Spec, cell_key, list_spec_ids, load_spec, match_cell, resolve_model
from repro.tracking.runs import log_to_parent_runs
from repro.tracking.runs import report_link

REPORTS_DIR = "reports"


def reports_root() -> Path:
    return Path(os.environ.get("REPRO_REPORTS", REPORTS_DIR))


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _fmt_setting(v: Any) -> str:
    """A grid value exactly as given (b = 1.0004 must not print as 1)."""
    if isinstance(v, float) and not math.isnan(v):
        return repr(v)
    return _fmt(v)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return text == "–"
    return True


def _markdown(rows: list[dict[str, str]]) -> str:
    """Rows of already formatted strings as a markdown table, numbers right-aligned, text left;
    the strings are printed as they are (no re-parsing that would round 1.0004 to 1)."""
    import pandas as pd

    frame = pd.DataFrame(rows).fillna("–")
    align = ["right" if all(_is_number(str(v)) for v in frame[c]) else "left" for c in frame.columns]
    return frame.to_markdown(index=False, disable_numparse=True, colalign=align)


def cells_frame(spec_id: str, profile: str):
    """One row per finished cell: grid values, metric values and scalar extras."""
    import pandas as pd

    rows = []
    for rec in results.read_cells(spec_id, profile):
        row = dict(rec["cell"])
        row.update(rec.get("values", {}))
        for k, v in (rec.get("extra") or {}).items():
            if k not in row:
                row[k] = v
        row["_seconds"] = rec.get("seconds")
        row["_finished_at"] = rec.get("finished_at")
        row["_spec_hash"] = rec.get("spec_hash")
        row["_device"] = rec.get("device")
        row["_git_commit"] = rec.get("git_commit")
        row["_environment"] = _environment_key(rec.get("environment"))
        rows.append(row)
    return pd.DataFrame(rows)


def _environment_key(env: dict[str, Any] | None) -> str | None:
    return json.dumps(env, sort_keys=True) if env else None


def _environment_lines(df) -> list[str]:
    """The package versions, threads and torch build of the cells a report shows (one line per
    distinct environment; cells from before environments were recorded are counted as such)."""
    if not len(df) or "_environment" not in df.columns:
        return []
    keys = [k if isinstance(k, str) else None for k in df["_environment"]]   # pandas: None -> NaN
    known = sorted({k for k in keys if k})
    missing = sum(1 for k in keys if not k)
    lines = []
    for k in known:
        n = sum(1 for x in keys if x == k)
        where = "" if len(known) == 1 and not missing else f" ({n} of {len(keys)} cells)"
        lines.append(f"Environment{where}: {environment.describe(json.loads(k))}.")
    if missing:
        lines.append(f"Environment not recorded for {missing} of {len(keys)} cells (computed before "
                     f"results recorded it).")
    return [" ".join(lines), ""]


def _display_root() -> str:
    """The results folder as the report names it: relative to the working directory, never absolute."""
    root = results.results_root()
    if not root.is_absolute():
        return root.as_posix()
    try:
        return Path(os.path.relpath(root, Path.cwd())).as_posix() if root.is_relative_to(Path.cwd()) else "$REPRO_RESULTS"
    except ValueError:
        return "$REPRO_RESULTS"


def comparison_table(spec: Spec, df, metrics: list[str]) -> str:
    """Markdown table: grid columns, then reproduced / published / difference per metric."""
    grid_cols = list(spec.grid)
    published = spec.paper.cells
    with_paper = {m for m in metrics if any(m in p for p in published)}
    out_rows = []
    for _, row in df.iterrows():
        cell = {k: row[k] for k in grid_cols}
        pub = next((p for p in published if match_cell(p, cell)), {})
        r: dict[str, Any] = {k: _fmt_setting(row[k]) for k in grid_cols}
        for m in metrics:
            mine = row.get(m)
            theirs = pub.get(m)
            r[m] = _fmt(mine)
            if f"{m}_se" in df.columns:   # repeated sampling runs: the standard error of the mean beside it
                r[f"{m} s.e."] = _fmt(row.get(f"{m}_se"))
            if m in with_paper:
                r[f"{m} (paper)"] = _fmt(theirs)
                both = isinstance(mine, (int, float)) and isinstance(theirs, (int, float))
                r[f"Δ {m}"] = _fmt(float(mine) - float(theirs)) if both else "–"
        out_rows.append(r)
    if not out_rows:
        return "_No finished cells._"
    return _markdown(out_rows)


def protocol_differences(spec_id: str, profile: str, overrides: dict[str, Any] | None = None) -> list[str]:
    """Where this profile's protocol differs from the paper profile's (dataset, resolution, fixed)."""
    here_resolved = resolve_spec(spec_id, profile, overrides)
    here = here_resolved.spec
    if profile == "paper" and not overrides:
        return []
    paper = resolve_spec(spec_id, "paper").spec
    diffs = []
    if here.dataset.name != paper.dataset.name:
        diffs.append(f"dataset {here.dataset.name} (paper: {paper.dataset.name})")
    if here.dataset.resolution != paper.dataset.resolution:
        r = lambda x: "x".join(map(str, x)) if x else "native"  # noqa: E731
        diffs.append(f"resolution {r(here.dataset.resolution)} (paper: {r(paper.dataset.resolution)})")
    for k, v in here.fixed.items():
        if paper.fixed.get(k) != v:
            diffs.append(f"{k} {v} (paper: {paper.fixed.get(k)})")
    if here.grid != paper.grid:
        for k in here.grid:
            if here.grid[k] != paper.grid.get(k):
                diffs.append(f"{k} grid of {len(here.grid[k])} values (paper: {len(paper.grid.get(k, []))})")
    by_setting: dict[str, list[str]] = {}  # differing setting -> the models it concerns
    for role, name in here.models.items():
        paper_name = paper.models.get(role)
        if paper_name is None:  # a model the paper's protocol does not use (e.g. our evaluator)
            continue
        if paper_name != name:
            diffs.append(f"{role} model {name} (paper: {paper_name})")
        m_here, m_paper = here_resolved.model(role), resolve_model(paper_name, "paper")
        for section in ("net", "train"):
            a, b = getattr(m_here.config, section), getattr(m_paper.config, section)
            for k, v in a.items():
                if b.get(k) != v:
                    by_setting.setdefault(f"{section}.{k} {v} (paper: {b.get(k)})", []).append(name)
    by_models: dict[tuple[str, ...], list[str]] = {}
    for what, names in by_setting.items():
        by_models.setdefault(tuple(names), []).append(what)
    for names, whats in by_models.items():
        diffs.append(f"model{'s' if len(names) > 1 else ''} {', '.join(names)}: {', '.join(whats)}")
    return diffs


def status(spec_id: str, profile: str) -> tuple[str, int, int, str | None]:
    """('not run' | 'partial' | 'done', finished cells, total cells, date of the last cell)."""
    resolved = resolved_for_results(spec_id, profile)
    keys = [cell_key(c) for c in resolved.cells()]
    done = []
    for k in keys:
        rec = results.read_cell(spec_id, profile, k)
        if rec is not None and rec.get("spec_hash") == resolved.hash:
            done.append(rec.get("finished_at") or "")
    if not done:
        return "not run", 0, len(keys), None
    state = "done" if len(done) == len(keys) else "partial"
    return state, len(done), len(keys), max(done)[:10] or None


def render_report(spec_id: str) -> Path:
    spec = load_spec(spec_id)
    module = report_module(spec.kind)   # report_figures / report_notes: a report edit re-runs only the reports stage
    out_dir = reports_root()
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = [f"# {spec.id}: {spec.title}", "",
             f"Source: {spec.source.cite()}. Experiment kind: `{spec.kind}`.", ""]
    link = report_link(spec_id)   # the experiment's runs view in `repro ui`, when the store has it
    if link:
        lines += [link, ""]
    if spec.description:
        lines += [spec.description.strip(), ""]
    lines += ["## Published values", ""]
    proto = ", ".join(f"{k}: {v}" for k, v in spec.paper.protocol.items()) or "not stated"
    lines += [f"Protocol of the published numbers: {proto}.", ""]
    if spec.paper.notes:
        lines += [spec.paper.notes.strip(), ""]
    if spec.paper.cells:
        keys = list(dict.fromkeys(k for c in spec.paper.cells for k in c))
        lines += [_markdown([{k: _fmt_setting(c.get(k)) for k in keys} for c in spec.paper.cells]), ""]
    if spec.external is not None:   # values from outside the five documents: context, never judged
        lines += ["### External reference (not from the documents; never judged)", "",
                  f"{spec.external.citation.strip()}.", ""]
        if spec.external.notes:
            lines += [" ".join(spec.external.notes.split()), ""]
        if spec.external.cells:
            keys = list(dict.fromkeys(k for c in spec.external.cells for k in c))
            lines += [_markdown([{k: _fmt_setting(c.get(k)) for k in keys} for c in spec.external.cells]), ""]

    profiles = [p for p in PROFILES if p in results.profiles_with_results(spec_id)]
    if not profiles:
        lines += ["## Reproduction", "", f"_Not run yet: `repro run {spec_id}`._", ""]
    for profile in profiles:
        resolved = resolved_for_results(spec_id, profile)
        df = cells_frame(spec_id, profile)
        df = df[df["_spec_hash"] == resolved.hash] if len(df) else df
        state, n_done, n_total, date = status(spec_id, profile)
        lines += [f"## Reproduction at profile `{profile}`", ""]
        lines += [f"Status: {state} ({n_done}/{n_total} cells), last cell {date or '–'}; spec hash "
                  f"`{resolved.hash}`; device {', '.join(sorted(set(df['_device'].dropna()))) if len(df) else '–'}; "
                  f"code {', '.join(sorted(set(str(c)[:12] for c in df['_git_commit'].dropna()))) if len(df) else '–'}.", ""]
        lines += report_cost_lines(   # measured wall time of this run (issue 13)
            spec_id, profile, resolved.hash, df["_seconds"].dropna().tolist() if len(df) else [])
        lines += _environment_lines(df)
        if resolved.overrides:
            lines += ["Run with overrides: " + ", ".join(f"`{k}={v}`" for k, v in resolved.overrides.items())
                      + ".", ""]
        diffs = protocol_differences(spec_id, profile, resolved.overrides)
        if diffs:
            lines += ["**Protocol differs from the paper's:** profile " + profile + "; " + "; ".join(diffs)
                      + ". Numbers at this profile show trends, not the paper's values.", ""]
        if len(df):
            metric_cols = [m for m in resolved.spec.metrics if m in df.columns]
            sort_cols = [c for c in resolved.spec.grid if c in df.columns]
            if sort_cols:
                df = df.sort_values(sort_cols)
            lines += [comparison_table(resolved.spec, df, metric_cols), ""]
            stem = f"{spec_id}_{profile}"
            for fig in getattr(module, "report_figures", lambda *a: [])(resolved.spec, df, out_dir, stem):
                lines += [f"![{fig.stem}]({fig.name})", ""]
            notes = getattr(module, "report_notes", lambda *a: [])(resolved.spec, df)
            if notes:
                lines += ["Findings:", ""] + [f"- {n}" for n in notes] + [""]
            lines += report_claims_lines(resolved.spec, profile)   # every verdict comes from repro.claims
    lines += [paper_estimate_line(spec_id), ""]   # the paper-scale cost (issue 13)
    # No render time and no absolute path: the same results render to the same bytes anywhere.
    lines += [f"_Rendered from `{_display_root()}/{spec_id}/` by `repro report {spec_id}`._", ""]
    path = out_dir / f"{spec_id}.md"
    atomic_write_text(path, "\n".join(lines))
    return path


def render_index() -> Path:
    out_dir = reports_root()
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = ["# Reports", "", "Every experiment spec, its source and its status per profile "
             "(`repro run ID --profile P`, then `repro report ID`).", "",
             "| spec | title | source | kind | " + " | ".join(PROFILES) + " | report |",
             "|---|---|---|---|" + "---|" * len(PROFILES) + "---|"]
    for spec_id in list_spec_ids():
        spec = load_spec(spec_id)
        cols = []
        for p in PROFILES:
            state, n, total, date = status(spec_id, p)
            cols.append(state if state == "not run" else f"{state} {n}/{total} ({date})")
        has_report = (out_dir / f"{spec_id}.md").exists()
        link = f"[{spec_id}.md]({spec_id}.md)" if has_report else "–"
        lines.append(f"| {spec_id} | {spec.title} | {spec.source.cite()} | {spec.kind} | "
                     + " | ".join(cols) + f" | {link} |")
    lines.append("")
    lines += index_lines(claim_rows())
    lines += documents_lines()
    path = out_dir / "README.md"
    atomic_write_text(path, "\n".join(lines))
    return path


def documents_lines() -> list[str]:
    """The five documents by author, title, year and kind (the specs cite them by file name)."""
    lines = ["## The documents", "", "| file | reference |", "|---|---|"]
    lines += [f"| {doc} | {ref.full()} |" for doc, ref in DOCUMENTS.items()]
    return lines + [""]


def attach_to_mlflow(spec_id: str, paths: list[Path]) -> list[str]:
    """Log a rendered report and its figures to the parent run of each profile's latest cells."""
    run_ids = []
    for profile in results.profiles_with_results(spec_id):
        cell_runs = [c.get("mlflow_run_id") for c in results.read_cells(spec_id, profile) if c.get("mlflow_run_id")]
        run_ids += log_to_parent_runs(cell_runs, paths, artifact_path="report")
    return run_ids


def report(ids: list[str]) -> list[Path]:
    known = list_spec_ids()
    for i in ids:
        if i not in known:
            raise UserError(f"unknown spec {i!r}; known specs: {', '.join(known)}")
    paths = [render_report(i) for i in ids]
    paths.append(render_index())
    return paths


