"""Grid cells: the cartesian product of a spec's grid, a cell's stable key, matching published cells."""
from __future__ import annotations

import itertools
import re
from typing import Any


def grid_cells(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    if not grid:
        return [{}]
    keys = list(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        s = f"{v:.6g}"
    else:
        s = str(v)
    return re.sub(r"[^A-Za-z0-9._\-]+", "-", s)


def cell_key(cell: dict[str, Any]) -> str:
    """A file-name-safe, stable key for a grid cell, e.g. `s0=0.001__snr=0.1`."""
    if not cell:
        return "all"
    return "__".join(f"{k}={_fmt(v)}" for k, v in cell.items())


def match_cell(published: dict[str, Any], cell: dict[str, Any]) -> bool:
    """Whether a published cell refers to this grid cell (numbers compared with tolerance)."""
    for k, v in cell.items():
        if k not in published:
            return False
        p = published[k]
        if isinstance(v, (int, float)) and isinstance(p, (int, float)) and not isinstance(v, bool):
            if abs(float(p) - float(v)) > 1e-9 * max(1.0, abs(float(v))):
                return False
        elif str(p) != str(v):
            return False
    return True
