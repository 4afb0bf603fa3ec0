"""The documents' claims as a table: every spec's `claims:` judged by repro.claims on the results
files alone, one row per claim and profile (`reports/claims.csv`, `repro compare --claims`), the
claims table of each report and the verdict counts per document of reports/README.md."""
from __future__ import annotations

import math
from typing import Any

from repro.claims import Verdict, judge
from repro.reporting.current import current_cells
from repro.reporting.tables import as_csv, as_json, as_markdown
from repro.specs import PROFILES, Claim, Spec, list_spec_ids, load_spec
from repro.specs.references import DOCUMENTS, short_cite

VERDICTS = ("held", "did not hold", "inconclusive", "not judged", "not run")

COLUMNS = ["spec", "claim_id", "profile", "document", "reference", "citation", "lines", "quote", "claim",
           "kind", "metric", "effect", "interval_low", "interval_high", "share", "verdict", "unit", "n_units",
           "n_resamples", "detail"]


def citation(claim: Claim) -> str:
    """'Sec. 5.4.4, Tab. 5.3, lines 801-803' of the claim's place in its document."""
    p = claim.place
    parts = [f"Sec. {p.section}" if p.section else "", f"Tab. {p.table}" if p.table else "",
             f"Fig. {p.figure}" if p.figure else "",
             f"line {p.lines[0]}" if p.lines[0] == p.lines[1] else f"lines {p.lines[0]}-{p.lines[1]}"]
    return ", ".join(x for x in parts if x)


def _specs_named(spec: Spec, claim: Claim) -> set[str]:
    named = {spec.id}
    for sel in (claim.cells, claim.a, claim.b, claim.c, claim.d):
        if sel is not None and sel.spec:
            named.add(sel.spec)
    return named


def judge_claim(spec: Spec, claim: Claim, profile: str, cache: dict[tuple[str, str], list] | None = None) -> Verdict | None:
    """The engine's verdict at `profile`, or None when the spec has no results there."""
    cache = {} if cache is None else cache
    cells_by_spec = {}
    for sid in sorted(_specs_named(spec, claim)):
        if (sid, profile) not in cache:
            cache[(sid, profile)] = current_cells(sid, profile)
        if cache[(sid, profile)]:
            cells_by_spec[sid] = cache[(sid, profile)]
    if spec.id not in cells_by_spec:
        return None
    return judge(claim, cells_by_spec, spec.id)


def _num(v: float | None) -> float | None:
    return None if v is None or (isinstance(v, float) and not math.isfinite(v)) else v


def claim_row(spec: Spec, claim: Claim, profile: str, v: Verdict | None) -> dict[str, Any]:
    ref = DOCUMENTS.get(claim.place.document)
    row = {"spec": spec.id, "claim_id": claim.id, "profile": profile, "document": claim.place.document,
           "reference": ref.full() if ref else claim.place.document, "citation": citation(claim),
           "lines": f"{claim.place.lines[0]}-{claim.place.lines[1]}", "quote": " ".join(claim.quote.split()),
           "claim": " ".join(claim.claim.split()), "kind": claim.kind, "metric": claim.metric, "unit": claim.unit}
    if v is None:
        return {**row, "verdict": "not run", "detail": f"no results of {spec.id} at profile {profile}"}
    groups = "; ".join(f"{g}: {gv.verdict}" + (f" ({gv.share:.0%})" if gv.share is not None else "")
                       for g, gv in v.groups)
    return {**row, "metric": v.metric or claim.metric, "effect": _num(v.effect), "interval_low": _num(v.interval[0]) if v.interval else None,
            "interval_high": _num(v.interval[1]) if v.interval else None, "share": v.share, "verdict": v.verdict,
            "n_units": v.n_units, "n_resamples": v.n_resamples,
            "detail": v.detail + (f" [{groups}]" if groups else "")}


def claim_rows(ids: list[str] | None = None) -> list[dict[str, Any]]:
    """One row per claim and profile it is judged at, over the given specs (default all)."""
    cache: dict[tuple[str, str], list] = {}
    rows = []
    for spec_id in ids or list_spec_ids():
        spec = load_spec(spec_id)
        for claim in spec.claims:
            for profile in [p for p in PROFILES if p in claim.profiles]:
                rows.append(claim_row(spec, claim, profile, judge_claim(spec, claim, profile, cache)))
    return rows


