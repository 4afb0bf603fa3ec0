"""Experiment runners, one per *kind* of experiment (not per table).

A runner module defines:
- `Fixed`: a pydantic model (extra="forbid") validating the spec's `fixed` settings;
- `prepare(ctx) -> state`: load data, train or load the models the spec names;
- `run_cell(ctx, state, cell, run) -> dict`: compute one grid cell's metrics;
- optionally `report_figures(spec, df, out_dir) -> list[Path]` and `report_notes(spec, df) -> list[str]`.
"""
from __future__ import annotations

import importlib
from types import ModuleType

from pydantic import ValidationError

from repro.errors import UserError

# kind -> module; imported lazily so `repro list` stays fast.
RUNNERS: dict[str, str] = {
    "segmenter_timesteps": "repro.experiments.segmenter_timesteps",
    "noise_encoding_comparison": "repro.experiments.noise_encoding",
}


def runner_module(kind: str) -> ModuleType:
    if kind not in RUNNERS:
        raise UserError(f"unknown experiment kind {kind!r}; known kinds: {', '.join(sorted(RUNNERS))}")
    return importlib.import_module(RUNNERS[kind])


def validate_spec_for_kind(spec):  # -> Spec
    """Validate `fixed` against the runner's schema (types, ranges, unknown keys)."""
    module = runner_module(spec.kind)
    try:
        fixed = module.Fixed.model_validate(spec.fixed)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(x) for x in err["loc"])
        raise UserError(f"spec {spec.id}: fixed.{loc}: {err['msg']}") from None
    allowed_grid = set(getattr(module, "GRID_KEYS", ()))
    for key in spec.grid:
        if key not in allowed_grid:
            raise UserError(f"spec {spec.id}: grid key {key!r} is not one this kind varies "
                            f"({', '.join(sorted(allowed_grid)) or 'none'})")
    return spec.model_copy(update={"fixed": fixed.model_dump()})
