"""Experiment specs: schema, loading, profiles, dotted --set overrides, stable hash.

A spec is a YAML file `experiments/<id>.yaml`; a model config is `experiments/models/<name>.yaml`.
Both carry `profiles` (test / smoke / paper) whose values are deep-merged over the base
document. Everything is validated here, once, at the edge; runners receive resolved,
typed objects. Every mistake a user can make ends in a `UserError` (one line, exit 2).
"""
from __future__ import annotations

import copy
from collections.abc import Callable
import itertools
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from repro.errors import UserError
from repro.hashing import stable_hash

PROFILES = ("test", "smoke", "paper")
DEFAULT_PROFILE = "smoke"
_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_\-]*$")


def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


def experiments_dir() -> Path:
    return Path(os.environ.get("REPRO_EXPERIMENTS", repo_root() / "experiments"))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Source(_Strict):
    document: str
    table: str | None = None
    figure: str | None = None
    section: str | None = None

    def cite(self) -> str:
        parts = [self.document]
        if self.table:
            parts.append(f"Tab. {self.table}")
        if self.figure:
            parts.append(f"Fig. {self.figure}")
        if self.section:
            parts.append(f"Sec. {self.section}")
        return ", ".join(parts)


class DatasetSpec(_Strict):
    name: str
    split: str = "val"
    resolution: tuple[int, int] | None = Field(default=None, description="[H, W]")
    root: str | None = None
    n_train: int | None = Field(default=None, ge=1)
    n_eval: int | None = Field(default=None, ge=1)
    seed: int = 0


class PaperValues(_Strict):
    protocol: dict[str, Any] = Field(default_factory=dict)
    cells: list[dict[str, Any]] = Field(default_factory=list)
    notes: str | None = None


class Spec(_Strict):
    id: str
    title: str
    source: Source
    kind: str
    description: str | None = None
    dataset: DatasetSpec
    models: dict[str, str] = Field(default_factory=dict)
    fixed: dict[str, Any] = Field(default_factory=dict)
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    metrics: list[str] = Field(default_factory=list)
    paper: PaperValues = Field(default_factory=PaperValues)
    seed: int = 0
    profiles: dict[Literal["test", "smoke", "paper"], dict[str, Any]] = Field(default_factory=dict)


class ModelConfig(_Strict):
    id: str
    title: str = ""
    kind: str
    source: Source | None = None
    dataset: DatasetSpec
    net: dict[str, Any] = Field(default_factory=dict)
    train: dict[str, Any] = Field(default_factory=dict)
    seed: int = 0
    profiles: dict[Literal["test", "smoke", "paper"], dict[str, Any]] = Field(default_factory=dict)


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


# ----------------------------------------------------------------------------- registry

def _check_id(kind: str, name: str) -> None:
    if not _ID_RE.match(name):
        raise UserError(f"invalid {kind} name {name!r}: use lowercase letters, digits, '_' or '-'")


def list_spec_ids() -> list[str]:
    return sorted(p.stem for p in experiments_dir().glob("*.yaml") if _ID_RE.match(p.stem))


def list_model_ids() -> list[str]:
    return sorted(p.stem for p in (experiments_dir() / "models").glob("*.yaml") if _ID_RE.match(p.stem))


