"""Experiment kinds: the explicit KINDS table and the Runner protocol every kind's runner module follows.

A spec with `kind: K` is run by the runner module KINDS[K].runner (see `Runner` for its members);
its report's figures and findings come from KINDS[K].report (`report_figures(spec, df, out_dir, stem)
-> list[Path]`, df one row per cell: grid values + metrics + scalar extras; `report_notes(spec, df)
-> list[str]`; both optional) and its work units before the run from KINDS[K].cost (`ESTIMATORS`:
kind -> repro.experiments.cost.KindEstimator). A runner never imports its report module, so that an
edit of a report does not re-run the specs.
"""
from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel, ValidationError

from repro.errors import UserError
from repro.specs import ResolvedSpec, Spec, resolve_model
from repro.specs import resolve_spec as _resolve_unchecked

class Runner(Protocol):
    """What a runner module provides. Required: GRID_KEYS, METRICS, Fixed, prepare, run_cell. Optional
    (looked up with getattr where they are used; absent means the default in brackets): SHARDS_CELLS
    (repro.engine.ranks) [False], CELLS_IN_PARALLEL (repro.launchers.cells) [True], describe (`repro
    show`, repro.cli) [no lines], ROLES and Grid (validate_spec_for_kind) [none]."""

    GRID_KEYS: ClassVar[tuple[str, ...]]   # the names this kind accepts in a spec's `grid`
    METRICS: ClassVar[tuple[str, ...]]     # the metrics its cells measure: a spec's `metrics` names some
    Fixed: ClassVar[type[BaseModel]]       # validates the spec's `fixed` (extra="forbid")
    # Optional:
    SHARDS_CELLS: ClassVar[bool]           # under torchrun every rank computes its share of each cell
    CELLS_IN_PARALLEL: ClassVar[bool]      # False: `repro run --jobs` runs its cells one at a time
    describe: Callable[[ResolvedSpec], list[str]]   # extra lines for `repro show`
    ROLES: ClassVar[dict[str, tuple[str, ...]]]   # role -> model kinds: the roles every spec must name
    Grid: ClassVar[type[BaseModel]]        # type and range of grid keys that are not `fixed` settings

    def prepare(self, ctx: Any) -> Any:
        """Load data, train or load the models the spec names; the state every cell gets. `ctx` is an
        engine RunContext: the resolved spec, the device, `ctx.model(role)` (trained on demand),
        `ctx.generator(*salt)` (seeded per cell), `ctx.artifacts_dir(key)`."""

    def run_cell(self, ctx: Any, state: Any, cell: dict, run: Any) -> dict:
        """One grid cell: {"values": {metric: float}, "extra": {JSON-serialisable details}, "artifacts":
        [paths to log]}, or {"failed": {"reason": ...}} for a cell that ran but has nothing to report;
        `run` is its MLflow child run."""


# kind -> where it lives: the one list of experiment kinds. Modules are named as strings, so that
# importing this table imports no runner (a spec's DVC stage depends on its own kind's code only).
@dataclass(frozen=True)
class Kind:
    runner: str   # computes one cell: the Runner protocol
    report: str   # report_figures(spec, df, out_dir, stem) / report_notes(spec, df) of this kind
    cost: str     # its work units before the run (repro plan)


def _kind(family: str, name: str, report: str | None = None) -> Kind:
    """A kind's runner `<family>/<name>.py`; its report module (default: the runner) and its family's cost module."""
    module = f"repro.experiments.{family}.{name}"
    return Kind(runner=module, report=f"repro.experiments.{family}.{report}" if report else module,
                cost=f"repro.experiments.{family}.cost")


