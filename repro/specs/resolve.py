"""A spec or model config resolved: one profile and the user's overrides applied, validated, hashed."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from repro.errors import UserError
from repro.hashing import stable_hash
from repro.specs.cells import grid_cells
from repro.specs.documents import load_model_document, load_spec_document
from repro.specs.overrides import apply_overrides, deep_merge, profile_document
from repro.specs.schema import DEFAULT_PROFILE, DatasetSpec, ModelConfig, Spec, validation_message


class Resolved(BaseModel):
    """A spec or model config with one profile and the user's overrides applied."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    profile: str
    overrides: dict[str, Any]
    data: dict[str, Any]
    hash: str


class ResolvedSpec(Resolved):
    spec: Spec
    # `--set models.<role>.<key>=value`: settings of the model a role uses, per role.
    model_overrides: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.spec.id

    def model_args(self, role: str, extra: dict[str, Any] | None = None):
        """(name, overrides, inject) of the model `role` uses in this run, for resolve_model /
        ensure_model: the run's `models.<role>.*` settings (then `extra`), and, for a model
        trained on another model's output (a discriminator on a generator's samples,
        `train.generator`), that model's settings as this run uses it when another role of
        the spec is that generator (`train.generator_overrides`, part of the identity)."""
        name = self.spec.models[role]
        overrides = {**self.model_overrides.get(role, {}), **(extra or {})} or None
        set_elsewhere = {self.spec.models[r]: v for r, v in self.model_overrides.items() if r != role and v}
        if not set_elsewhere:   # the usual case: nothing to pass on, no config to read
            return name, overrides, None
        gen = resolve_model(name, self.profile, overrides).config.train.get("generator")
        if gen in set_elsewhere:
            return name, overrides, {"train": {"generator_overrides": dict(set_elsewhere[gen])}}
        return name, overrides, None

    def model(self, role: str) -> ResolvedModel:
        """The config of the model `role` uses at this profile, with the run's model settings."""
        name, overrides, inject = self.model_args(role)
        return resolve_model(name, self.profile, overrides, inject=inject)

    def cells(self) -> list[dict[str, Any]]:
        """The grid as a list of cells (cartesian product, in the YAML's order)."""
        return grid_cells(self.spec.grid)


class ResolvedModel(Resolved):
    config: ModelConfig

    @property
    def id(self) -> str:
        return self.config.id


def _settable_defaults(doc: dict[str, Any], overrides: dict[str, Any],
                       fixed_defaults: Callable[[str], dict[str, Any]] | None) -> None:
    """A `dataset.<key>` or `fixed.<key>` the schema gives a default (`repro show` prints it) can be set
    although the YAML leaves it out: its default is put in first, so the override is type-checked
    against it. The hash is unchanged (the validated spec holds these defaults anyway)."""
    sections: dict[str, dict[str, Any]] = {
        "dataset": {n: f.get_default(call_default_factory=True) for n, f in DatasetSpec.model_fields.items()
                    if not f.is_required()}}
    wanted = [d.split(".") for d in overrides]
    if fixed_defaults is not None and any(parts[0] == "fixed" for parts in wanted):
        sections["fixed"] = fixed_defaults(str(doc.get("kind")))
    for parts in wanted:
        if len(parts) == 2 and parts[0] in sections and parts[1] in sections[parts[0]]:
            node = doc.setdefault(parts[0], {})
            if isinstance(node, dict):
                node.setdefault(parts[1], sections[parts[0]][parts[1]])


