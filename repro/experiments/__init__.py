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
from types import ModuleType

from pydantic import ValidationError

from repro.errors import UserError
from repro.specs import ResolvedSpec, Spec
from repro.specs import resolve_spec as _resolve_unchecked

# kind -> its runner module: the one list of experiment kinds. Named as strings so that importing
# this table imports no runner (a spec's DVC stage depends on its own runner only).
KINDS: dict[str, str] = {
    "sampler_comparison": "repro.experiments.score.sampler_comparison",
    "class_conditional": "repro.experiments.score.class_conditional",
    "snr_sweep": "repro.experiments.score.snr_sweep",
    "guidance_scale_sweep": "repro.experiments.semantic.guidance_scale_sweep",
    "guidance_window": "repro.experiments.semantic.guidance_window",
    "baseline_comparison": "repro.experiments.semantic.baseline_comparison",
    "segmenter_timesteps": "repro.experiments.semantic.segmenter_timesteps",
    "noise_encoding_comparison": "repro.experiments.semantic.noise_encoding_comparison",
    "dg_epsilon_grid": "repro.experiments.dg.dg_epsilon_grid",
    "exposure_bias": "repro.experiments.dg.exposure_bias",
    "amp_benchmark": "repro.experiments.amp.amp_benchmark",
    "mask_guided_metrics": "repro.experiments.bdd.mask_guided_metrics",
    "inference_timing": "repro.experiments.bdd.inference_timing",
    "unconditional_samples": "repro.experiments.bdd.unconditional_samples",
}


def experiment_kinds() -> list[str]:
    return sorted(KINDS)


def runner_file(kind: str) -> str:
    """The repo-relative file of a kind's runner module (for DVC's code dependencies)."""
    return KINDS[kind].replace(".", "/") + ".py"


def runner_module(kind: str) -> ModuleType:
    if kind not in KINDS:
        raise UserError(f"unknown experiment kind {kind!r}; known kinds: {', '.join(experiment_kinds())}")
    return importlib.import_module(KINDS[kind])


def validate_spec_for_kind(spec: Spec) -> Spec:
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


def resolve_spec(spec_id: str, profile: str = "smoke", overrides: dict | None = None) -> ResolvedSpec:
    """A spec at a profile with `--set` overrides, its `fixed` and `grid` checked by its kind's runner."""
    return _resolve_unchecked(spec_id, profile, overrides, check_kind=validate_spec_for_kind)