KINDS: dict[str, Kind] = {
    "sampler_comparison": _kind("score", "sampler_comparison", report="report_sampler_comparison"),
    "class_conditional": _kind("score", "class_conditional", report="report_class_conditional"),
    "snr_sweep": _kind("score", "snr_sweep", report="report_snr_sweep"),
    "guidance_scale_sweep": _kind("semantic", "guidance_scale_sweep", report="report_guidance_scale_sweep"),
    "guidance_window": _kind("semantic", "guidance_window", report="report_guidance_window"),
    "baseline_comparison": _kind("semantic", "baseline_comparison", report="report_baseline_comparison"),
    "segmenter_timesteps": _kind("semantic", "segmenter_timesteps", report="report_segmenter_timesteps"),
    "noise_encoding_comparison": _kind("semantic", "noise_encoding_comparison",
                                       report="report_noise_encoding_comparison"),
    "dg_epsilon_grid": _kind("dg", "dg_epsilon_grid", report="report"),
    "exposure_bias": _kind("dg", "exposure_bias", report="report"),
    "amp_benchmark": _kind("amp", "amp_benchmark", report="report"),
    "mask_guided_metrics": _kind("bdd", "mask_guided_metrics", report="report"),
    "inference_timing": _kind("bdd", "inference_timing", report="report"),
    "unconditional_samples": _kind("bdd", "unconditional_samples", report="report"),
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
    unknown = [m for m in spec.metrics if m not in module.METRICS]
    if unknown:
        raise UserError(f"spec {spec.id}: metric {unknown[0]!r} is not one kind {spec.kind} measures "
                        f"({', '.join(module.METRICS)})")
    roles = getattr(module, "ROLES", {})
    missing = [r for r in roles if r not in spec.models]
    if missing:
        raise UserError(f"spec {spec.id}: kind {spec.kind} needs model role(s) {', '.join(missing)}; its models: "
                        f"{', '.join(f'{k}: {v}' for k, v in spec.models.items()) or 'none'}")
    for role, kinds in roles.items():
        kind = resolve_model(spec.models[role]).config.kind
        if kind not in kinds:
            raise UserError(f"spec {spec.id}: model role {role} is {spec.models[role]}, a {kind} model; "
                            f"kind {spec.kind} takes a {' or '.join(kinds)} model there")
    allowed_grid = set(module.GRID_KEYS)
    for key, values in spec.grid.items():
        if key not in allowed_grid:
            raise UserError(f"spec {spec.id}: grid key {key!r} is not one this kind varies "
                            f"({', '.join(sorted(allowed_grid)) or 'none'})")
        for i, value in enumerate(values):
            if isinstance(value, float) and not math.isfinite(value):
                raise UserError(f"spec {spec.id}: grid.{key}[{i}] is {value}: grid values must be finite")
            # a grid value obeys the type and range of its fixed setting, or of the runner's Grid model
            grid_model = getattr(module, "Grid", None)
            try:
                if key in module.Fixed.model_fields:
                    module.Fixed.model_validate({**spec.fixed, key: value})
                elif grid_model is not None and key in grid_model.model_fields:   # that one field alone
                    grid_model.__pydantic_validator__.validate_assignment(grid_model.model_construct(), key, value)
            except ValidationError as e:
                raise UserError(f"spec {spec.id}: grid.{key}[{i}] = {value!r}: {e.errors()[0]['msg']}") from None
    return spec.model_copy(update={"fixed": fixed.model_dump()})


def fixed_defaults(kind: str) -> dict:
    """The `fixed` settings a kind's runner gives a default (what `repro show` prints): each can be
    set with --set although the spec's YAML leaves it out."""
    fields = runner_module(kind).Fixed.model_fields
    return {name: f.get_default(call_default_factory=True) for name, f in fields.items() if not f.is_required()}


def resolve_spec(spec_id: str, profile: str = "smoke", overrides: dict | None = None) -> ResolvedSpec:
    """A spec at a profile with `--set` overrides, its `fixed` and `grid` checked by its kind's runner."""
    return _resolve_unchecked(spec_id, profile, overrides, check_kind=validate_spec_for_kind,
                              fixed_defaults=fixed_defaults)