def _load_yaml(path: Path, what: str) -> dict[str, Any]:
    try:
        # libyaml's safe loader where present: the same documents, ~10x faster (a plan reads every config)
        doc = yaml.load(path.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except UnicodeDecodeError as e:
        raise UserError(f"{what} {path.name} is not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset "
                        f"{e.start}); save it as UTF-8") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise UserError(f"malformed YAML in {what} {path.name}{where}: {problem}") from None
    if not isinstance(doc, dict):
        raise UserError(f"{what} {path.name} must be a YAML mapping, got {type(doc).__name__}")
    return doc


def _validation_message(e: ValidationError, what: str) -> str:
    err = e.errors()[0]
    loc = ".".join(str(x) for x in err["loc"]) or "(root)"
    more = f" (+{len(e.errors()) - 1} more)" if len(e.errors()) > 1 else ""
    return f"invalid {what}: {loc}: {err['msg']}{more}"


def load_spec_document(spec_id: str) -> dict[str, Any]:
    _check_id("spec", spec_id)
    if spec_id not in list_spec_ids():
        known = ", ".join(list_spec_ids()) or "none"
        raise UserError(f"unknown spec {spec_id!r}; known specs: {known}")
    doc = _load_yaml(experiments_dir() / f"{spec_id}.yaml", "spec")
    if doc.get("id", spec_id) != spec_id:
        raise UserError(f"spec {spec_id}.yaml declares id {doc.get('id')!r}; the id must equal the file name")
    doc.setdefault("id", spec_id)
    return doc


def _model_chain_documents(name: str) -> list[tuple[str, dict[str, Any]]]:
    """(id, YAML document as written) of the model and, through `base:`, of every model it is
    merged over, the model first; each file read once."""
    chain: list[tuple[str, dict[str, Any]]] = []
    while True:
        _check_id("model", name)
        if name not in list_model_ids():
            known = ", ".join(list_model_ids()) or "none"
            raise UserError(f"unknown model {name!r}; known models: {known}")
        doc = _load_yaml(experiments_dir() / "models" / f"{name}.yaml", "model config")
        if doc.get("id", name) != name:
            raise UserError(f"model {name}.yaml declares id {doc.get('id')!r}; the id must equal the file name")
        chain.append((name, doc))
        base = doc.pop("base", None)
        if base is None:
            return chain
        if str(base) in (link for link, _ in chain):
            raise UserError(f"model {name}.yaml: circular base {base!r}")
        name = str(base)


def model_base_chain(name: str) -> list[str]:
    """The model and, through `base:`, every model it is merged over, the model first."""
    return [link for link, _ in _model_chain_documents(name)]


def load_model_document(name: str) -> dict[str, Any]:
    """A model config; `base: OTHER` starts from OTHER's document and deep-merges this one over it."""
    doc: dict[str, Any] = {}
    for _, over in reversed(_model_chain_documents(name)):
        doc = deep_merge(doc, over)
    doc["id"] = name
    return doc


def load_spec(spec_id: str) -> Spec:
    """The spec as written (no profile applied), validated."""
    try:
        return Spec.model_validate(load_spec_document(spec_id))
    except ValidationError as e:
        raise UserError(_validation_message(e, f"spec {spec_id}")) from None


# ----------------------------------------------------------------------------- overrides

def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def parse_set(items: list[str] | None) -> dict[str, Any]:
    """`key.sub=value` strings -> {dotted key: YAML-parsed value}."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise UserError(f"--set {item!r}: expected key=value, e.g. fixed.steps=10")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key or any(not part for part in key.split(".")):
            raise UserError(f"--set {item!r}: empty key")
        try:
            out[key] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            raise UserError(f"--set {key}: cannot parse value {raw!r}") from None
    return out


def _coerce(key: str, old: Any, new: Any) -> Any:
    """Type-check an override against the value it replaces."""
    if old is None:
        return new
    if isinstance(old, bool):
        if isinstance(new, bool):
            return new
    elif isinstance(old, int):
        if isinstance(new, int) and not isinstance(new, bool):
            return new
    elif isinstance(old, float):
        if isinstance(new, (int, float)) and not isinstance(new, bool):
            return float(new)
    elif isinstance(old, str):
        if isinstance(new, str):
            return new
        if isinstance(new, (int, float)) and not isinstance(new, bool):
            return str(new)
    elif isinstance(old, (list, tuple)):
        if isinstance(new, list):
            return new
        if not isinstance(new, dict):
            return [new]
    elif isinstance(old, dict):
        if isinstance(new, dict):
            return new
    raise UserError(f"--set {key}: expected {type(old).__name__} (current value {old!r}), got {new!r}")


def apply_overrides(doc: dict[str, Any], overrides: dict[str, Any], protected: tuple[str, ...]) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    for dotted, value in overrides.items():
        path = dotted.split(".")
        if path[0] in protected:
            raise UserError(f"--set {dotted}: '{path[0]}' cannot be overridden")
        node = out
        for i, part in enumerate(path[:-1]):
            if not isinstance(node, dict) or part not in node or not isinstance(node[part], dict):
                where = ".".join(path[: i + 1])
                raise UserError(f"--set {dotted}: unknown key {where!r}; see `repro show` for the keys")
            node = node[part]
        leaf = path[-1]
        if not isinstance(node, dict) or leaf not in node:
            known = ", ".join(sorted(node)) if isinstance(node, dict) else ""
            raise UserError(f"--set {dotted}: unknown key; valid keys here: {known}")
        node[leaf] = _coerce(dotted, node[leaf], value)
    return out


def _profile_doc(doc: dict[str, Any], profile: str, what: str) -> dict[str, Any]:
    if profile not in PROFILES:
        raise UserError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    profiles = doc.get("profiles") or {}
    if not isinstance(profiles, dict):
        raise UserError(f"{what}: 'profiles' must be a mapping")
    over = profiles.get(profile) or {}
    if not isinstance(over, dict):
        raise UserError(f"{what}: profile {profile!r} must be a mapping")
    base = {k: v for k, v in doc.items() if k != "profiles"}
    return deep_merge(base, over)


def resolve_spec(spec_id: str, profile: str = DEFAULT_PROFILE, overrides: dict[str, Any] | None = None,
                 check_kind: Callable[[Spec], Spec] | None = None) -> ResolvedSpec:
    """Load a spec, apply a profile and `--set` overrides, validate, hash. `check_kind` validates
    `fixed` and `grid` against the kind's runner (repro.experiments.resolve_spec passes it)."""
    doc = load_spec_document(spec_id)
    try:
        Spec.model_validate(doc)
    except ValidationError as e:
        raise UserError(_validation_message(e, f"spec {spec_id}")) from None
    merged = _profile_doc(doc, profile, f"spec {spec_id}")
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
    merged = apply_overrides(merged, spec_overrides, protected=("id", "kind", "paper", "source"))
    try:
        spec = Spec.model_validate({**merged, "profiles": doc.get("profiles") or {}})
    except ValidationError as e:
        raise UserError(_validation_message(e, f"spec {spec_id} at profile {profile}")) from None
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
    hashed = spec.model_dump(mode="json", exclude={"title", "description", "paper", "profiles"})
    if per_role:   # a model setting changes the results: another hash (none: the hash as before)
        hashed["model_overrides"] = per_role
    return ResolvedSpec(profile=profile, overrides=overrides, data=merged,
                        hash=stable_hash({"profile": profile, **hashed}), spec=spec, model_overrides=per_role)


def resolve_model(name: str, profile: str = DEFAULT_PROFILE, overrides: dict[str, Any] | None = None,
                  inject: dict[str, Any] | None = None) -> ResolvedModel:
    """A model config at a profile with `--set` overrides; `inject` adds settings the config file
    does not have (merged in, not type-checked against it; the model kind validates them)."""
    doc = load_model_document(name)
    merged = _profile_doc(doc, profile, f"model {name}")
    overrides = overrides or {}
    merged = apply_overrides(merged, overrides, protected=("id", "kind"))
    if inject:
        merged = deep_merge(merged, inject)
    try:
        cfg = ModelConfig.model_validate({**merged, "profiles": doc.get("profiles") or {}})
    except ValidationError as e:
        raise UserError(_validation_message(e, f"model {name} at profile {profile}")) from None
    hashed = cfg.model_dump(mode="json", exclude={"title", "source", "profiles"})
    # The profile is part of the identity: the same settings trained at another profile
    # are another artifact (DESIGN.md: models are trained once per (dataset, profile)).
    return ResolvedModel(profile=profile, overrides=overrides, data=merged,
                         hash=stable_hash({"profile": profile, **hashed}), config=cfg)


# ----------------------------------------------------------------------------- cells

def grid_cells(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    if not grid:
        return [{}]
    keys = list(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        s = f"{v:.6g}"
    else:
        s = str(v)
    return re.sub(r"[^A-Za-z0-9._\-]+", "-", s)


def cell_key(cell: dict[str, Any]) -> str:
    """A file-name-safe, stable key for a grid cell, e.g. `s0=0.001__snr=0.1`."""
    if not cell:
        return "all"
    return "__".join(f"{k}={_fmt(v)}" for k, v in cell.items())


def match_cell(published: dict[str, Any], cell: dict[str, Any]) -> bool:
    """Whether a published cell refers to this grid cell (numbers compared with tolerance)."""
    for k, v in cell.items():
        if k not in published:
            return False
        p = published[k]
        if isinstance(v, (int, float)) and isinstance(p, (int, float)) and not isinstance(v, bool):
            if abs(float(p) - float(v)) > 1e-9 * max(1.0, abs(float(v))):
                return False
        elif str(p) != str(v):
            return False
    return True
