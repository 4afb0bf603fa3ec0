"""The measured wall time of every `repro run`: results/<spec>/<profile>/run_times.json (the last
runs, newest last), read by the cost line of the report."""
from __future__ import annotations

import json
from typing import Any

from repro.atomic import atomic_write_text

KEEP = 50
FILENAME = "run_times.json"


def _path(spec_id: str, profile: str):
    from repro.results import run_dir

    return run_dir(spec_id, profile) / FILENAME


def read_runs(spec_id: str, profile: str) -> list[dict[str, Any]]:
    path = _path(spec_id, profile)
    if not path.exists():
        return []
    try:
        return list(json.loads(path.read_text()))
    except (ValueError, TypeError):
        return []


def record_run(spec_id: str, profile: str, spec_hash: str, device: str, seconds: float, prepare_seconds: float,
               cells_run: int, cells_failed: int = 0) -> None:
    from repro.plan.store import now_iso

    runs = read_runs(spec_id, profile)[-(KEEP - 1):]
    runs.append({"spec_hash": spec_hash, "device": device, "seconds": round(float(seconds), 3),
                 "prepare_seconds": round(float(prepare_seconds), 3), "cells_run": int(cells_run),
                 "cells_failed": int(cells_failed), "finished_at": now_iso()})
    atomic_write_text(_path(spec_id, profile), json.dumps(runs, indent=2))


def last_run(spec_id: str, profile: str, spec_hash: str | None = None) -> dict[str, Any] | None:
    runs = [r for r in read_runs(spec_id, profile) if spec_hash is None or r.get("spec_hash") == spec_hash]
    return runs[-1] if runs else None
