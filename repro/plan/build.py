"""A spec's plan: the cells to run and those finished, the models to train and those in
artifacts/, and the work of each, without training or sampling anything."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from repro.results import finished_record
from repro.experiments import cost_module, resolve_spec
from repro.experiments.cost import KindEstimator, SpecContext
from repro.models import artifact_dir
from repro.plan.training import training_work, upstream_models
from repro.specs import ResolvedSpec, cell_key, resolve_model
from repro.work import CellWork


@dataclass
class CellPlan:
    key: str
    cell: dict
    finished: bool
    work: CellWork                 # as part of a run of the whole grid
    resume: CellWork | None        # as the next `repro run` computes it (None: finished)


@dataclass
class ModelPlan:
    name: str
    kind: str
    profile: str
    hash: str
    path: Path
    present: bool
    needed_by: str          # the role, or the model trained on it
    work: CellWork


@dataclass
class SpecPlan:
    spec_id: str
    profile: str
    hash: str
    kind: str
    cells: list[CellPlan] = field(default_factory=list)
    prepare: CellWork = field(default_factory=CellWork)
    models: list[ModelPlan] = field(default_factory=list)
    unknown_kind: bool = False

    @property
    def todo(self) -> list[CellPlan]:
        return [c for c in self.cells if not c.finished]

    @property
    def to_train(self) -> list[ModelPlan]:
        return [m for m in self.models if not m.present]

    def work_to_do(self) -> CellWork:
        """Everything a `repro run` would compute now: missing models, prepare, unfinished cells."""
        total = CellWork()
        for m in self.to_train:
            total.extend(m.work)
        if self.todo:
            total.extend(self.prepare)
            for c in self.todo:
                total.extend(c.resume)
        return total

    def work_all(self) -> CellWork:
        """The whole run from nothing: every model, prepare, every cell."""
        total = CellWork()
        for m in self.models:
            total.extend(m.work)
        total.extend(self.prepare)
        for c in self.cells:
            total.extend(c.work)
        return total


def _finished(resolved, key: str) -> bool:
    return finished_record(resolved, key) is not None


def _models(ctx: SpecContext, roles: list[str]) -> list[ModelPlan]:
    out: dict[tuple[str, str], ModelPlan] = {}

    def visit(resolved, needed_by: str) -> None:
        ident = (resolved.id, resolved.hash)
        if ident in out:
            return
        for name, overrides in upstream_models(resolved):   # trained first
            visit(resolve_model(name, resolved.profile, overrides), f"model {resolved.id}")
        path = artifact_dir(resolved)   # repro.models' own layout; meta.json marks a finished model
        out[ident] = ModelPlan(resolved.id, resolved.config.kind, resolved.profile, resolved.hash, path,
                               (path / "meta.json").exists(), needed_by, training_work(resolved))

    for role in roles:
        visit(ctx.model(role), f"role {role}")
    return list(out.values())


def estimator(kind: str) -> KindEstimator | None:
    """The kind's estimator in its family's cost module (`ESTIMATORS`), or None where it has none."""
    return getattr(cost_module(kind), "ESTIMATORS", {}).get(kind)


def plan_spec(spec_id: str, profile: str = "smoke", overrides: dict | None = None,
              device_type: str = "cpu") -> SpecPlan:
    return plan_resolved(resolve_spec(spec_id, profile, overrides), device_type)


def plan_resolved(resolved: ResolvedSpec, device_type: str = "cpu") -> SpecPlan:
    """The plan of a spec already resolved (`repro run` resolves each spec once, at its edge)."""
    kind = resolved.spec.kind
    plan = SpecPlan(resolved.id, resolved.profile, resolved.hash, kind)
    ctx = SpecContext(resolved, device_type=device_type)
    est = estimator(kind)
    if est is None:
        plan.unknown_kind = True
    roles = list(resolved.spec.models) if est is None or est.roles is None else est.roles(ctx)
    plan.models = _models(ctx, roles)
    if est is not None and est.prepare is not None:
        plan.prepare = est.prepare(ctx)
    cells = resolved.cells()
    keys = [cell_key(c) for c in cells]
    finished = [_finished(resolved, k) for k in keys]
    whole, resume = SpecContext(resolved, device_type=device_type), SpecContext(resolved, device_type=device_type)
    for cell, key, done in zip(cells, keys, finished):
        if est is None:
            unknown = CellWork(unknown=[f"work units unknown for kind {kind}"])
            plan.cells.append(CellPlan(key, cell, done, unknown, None if done else unknown))
            continue
        # `work`: as part of a run of the whole grid; `resume`: as the next `repro run` computes it
        # (a runner computes some things once per run, counted in the first cell that needs them)
        work = est.cell(whole, cell)
        plan.cells.append(CellPlan(key, cell, done, work, None if done else est.cell(resume, cell)))
    return plan
