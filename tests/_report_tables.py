"""Reading a rendered report's markdown tables back, so tests can check that each published value
sits in its own cell's row and each reproduced value equals the cell file it came from (to the
precision the report prints), instead of only checking that a number appears somewhere."""
from __future__ import annotations

import math


def section(md: str, heading_prefix: str) -> str:
    """The text of the first `## ` section whose heading starts with heading_prefix."""
    parts = md.split("\n## ")
    for part in parts[1:]:
        if part.startswith(heading_prefix):
            return part
    raise AssertionError(f"no section '## {heading_prefix}...' in the report")


def tables(text: str) -> list[list[dict[str, str]]]:
    """Every pipe table in text, as rows of {column: cell text}."""
    out, lines = [], text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("|") and i + 1 < len(lines) and set(lines[i + 1].replace("|", "").strip()) <= set("-: "):
            head = [c.strip() for c in lines[i].strip("|").split("|")]
            rows, i = [], i + 2
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(dict(zip(head, (c.strip() for c in lines[i].strip("|").split("|")))))
                i += 1
            out.append(rows)
        else:
            i += 1
    return out


def same(shown: str, value, exact: bool = False) -> bool:
    """Does the printed text `shown` stand for `value` (to the decimals it prints; `exact`: a setting,
    printed as given)?"""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return shown == str(value)
    try:
        x = float(shown.replace(",", ""))
    except ValueError:
        return False
    if exact:
        return x == float(value)
    decimals = len(shown.split(".")[1]) if "." in shown and "e" not in shown.lower() else 0
    tol = 0.5 * 10 ** -decimals + 1e-12 if "e" not in shown.lower() else abs(x) * 5e-3
    return math.isclose(x, float(value), abs_tol=tol)


def row_for(rows: list[dict[str, str]], key: dict) -> dict[str, str]:
    found = [r for r in rows if all(k in r and same(r[k], v, exact=True) for k, v in key.items())]
    assert len(found) == 1, f"{len(found)} rows for {key} in {[list(r.values()) for r in rows][:6]}"
    return found[0]
