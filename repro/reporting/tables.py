"""Rows of a table (dicts) as CSV, Markdown or JSON text: what `repro compare` prints and the
pipeline writes (comparison.csv, claims.csv)."""
from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from typing import Any


def as_csv(rows: list[dict[str, Any]], columns: list[str], text: Callable[[Any], str]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: text(row.get(k)) for k in columns})
    return buf.getvalue()


def as_markdown(rows: list[dict[str, Any]], columns: list[str], text: Callable[[Any], str], digits: int = 4) -> str:
    def cell(v: Any) -> str:
        return (f"{v:.{digits}g}" if isinstance(v, float) else text(v)).replace("|", "\\|") or "–"

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def as_json(rows: list[dict[str, Any]]) -> str:
    return json.dumps(rows, indent=2) + "\n"
