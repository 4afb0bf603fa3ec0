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
from dataclasses import dataclass
from types import ModuleType

from pydantic import ValidationError

from repro.errors import UserError
from repro.specs import ResolvedSpec, Spec
from repro.specs import resolve_spec as _resolve_unchecked

# kind -> where it lives: the one list of experiment kinds. Modules are named as strings, so that
# importing this table imports no runner (a spec's DVC stage depends on its own kind's code only).
@dataclass(frozen=True)
class Kind:
    runner: str   # computes one cell: the Runner protocol
    report: str   # report_figures(spec, df, out_dir, stem) / report_notes(spec, df) of this kind
    cost: str     # its work units before the run (repro plan)


def _kind(family: str, name: str) -> Kind:
    module = f"repro.experiments.{family}.{name}"
    return Kind(runner=module, report=module, cost=module)


KINDS: dict[str, Kind] = {
    "sampler_comparison": Kind(runner="repro.experiments.score.sampler_comparison",
                               report="repro.experiments.score.report_sampler_comparison",
                               cost="repro.experiments.score.sampler_comparison"),
    "class_conditional": Kind(runner="repro.experiments.score.class_conditional",
                              report="repro.experiments.score.report_class_conditional",
                              cost="repro.experiments.score.class_conditional"),
    "snr_sweep": Kind(runner="repro.experiments.score.snr_sweep",
                      report="repro.experiments.score.report_snr_sweep",
                      cost="repro.experiments.score.snr_sweep"),
    "guidance_scale_sweep": Kind(runner="repro.experiments.semantic.guidance_scale_sweep",
                                 report="repro.experiments.semantic.report_guidance_scale_sweep",
                                 cost="repro.experiments.semantic.guidance_scale_sweep"),
    "guidance_window": Kind(runner="repro.experiments.semantic.guidance_window",
                            report="repro.experiments.semantic.report_guidance_window",
                            cost="repro.experiments.semantic.guidance_window"),
    "baseline_comparison": Kind(runner="repro.experiments.semantic.baseline_comparison",
                                report="repro.experiments.semantic.report_baseline_comparison",
                                cost="repro.experiments.semantic.baseline_comparison"),
    "segmenter_timesteps": Kind(runner="repro.experiments.semantic.segmenter_timesteps",
                                report="repro.experiments.semantic.report_segmenter_timesteps",
                                cost="repro.experiments.semantic.segmenter_timesteps"),
    "noise_encoding_comparison": Kind(runner="repro.experiments.semantic.noise_encoding_comparison",
                                      report="repro.experiments.semantic.report_noise_encoding_comparison",
                                      cost="repro.experiments.semantic.noise_encoding_comparison"),
    "dg_epsilon_grid": _kind("dg", "dg_epsilon_grid"),
    "exposure_bias": _kind("dg", "exposure_bias"),
    "amp_benchmark": _kind("amp", "amp_benchmark"),
    "mask_guided_metrics": _kind("bdd", "mask_guided_metrics"),
    "inference_timing": _kind("bdd", "inference_timing"),
    "unconditional_samples": _kind("bdd", "unconditional_samples"),
}


def experiment_kinds() -> list[str]:
    return sorted(KINDS)


def _file(module: str) -> str:
    return module.replace(".", "/") + ".py"


def kind_files(kind: str) -> dict[str, str]:
    """Repo-relative files of a kind's runner, report and cost modules (DVC's code dependencies)."""
    k = _known(kind)
    return {"runner": _file(k.runner), "report": _file(k.report), "cost": _file(k.cost)}


def runner_file(kind: str) -> str:
    return kind_files(kind)["runner"]


def _known(kind: str) -> Kind:
    if kind not in KINDS:
        raise UserError(f"unknown experiment kind {kind!r}; known kinds: {', '.join(experiment_kinds())}")
    return KINDS[kind]


def report_module(kind: str) -> ModuleType:
    return importlib.import_module(_known(kind).report)


def cost_module(kind: str) -> ModuleType:
    return importlib.import_module(_known(kind).cost)


def runner_module(kind: str) -> ModuleType:
    return importlib.import_module(_known(kind).runner)


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
