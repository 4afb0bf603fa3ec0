"""Dotted `--set key=value` overrides and profiles, merged over a document and type-checked
against the values they replace."""
from __future__ import annotations

import copy
from typing import Any

import yaml

from repro.errors import UserError
from repro.specs.schema import PROFILES
from repro.specs.yamlload import load


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
            out[key] = load(raw) if raw.strip() else ""   # YAML 1.2 numbers: 1e-2 is a float
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


def profile_document(doc: dict[str, Any], profile: str, what: str) -> dict[str, Any]:
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
