"""Experiment runners, one per *kind* of experiment (not per table).

A spec with `kind: K` is run by the module `repro.experiments.K`, which defines:
- `GRID_KEYS`: the names this kind accepts in a spec's `grid`;
- `Fixed`: a pydantic model (extra="forbid") validating the spec's `fixed` settings;
- `prepare(ctx) -> state`: load data, train or load the models the spec names;
- `run_cell(ctx, state, cell, run) -> dict`: compute one grid cell: {"values": {metric: float},
  "extra": {JSON-serialisable details}, "artifacts": [paths to log]}; `run` is its MLflow child run;
- optionally `report_figures(spec, df, out_dir, stem) -> list[Path]` (df: one row per cell, grid
  values + metrics + scalar extras) and `report_notes(spec, df) -> list[str]` (findings in words).
`ctx` is an `engine.RunContext`: the resolved spec, the device, `ctx.model(role)` (trained on
demand), `ctx.generator(*salt)` (seeded per cell), `ctx.artifacts_dir(key)`.
"""
from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

from pydantic import ValidationError

from repro.errors import UserError

_NOT_KINDS = {"engine"}


def experiment_kinds() -> list[str]:
    """Kinds are the runner modules of this package (found without importing them); subpackages
    hold helpers that several runners of one family share, and are no kinds."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__)
                  if not m.ispkg and not m.name.startswith("_") and m.name not in _NOT_KINDS)


def runner_module(kind: str) -> ModuleType:
    if kind not in experiment_kinds():
        raise UserError(f"unknown experiment kind {kind!r}; known kinds: {', '.join(experiment_kinds())}")
    return importlib.import_module(f"{__name__}.{kind}")


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
