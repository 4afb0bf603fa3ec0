"""Sweep specs: schema, loading, profiles, and validation against the base experiment spec.

A sweep spec `experiments/sweeps/<name>.yaml` names a base spec, a search space over the names
the base spec's cells vary (its grid keys, or fixed settings its kind can vary per cell), a
sampler, objectives over the base spec's metrics and a trial budget. `profiles` deep-merge over
the document as in experiment specs. Everything is checked here, once, before any storage,
study or file is touched; a mistake is a UserError (one line, exit 2).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import Field, ValidationError, model_validator

from repro.errors import UserError
from repro.specs import (ID_RE, DEFAULT_PROFILE, ResolvedSpec, Source, StrictModel, cell_key, check_id, experiments_dir,
                         grid_cells, load_yaml, profile_document, validation_message)
from repro.experiments import resolve_spec, runner_module
from repro.hashing import stable_hash

SAMPLERS = ("grid", "tpe", "random", "nsga2")


def sweeps_dir() -> Path:
    return experiments_dir() / "sweeps"


# ----------------------------------------------------------------------------- search space

class GridParam(StrictModel):
    """The values of a grid; none given: the base spec's grid values at the sweep's profile."""
    type: Literal["grid"]
    values: list[Any] | None = None


class CategoricalParam(StrictModel):
    type: Literal["categorical"]
    choices: list[Any] = Field(min_length=1)


class IntParam(StrictModel):
    type: Literal["int"]
    low: int
    high: int
    step: int = Field(1, ge=1)
    log: bool = False


class FloatParam(StrictModel):
    """A float range; `step` puts the values on a lattice (cells are keyed by 6 significant digits,
    so a lattice finer than that would give two settings one results file)."""
    type: Literal["float"]
    low: float
    high: float
    step: float | None = Field(None, gt=0)


class LogFloatParam(StrictModel):
    type: Literal["log-float"]
    low: float = Field(gt=0)
    high: float = Field(gt=0)


Param = Annotated[Union[GridParam, CategoricalParam, IntParam, FloatParam, LogFloatParam],
                  Field(discriminator="type")]


class Objective(StrictModel):
    metric: str
    direction: Literal["minimize", "maximize"]


class Refine(StrictModel):
    """A second, model-based stage after a grid: `param` between the grid neighbours of the best
    cell's value, the other names fixed at the best cell's values; its own study `<study>-refine`."""
    param: str
    sampler: Literal["tpe", "random"] = "tpe"
    n_trials: int = Field(ge=1)
    lattice: int = Field(40, ge=2, description="values between the neighbours (TPE may revisit one: reused)")


class Published(StrictModel):
    """Published points to overlay: settings (space names) and metric values, with where they come from."""
    points: list[dict[str, Any]] = Field(default_factory=list)
    best: dict[str, Any] | None = None
    notes: str | None = None
    conflicts: list[str] = Field(default_factory=list, description="where sources disagree, in words")


class SweepSpec(StrictModel):
    id: str
    title: str
    base: str
    source: Source | None = None
    description: str | None = None
    profile: Literal["test", "smoke", "paper"] = DEFAULT_PROFILE
    sampler: Literal["grid", "tpe", "random", "nsga2"]
    space: dict[str, Param] = Field(min_length=1)
    objectives: list[Objective] = Field(min_length=1)
    n_trials: int | None = Field(None, ge=1, description="trial budget (grid: the number of grid points)")
    seed: int = 0
    refine: Refine | None = None
    published: Published = Field(default_factory=Published)
    profiles: dict[Literal["test", "smoke", "paper"], dict[str, Any]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> "SweepSpec":
        if self.sampler == "grid":
            bad = [n for n, p in self.space.items() if not isinstance(p, (GridParam, CategoricalParam))]
            if bad:
                raise ValueError(f"a grid sweep takes grid or categorical names only; {', '.join(bad)} are ranges")
        elif self.n_trials is None:
            raise ValueError(f"sampler {self.sampler} needs n_trials (the trial budget)")
        metrics = [o.metric for o in self.objectives]
        if len(set(metrics)) != len(metrics):
            raise ValueError("an objective metric is named twice")
        for name, p in self.space.items():
            if isinstance(p, (IntParam, FloatParam, LogFloatParam)) and not p.low < p.high:
                raise ValueError(f"space.{name}: low must be below high")
        if self.refine is not None:
            if self.sampler != "grid":
                raise ValueError("refine follows a grid sweep")
            if self.refine.param not in self.space:
                raise ValueError(f"refine.param {self.refine.param!r} is not in the search space")
        return self


# ----------------------------------------------------------------------------- resolved

class ResolvedSweep:
    """A sweep at one profile, checked against its base spec resolved at that profile."""

    def __init__(self, sweep: SweepSpec, profile: str, base: ResolvedSpec, space: dict[str, Any]):
        self.sweep, self.profile, self.base = sweep, profile, base
        self.space = space   # name -> GridParam (values filled) | other Param
        self.names = _cell_order(base, list(space))

    @property
    def id(self) -> str:
        return self.sweep.id

    @property
    def directions(self) -> list[str]:
        return [o.direction for o in self.sweep.objectives]

    @property
    def metrics(self) -> list[str]:
        return [o.metric for o in self.sweep.objectives]

    def default_study(self) -> str:
        return f"{self.sweep.id}-{self.profile}"

    def identity(self, stage: str = "main") -> dict[str, Any]:
        """What a study created for this sweep records, so that a study of another sweep, or of
        another definition of this one, is refused rather than mixed in."""
        body = {"space": {n: p.model_dump(mode="json") for n, p in self.space.items()},
                "sampler": self.sweep.sampler, "objectives": [o.model_dump() for o in self.sweep.objectives],
                "base": self.base.id, "base_hash": self.base.hash, "stage": stage}
        return {"repro.sweep": self.sweep.id, "repro.profile": self.profile, "repro.base": self.base.id,
                "repro.stage": stage, "repro.definition": stable_hash(body)}

    def grid_points(self) -> list[dict[str, Any]]:
        """Every point of a grid sweep, as cells in the base spec's key order."""
        values = {n: (p.values if isinstance(p, GridParam) else p.choices) for n, p in self.space.items()}
        return [self.cell(c) for c in grid_cells(values)]

    def cell(self, params: dict[str, Any]) -> dict[str, Any]:
        """Trial params -> the base spec's cell, in its grid's key order so that keys match `repro
        run`'s. A name the base grid does not vary, at the base spec's fixed value, is left out: that
        cell is then the very one `repro run` computes (and either reuses the other's result)."""
        fixed = self.base.spec.fixed
        return {n: params[n] for n in self.names
                if n in self.base.spec.grid or n not in fixed or not _same(params[n], fixed[n])}

    def budget(self) -> int:
        return len(self.grid_points()) if self.sweep.sampler == "grid" else int(self.sweep.n_trials)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def _cell_order(base: ResolvedSpec, names: list[str]) -> list[str]:
    grid_first = [k for k in base.spec.grid if k in names]
    return grid_first + [n for n in names if n not in grid_first]


