"""Reading the suite's stored JSON records (cell files, spec.json, a model's meta.json): a damaged
one is never fatal and never deleted. It is moved into a `quarantine/` folder beside it, named in
one warning line on stderr, and the caller treats it as absent, so the work that wrote it is done
again (a cell recomputed, a model's training resumed from its checkpoint).

Damaged: not UTF-8, not JSON, not a JSON object, or (with `required`) missing a key every record
of that kind has (a stray JSON file dropped into `cells/`).
"""
from __future__ import annotations

import json
import os
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

QUARANTINE_DIR = "quarantine"


def quarantine_dir(path: Path, root: Path | None = None) -> Path:
    """Where a damaged `path` goes: `root`/quarantine (a run's folder), else beside the file."""
    return (root if root is not None else path.parent) / QUARANTINE_DIR


def problem_of(path: Path, required: Iterable[str] = ()) -> tuple[dict[str, Any] | None, str | None]:
    """(the record, None) or (None, what is wrong with the file)."""
    try:
        rec = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as e:
        return None, f"not UTF-8 text (byte offset {e.start})"
    except ValueError as e:   # json.JSONDecodeError
        return None, f"not JSON ({str(e).splitlines()[0]})" if path.stat().st_size else "an empty file"
    if not isinstance(rec, dict):
        return None, f"a JSON {type(rec).__name__}, not an object"
    missing = [k for k in required if k not in rec]
    if missing:
        return None, f"not a record of this kind (no {', '.join(repr(k) for k in missing)})"
    return rec, None


def set_aside(path: Path, why: str, root: Path | None = None) -> Path:
    """Move a damaged file into its quarantine folder (a new name, never over an earlier one) and say so."""
    folder = quarantine_dir(path, root)
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    dest = folder / f"{path.name}.{stamp}"
    n = 1
    while dest.exists():
        dest = folder / f"{path.name}.{stamp}.{n}"
        n += 1
    os.replace(path, dest)
    print(f"warning: damaged file {path}: {why}; moved to {dest} and done again", file=sys.stderr)
    return dest


def read_record(path: Path, required: Iterable[str] = (), root: Path | None = None) -> dict[str, Any] | None:
    """The JSON object stored at `path`; None when there is none or it was damaged (then set aside)."""
    try:
        rec, why = problem_of(path, required)
    except FileNotFoundError:
        return None
    if why is not None:
        try:
            set_aside(path, why, root)
        except FileNotFoundError:   # another reader set it aside first
            pass
        return None
    return rec