def resolve_spec(spec_id: str, profile: str = DEFAULT_PROFILE, overrides: dict[str, Any] | None = None,
                 check_kind: Callable[[Spec], Spec] | None = None,
                 fixed_defaults: Callable[[str], dict[str, Any]] | None = None) -> ResolvedSpec:
    """Load a spec, apply a profile and `--set` overrides, validate, hash. `check_kind` validates
    `fixed` and `grid` against the kind's runner (repro.experiments.resolve_spec passes it), and
    `fixed_defaults` names the kind's settable `fixed` keys with their defaults."""
    doc = load_spec_document(spec_id)
    try:
        Spec.model_validate(doc)
    except ValidationError as e:
        raise UserError(validation_message(e, f"spec {spec_id}")) from None
    merged = profile_document(doc, profile, f"spec {spec_id}")
    merged.setdefault("seed", Spec.model_fields["seed"].default)   # `--set seed=N` (params.yaml) on any spec
    overrides = overrides or {}
    # models.<role>.<key...>=v sets a model's own setting; models.<role>=name swaps the model.
    per_role: dict[str, dict[str, Any]] = {}
    spec_overrides: dict[str, Any] = {}
    for dotted, value in overrides.items():
        parts = dotted.split(".", 2)
        if parts[0] == "models" and len(parts) == 3:
            per_role.setdefault(parts[1], {})[parts[2]] = value
        else:
            spec_overrides[dotted] = value
    _settable_defaults(merged, spec_overrides, fixed_defaults)
    merged = apply_overrides(merged, spec_overrides, protected=("id", "kind", "paper", "source"))
    try:
        spec = Spec.model_validate({**merged, "profiles": doc.get("profiles") or {}})
    except ValidationError as e:
        raise UserError(validation_message(e, f"spec {spec_id} at profile {profile}")) from None
    if check_kind is not None:   # the kind's own schema of `fixed` (repro.experiments.resolve_spec)
        spec = check_kind(spec)
    empty = [k for k, values in spec.grid.items() if not values]
    if empty:
        raise UserError(f"spec {spec_id} at profile {profile}: grid.{empty[0]} has no values, so the grid has "
                        f"no cells; give it at least one value or remove it")
    for role, settings in per_role.items():
        if role not in spec.models:
            roles = ", ".join(sorted(spec.models)) or "none"
            raise UserError(f"--set models.{role}.{next(iter(settings))}: spec {spec_id} has no model role "
                            f"{role!r}; its roles: {roles}")
        resolve_model(spec.models[role], profile, settings)   # type-checks the settings now
    hashed = spec.model_dump(mode="json", exclude={"title", "description", "paper", "external", "claims", "profiles"})
    if per_role:   # a model setting changes the results: another hash (none: the hash as before)
        hashed["model_overrides"] = per_role
    return ResolvedSpec(profile=profile, overrides=overrides, data=merged,
                        hash=stable_hash({"profile": profile, **hashed}), spec=spec, model_overrides=per_role)


def resolve_model(name: str, profile: str = DEFAULT_PROFILE, overrides: dict[str, Any] | None = None,
                  inject: dict[str, Any] | None = None) -> ResolvedModel:
    """A model config at a profile with `--set` overrides; `inject` adds settings the config file
    does not have (merged in, not type-checked against it; the model kind validates them)."""
    doc = load_model_document(name)
    merged = profile_document(doc, profile, f"model {name}")
    merged.setdefault("seed", ModelConfig.model_fields["seed"].default)   # `--set seed=N`: another trained copy
    overrides = overrides or {}
    merged = apply_overrides(merged, overrides, protected=("id", "kind"))
    if inject:
        merged = deep_merge(merged, inject)
    try:
        cfg = ModelConfig.model_validate({**merged, "profiles": doc.get("profiles") or {}})
    except ValidationError as e:
        raise UserError(validation_message(e, f"model {name} at profile {profile}")) from None
    hashed = cfg.model_dump(mode="json", exclude={"title", "source", "profiles", "replicas"})
    # The profile is part of the identity: the same settings trained at another profile
    # are another artifact (DESIGN.md: models are trained once per (dataset, profile)).
    return ResolvedModel(profile=profile, overrides=overrides, data=merged,
                         hash=stable_hash({"profile": profile, **hashed}), config=cfg)
