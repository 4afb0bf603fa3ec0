"""The paper-vs-reproduced table as data: one row per published value, beside what each profile measured.

`comparison_rows(ids)` reads the specs' published cells and the results files alone (as the
reports do) and returns rows with: spec, document, table/figure, section, cell, metric,
published value, the reproduced value at each profile (blank where not run or not measured),
the protocol differences of the profiles that ran, and a verdict. `repro compare` prints them
as CSV, Markdown or JSON; the `reports` stage of the pipeline writes `reports/comparison.csv`.

`write_metrics(spec, profile, folder)` writes `<folder>/<spec>.json` (reproduced values per
cell, what `dvc metrics show/diff` read) and `<folder>/<spec>.csv` (one row per cell, what
`dvc plots` draw).

A published cell names its grid cell by the keys of the paper's grid (other text keys, e.g. the
GPU of a timing table, are context and are kept in the cell label); its numeric non-grid keys
are published values. A value is compared only with the metric of the same name (a Frechet
distance on another network is never shown as the paper's FID, DESIGN.md), and only at the
`paper` profile is a verdict on agreement given: the embedded-data profiles show trends.
"""
from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

from repro.atomic import atomic_write_text
from repro.reporting.tables import as_csv, as_json, as_markdown
from repro.reporting.current import current_cells, resolved_for_results
from repro.reporting.render import protocol_differences
from repro.experiments import resolve_spec
from repro.specs import PROFILES, cell_key, list_spec_ids, load_spec, match_cell

# Relative difference within which a paper-profile value counts as reproducing the published one.
AGREEMENT_REL_TOL = 0.10

COLUMNS = ["spec", "document", "table", "figure", "section", "cell", "metric", "published",
           *[f"reproduced_{p}" for p in PROFILES], "protocol_differences", "verdict"]


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and not (isinstance(v, float) and math.isnan(v))


