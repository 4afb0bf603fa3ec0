"""Resumable results: one JSON file per finished grid cell, written atomically.

Layout (DESIGN.md): results/<spec>/<profile>/cells/<key>.json. A rerun skips the cells
whose file exists (unless forced), so an interrupted run resumes where it stopped.
Reports are rendered from these files alone. Beside cells/ lie failed/<key>.json (cells whose
runner reported a failure: never read as results) and run_times.json (the measured wall time
of the last runs, read by the report's cost line). results/.locks/ holds the lock of each spec and
profile being run (repro.engine.run.one_run).
"""
from __future__ import annotations

import json
import os
import subprocess
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

from repro.atomic import atomic_write_text
from repro.stored import read_record
from repro.specs import ResolvedSpec, repo_root

RESULTS_DIR = "results"
FAILED_DIR = "failed"
RUN_TIMES_FILE = "run_times.json"
RUN_TIMES_KEEP = 50   # the last runs kept in run_times.json, newest last
CELL_KEYS = ("cell", "values")   # what every cell record has (a JSON without them is not a cell)


def results_root() -> Path:
    return Path(os.environ.get("REPRO_RESULTS", RESULTS_DIR))


def cells_dir(spec_id: str, profile: str) -> Path:
    return results_root() / spec_id / profile / "cells"


def run_dir(spec_id: str, profile: str) -> Path:
    return results_root() / spec_id / profile


def write_cell(spec_id: str, profile: str, key: str, record: dict[str, Any]) -> Path:
    path = cells_dir(spec_id, profile) / f"{key}.json"
    atomic_write_text(path, json.dumps(record, indent=2, sort_keys=True, default=json_default))
    return path


def json_default(o: Any) -> Any:
    if hasattr(o, "tolist"):
        return o.tolist()
    if hasattr(o, "item"):
        return o.item()
    return str(o)


def read_cell(spec_id: str, profile: str, key: str) -> dict[str, Any] | None:
    """A finished cell's record; None when absent or damaged (a damaged file is set aside into the
    run's quarantine/ folder with a warning, so the cell is computed again: repro.stored)."""
    path = cells_dir(spec_id, profile) / f"{key}.json"
    return read_record(path, CELL_KEYS, run_dir(spec_id, profile))


def read_cells(spec_id: str, profile: str) -> list[dict[str, Any]]:
    folder = cells_dir(spec_id, profile)
    if not folder.is_dir():
        return []
    recs = (read_record(p, CELL_KEYS, run_dir(spec_id, profile)) for p in sorted(folder.glob("*.json")))
    return [r for r in recs if r is not None]


def read_run_meta(spec_id: str, profile: str) -> dict[str, Any] | None:
    """The resolved spec of the last run at this profile (hash, overrides), if any (a damaged one is
    set aside; the next run writes it again)."""
    return read_record(run_dir(spec_id, profile) / "spec.json", (), run_dir(spec_id, profile))


def set_aside_damaged(spec_id: str, profile: str) -> None:
    """Before a run: every damaged record of the spec at this profile (a cell, a stray JSON in cells/,
    spec.json, a failure record) into quarantine/, named (repro.stored), so its work is done again."""
    read_cells(spec_id, profile)
    read_run_meta(spec_id, profile)
    read_failed_cells(spec_id, profile)


def profiles_with_results(spec_id: str) -> list[str]:
    root = results_root() / spec_id
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "cells").is_dir() and any((p / "cells").glob("*.json")))


# ----------------------------------------------------------------------------- failed cells

def failed_cells_dir(spec_id: str, profile: str) -> Path:
    """Records of cells whose runner reported a failure: beside `cells/`, never read as results."""
    return run_dir(spec_id, profile) / FAILED_DIR


def read_failed_cells(spec_id: str, profile: str, spec_hash: str | None = None) -> list[dict[str, Any]]:
    """The failure records of a spec at a profile (of one resolved spec when `spec_hash` is given)."""
    folder = failed_cells_dir(spec_id, profile)
    recs = [read_record(p, (), run_dir(spec_id, profile)) for p in sorted(folder.glob("*.json"))] \
        if folder.is_dir() else []
    return [r for r in recs if r is not None and (spec_hash is None or r.get("spec_hash") == spec_hash)]


# ----------------------------------------------------------------------------- measured run times

def _run_times_path(spec_id: str, profile: str) -> Path:
    return run_dir(spec_id, profile) / RUN_TIMES_FILE


def read_run_times(spec_id: str, profile: str) -> list[dict[str, Any]]:
    """The measured wall time of every recent `repro run` of a spec at a profile, newest last."""
    path = _run_times_path(spec_id, profile)
    if not path.exists():
        return []
    try:
        return list(json.loads(path.read_text()))
    except (ValueError, TypeError):
        return []


def record_run(spec_id: str, profile: str, spec_hash: str, device: str, seconds: float, prepare_seconds: float,
               cells_run: int, cells_failed: int = 0) -> None:
    runs = read_run_times(spec_id, profile)[-(RUN_TIMES_KEEP - 1):]
    runs.append({"spec_hash": spec_hash, "device": device, "seconds": round(float(seconds), 3),
                 "prepare_seconds": round(float(prepare_seconds), 3), "cells_run": int(cells_run),
                 "cells_failed": int(cells_failed),
                 "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    atomic_write_text(_run_times_path(spec_id, profile), json.dumps(runs, indent=2))


def last_run(spec_id: str, profile: str, spec_hash: str | None = None) -> dict[str, Any] | None:
    runs = [r for r in read_run_times(spec_id, profile) if spec_hash is None or r.get("spec_hash") == spec_hash]
    return runs[-1] if runs else None


# ----------------------------------------------------------------------------- provenance and artifacts

@lru_cache(maxsize=1)
def git_commit() -> str:
    """The commit of the code that produced a result ('unknown' outside a checkout)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo_root(), capture_output=True,
                             text=True, timeout=5)
        commit = out.stdout.strip() if out.returncode == 0 else "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo_root(),
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return commit + ("-dirty" if dirty and commit != "unknown" else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def resolve_artifact(rel: str | None) -> Path | None:
    """Cell extras store artifact paths relative to the results root (reports may run elsewhere)."""
    return None if not rel else results_root() / rel


def copy_first_artifact(df, column: str, dst: Path) -> Path | None:
    """Copy the artifact that the first non-empty `column` of a report frame names to dst (a report
    figure made during the run, e.g. a map sheet); None where there is none."""
    import shutil

    paths = df[column].dropna() if column in df else []
    src = resolve_artifact(str(paths.iloc[0])) if len(paths) else None
    if src is None or not src.exists():
        return None
    shutil.copyfile(src, dst)
    return dst


def relative_to_results(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(results_root().resolve()))
    except ValueError:
        return str(path)


def finished_record(resolved: ResolvedSpec, key: str) -> dict[str, Any] | None:
    """The cell's results file when it was computed with this resolved spec (same hash), else None."""
    rec = read_cell(resolved.id, resolved.profile, key)
    return rec if rec is not None and rec.get("spec_hash") == resolved.hash else None
