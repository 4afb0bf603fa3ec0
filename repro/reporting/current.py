"""The results a report reads: the spec as its last run at a profile resolved it, and the finished
cells of that run (same spec hash)."""
from __future__ import annotations

from typing import Any

from repro import results
from repro.errors import UserError
from repro.experiments import resolve_spec


def resolved_for_results(spec_id: str, profile: str):
    """The spec as the last run at this profile resolved it, `--set` overrides included."""
    meta = results.read_run_meta(spec_id, profile) or {}
    overrides = meta.get("overrides") or {}
    try:
        return resolve_spec(spec_id, profile, overrides)
    except UserError:  # the spec changed so that the old overrides no longer apply
        return resolve_spec(spec_id, profile)


def current_cells(spec_id: str, profile: str) -> list[dict[str, Any]]:
    """The finished cells of the spec as its last run at this profile resolved it (same hash)."""
    if not results.cells_dir(spec_id, profile).is_dir():
        return []
    resolved = resolved_for_results(spec_id, profile)
    return [rec for rec in results.read_cells(spec_id, profile) if rec.get("spec_hash") == resolved.hash]
