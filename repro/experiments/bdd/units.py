"""Per-unit values as a BDD cell stores them for the claims engine (repro.claims): compact float lists."""
from __future__ import annotations

from collections.abc import Iterable


def compact(values: Iterable[float]) -> list[float]:
    """Floats at 6 significant digits (per-image values, per-run times, replicates)."""
    return [float(f"{float(v):.6g}") for v in values]