def _split_published(cell: dict[str, Any], grid_keys: set[str]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(grid part, context part, published values) of one published cell."""
    grid = {k: v for k, v in cell.items() if k in grid_keys}
    values = {k: v for k, v in cell.items() if k not in grid_keys and _is_number(v)}
    context = {k: v for k, v in cell.items() if k not in grid_keys and k not in values}
    return grid, context, values


def _label(*parts: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for part in parts for k, v in part.items())


def _reproduced(cells: list[dict[str, Any]], grid: dict[str, Any], metric: str) -> tuple[Any, str | None]:
    """(value, why blank) of `metric` in the reproduced cell the published grid part names."""
    matches = [c for c in cells if match_cell(c["cell"], grid)] if grid else cells
    if not matches:
        return None, "no finished cell"
    if len(matches) > 1:
        return None, f"{len(matches)} reproduced cells match (the published cell does not name every grid key)"
    value = (matches[0].get("values") or {}).get(metric)
    if not _is_number(value):
        return None, f"{metric} not measured"
    return value, None


def _verdict(published: Any, by_profile: dict[str, Any], ran: list[str], why: dict[str, str]) -> str:
    paper = by_profile.get("paper")
    if _is_number(paper) and _is_number(published):
        if published == 0:
            return "agrees" if paper == 0 else f"differs (published 0, reproduced {paper:.4g})"
        rel = (paper - published) / abs(published)
        word = "agrees" if abs(rel) <= AGREEMENT_REL_TOL else "differs"
        return f"{word} at paper ({rel:+.1%}; tolerance {AGREEMENT_REL_TOL:.0%})"
    if not ran:
        return "not run"
    measured = [p for p in ran if _is_number(by_profile.get(p))]
    if measured:
        return (f"not comparable: measured at {', '.join(measured)} only (embedded data, reduced protocol: "
                f"trends, not paper numbers)")
    return "not reproduced here: " + "; ".join(f"{p}: {why[p]}" for p in ran if p in why)


def spec_rows(spec_id: str) -> list[dict[str, Any]]:
    """The comparison rows of one spec (one row per published value; one note row when the spec
    publishes no values, e.g. a figure without a table)."""
    spec = load_spec(spec_id)
    paper_spec = resolve_spec(spec_id, "paper").spec
    grid_keys = set(paper_spec.grid)
    ran = [p for p in PROFILES if current_cells(spec_id, p)]
    cells = {p: current_cells(spec_id, p) for p in ran}
    diffs = []
    for p in ran:
        if p == "paper":
            continue
        resolved = resolved_for_results(spec_id, p)
        d = protocol_differences(spec_id, p, resolved.overrides)
        measured = set(resolved.spec.metrics)
        missing = [m for m in paper_spec.metrics if m not in measured]
        if missing:
            d.append(f"not measured: {', '.join(missing)} (measured instead: "
                     f"{', '.join(m for m in resolved.spec.metrics if m not in paper_spec.metrics) or 'none'})")
        if d:
            diffs.append(f"{p}: " + "; ".join(d))
    base = {"spec": spec.id, "document": spec.source.document, "table": spec.source.table or "",
            "figure": spec.source.figure or "", "section": spec.source.section or "",
            "protocol_differences": " | ".join(diffs)}
    rows: list[dict[str, Any]] = []
    for pub in spec.paper.cells:
        grid, context, values = _split_published(pub, grid_keys)
        for metric, published in values.items():
            by_profile: dict[str, Any] = {}
            why: dict[str, str] = {}
            for p in ran:
                value, reason = _reproduced(cells[p], grid, metric)
                by_profile[p] = value
                if reason:
                    why[p] = reason
            row = {**base, "cell": _label(grid, context), "metric": metric, "published": published,
                   **{f"reproduced_{p}": by_profile.get(p) for p in PROFILES},
                   "verdict": _verdict(published, by_profile, ran, why)}
            rows.append({c: row.get(c) for c in COLUMNS})
        if not values:   # a published cell with no number (e.g. "best w (text)")
            row = {**base, "cell": _label(grid, context), "metric": "", "published": None,
                   "verdict": "no published number for this cell"}
            rows.append({c: row.get(c) for c in COLUMNS})
    if not spec.paper.cells:
        row = {**base, "cell": "", "metric": "", "published": None,
               "verdict": "no published values (judged on the shape the text describes; see the report)"}
        rows.append({c: row.get(c) for c in COLUMNS})
    return rows


def comparison_rows(ids: list[str] | None = None) -> list[dict[str, Any]]:
    return [row for spec_id in (ids or list_spec_ids()) for row in spec_rows(spec_id)]


def _text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v)
    return str(v)


def to_csv(rows: list[dict[str, Any]]) -> str:
    return as_csv(rows, COLUMNS, _text)


def to_markdown(rows: list[dict[str, Any]]) -> str:
    return as_markdown(rows, COLUMNS, _text)


FORMATS = {"csv": to_csv, "md": to_markdown, "json": as_json}


def metrics_values(spec_id: str, profile: str) -> dict[str, dict[str, float]]:
    """{cell key: {metric: value}} of the reproduced cells (numbers only), for `dvc metrics`."""
    out: dict[str, dict[str, float]] = {}
    for rec in current_cells(spec_id, profile):
        values = {k: v for k, v in (rec.get("values") or {}).items() if _is_number(v)}
        if values:
            out[rec.get("key") or cell_key(rec["cell"])] = values
    return dict(sorted(out.items()))


def write_metrics(spec_id: str, profile: str, folder: Path) -> tuple[Path, Path]:
    """`<folder>/<spec>.json` ({profile: {cell: {metric: value}}}) and `<folder>/<spec>.csv`
    (grid columns then metric columns, one row per cell)."""
    resolved = resolved_for_results(spec_id, profile)
    spec = resolved.spec
    order = {cell_key(c): i for i, c in enumerate(resolved.cells())}   # the grid's own order
    folder.mkdir(parents=True, exist_ok=True)
    jpath, cpath = folder / f"{spec_id}.json", folder / f"{spec_id}.csv"
    atomic_write_text(jpath, json.dumps({profile: metrics_values(spec_id, profile)}, indent=2, sort_keys=True) + "\n")
    cells = current_cells(spec_id, profile)
    metric_cols = list(spec.metrics)   # every column the plot of dvc.yaml names, blank where unmeasured
    grid_cols = list(spec.grid)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(grid_cols + metric_cols)
    for rec in sorted(cells, key=lambda r: order.get(r.get("key") or cell_key(r["cell"]), len(order))):
        writer.writerow([_text(rec["cell"].get(k)) for k in grid_cols]
                        + [_text((rec.get("values") or {}).get(m)) for m in metric_cols])
    atomic_write_text(cpath, buf.getvalue())
    return jpath, cpath