def _text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def to_csv(rows: list[dict[str, Any]]) -> str:
    return as_csv(rows, COLUMNS, _text)


def to_markdown(rows: list[dict[str, Any]]) -> str:
    return as_markdown(rows, ["spec", "claim_id", "profile", "reference", "citation", "verdict", "share", "effect"],
                       _text, digits=3)


FORMATS = {"csv": to_csv, "md": to_markdown, "json": as_json}


# ---- in the reports ----------------------------------------------------------------------------------

def _effect_text(v: Verdict) -> str:
    if v.effect is None:
        return "–"
    text = f"{v.effect:.3g}"
    if v.interval and all(math.isfinite(x) for x in v.interval):
        text += f" [{v.interval[0]:.3g}, {v.interval[1]:.3g}]"
    return text


def report_claims_lines(spec: Spec, profile: str) -> list[str]:
    """The claims table of one report section: the document's words beside the verdict."""
    claims = [c for c in spec.claims if profile in c.profiles]
    if not claims:
        return []
    lines = ["### Claims", "",
             "Each claim is judged by repro.claims on paired resamples of the units the cells store "
             "(README: how to read a verdict). Effect: the claim's statistic, with the 5-95 % range over "
             "the resamples; share: the resamples that agree with the claim.", "",
             "| claim | the document's words | compared here | effect [5 %, 95 %] | share | verdict |",
             "|---|---|---|---|---|---|"]
    cache: dict[tuple[str, str], list] = {}
    details = []
    for c in claims:
        v = judge_claim(spec, c, profile, cache)
        if v is None:
            continue
        quote = " ".join(c.quote.split()).replace("|", "\\|")
        where = f"{short_cite(c.place.document)}, {citation(c)}"
        share = f"{v.share:.0%}" if v.share is not None else "–"
        unit = f" ({v.n_units} {v.unit})" if v.n_units else (f" ({v.unit})" if v.unit != "none" else "")
        said = " ".join(c.claim.split()).replace("|", "\\|")
        lines.append(f"| `{c.id}` | “{quote}” ({where}) | {said}{unit} | "
                     f"{_effect_text(v)} | {share} | **{v.verdict}** |")
        if v.groups or v.verdict in ("not judged", "inconclusive") or c.note:
            more = "; ".join(f"{g}: {gv.verdict} ({_effect_text(gv)}"
                             + (f", {gv.share:.0%}" if gv.share is not None else "") + ")" for g, gv in v.groups)
            details.append(f"- `{c.id}`: {v.detail}" + (f". Groups: {more}" if more else "")
                           + (f". Note: {' '.join(c.note.split())}" if c.note else ""))
    return lines + [""] + details + ([""] if details else [])


def verdict_counts(rows: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, int]]]:
    """{document: {profile: {verdict: count}}} of claim rows."""
    out: dict[str, dict[str, dict[str, int]]] = {}
    for r in rows:
        by = out.setdefault(r["document"], {}).setdefault(r["profile"], {v: 0 for v in VERDICTS})
        by[r["verdict"]] = by.get(r["verdict"], 0) + 1
    return out


def index_lines(rows: list[dict[str, Any]]) -> list[str]:
    """reports/README.md's claims section: verdicts per document and profile."""
    counts = verdict_counts(rows)
    lines = ["## Claims per document", "",
             f"{len({(r['spec'], r['claim_id']) for r in rows})} claims of the five documents, each judged by "
             "repro.claims at every profile that ran (`reports/claims.csv`, `repro compare --claims`).", "",
             "| document | profile | " + " | ".join(VERDICTS) + " |", "|---|---|" + "---|" * len(VERDICTS)]
    for doc in sorted(counts):
        ref = DOCUMENTS.get(doc)
        for profile in PROFILES:
            if profile in counts[doc]:
                c = counts[doc][profile]
                lines.append(f"| {ref.full() if ref else doc} | {profile} | "
                             + " | ".join(str(c.get(v, 0)) for v in VERDICTS) + " |")
    return lines + [""]