def list_sweep_ids() -> list[str]:
    folder = sweeps_dir()
    return sorted(p.stem for p in folder.glob("*.yaml") if ID_RE.match(p.stem)) if folder.is_dir() else []


def load_sweep_document(name: str) -> dict[str, Any]:
    check_id("sweep", name)
    if name not in list_sweep_ids():
        raise UserError(f"unknown sweep {name!r}; known sweeps: {', '.join(list_sweep_ids()) or 'none'} "
                        f"(experiments/sweeps/*.yaml)")
    doc = load_yaml(sweeps_dir() / f"{name}.yaml", "sweep")
    if doc.get("id", name) != name:
        raise UserError(f"sweep {name}.yaml declares id {doc.get('id')!r}; the id must equal the file name")
    doc.setdefault("id", name)
    return doc


def resolve_sweep(name: str, profile: str | None = None) -> ResolvedSweep:
    """Load a sweep, apply a profile (default: the sweep's own), check it against its base spec."""
    doc = load_sweep_document(name)
    try:
        written = SweepSpec.model_validate(doc)
    except ValidationError as e:
        raise UserError(validation_message(e, f"sweep {name}")) from None
    profile = profile or written.profile
    merged = profile_document(doc, profile, f"sweep {name}")
    try:
        sweep = SweepSpec.model_validate({**merged, "profiles": doc.get("profiles") or {}})
    except ValidationError as e:
        raise UserError(validation_message(e, f"sweep {name} at profile {profile}")) from None
    base = resolve_spec(sweep.base, profile)
    return ResolvedSweep(sweep, profile, base, _check_space(sweep, base))


def _check_space(sweep: SweepSpec, base: ResolvedSpec) -> dict[str, Any]:
    spec = base.spec
    varied_per_cell = set(getattr(runner_module(spec.kind), "GRID_KEYS", ()))
    where = f"sweep {sweep.id}"
    space: dict[str, Any] = {}
    for name, p in sweep.space.items():
        if name not in spec.grid and name not in spec.fixed:
            raise UserError(f"{where}: search-space name {name!r} is not in base spec {spec.id}'s grid "
                            f"({', '.join(spec.grid) or 'none'}) or fixed settings ({', '.join(spec.fixed) or 'none'})")
        if name not in spec.grid and name not in varied_per_cell:
            raise UserError(f"{where}: {name!r} is a fixed setting of {spec.id} that kind {spec.kind} cannot vary "
                            f"per cell (it varies {', '.join(sorted(varied_per_cell)) or 'nothing'})")
        if isinstance(p, GridParam) and p.values is None:
            if name not in spec.grid:
                raise UserError(f"{where}: space.{name} is a grid without values and {spec.id} has no grid "
                                f"{name!r} at profile {base.profile}; give values")
            p = p.model_copy(update={"values": list(spec.grid[name])})
        if isinstance(p, GridParam) and not p.values:
            raise UserError(f"{where}: space.{name}: a grid needs at least one value")
        space[name] = p
    for o in sweep.objectives:
        if o.metric not in spec.metrics:
            raise UserError(f"{where}: objective {o.metric!r} is not a metric of {spec.id} at profile "
                            f"{base.profile} ({', '.join(spec.metrics)})")
    if sweep.refine is not None:
        p = space[sweep.refine.param]
        values = p.values if isinstance(p, GridParam) else p.choices
        if len(values) < 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            raise UserError(f"{where}: refine.param {sweep.refine.param!r} needs at least two numeric grid values")
    _check_cell_keys(sweep, base, space)
    return space


def _check_cell_keys(sweep: SweepSpec, base: ResolvedSpec, space: dict[str, Any]) -> None:
    """Two distinct settings of a lattice must not share a results file (keys print floats to 6
    significant digits; a continuous float is rounded to them before its cell runs, trial.py)."""
    for name, p in space.items():
        if isinstance(p, FloatParam) and p.step is not None:
            n = int(math.floor((p.high - p.low) / p.step + 1e-9)) + 1
            keys = {cell_key({name: p.low + i * p.step}) for i in range(min(n, 100_000))}
            if len(keys) < min(n, 100_000):
                raise UserError(f"sweep {sweep.id}: space.{name}: step {p.step} is finer than the 6 significant "
                                f"digits that name a cell's results file; use a coarser step")
