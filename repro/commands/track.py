"""`repro track`: log the finished cells that the MLflow store does not have (it was away during
their run) from their results files, once (repro.tracking.backfill)."""
from __future__ import annotations

from typing import Callable

from repro.commands.specs import spec_ids
from repro.errors import UserError
from repro.specs import PROFILES
from repro.tracking.backfill import track_spec


def track_command(spec_arg: str, profile: str, echo: Callable[..., None]) -> None:
    if profile not in PROFILES:
        raise UserError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    for spec_id in spec_ids(spec_arg):
        logged, had = track_spec(spec_id, profile)
        if logged or had:
            echo(f"{spec_id} [{profile}]: {len(logged)} cell(s) logged now"
                 f"{' (' + ', '.join(logged[:8]) + (', ...' if len(logged) > 8 else '') + ')' if logged else ''}, "
                 f"{had} already in MLflow")
        elif spec_arg != "all":
            echo(f"{spec_id} [{profile}]: no finished cells to log")
