"""Spec and model-config documents: where they live, reading their YAML, the model `base:` chain."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from repro.errors import UserError
from repro.specs.overrides import deep_merge
from repro.specs.yamlload import load
from repro.specs.schema import Spec, validation_message

ID_RE = re.compile(r"^[a-z0-9][a-z0-9_\-]*$")


def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent.parent


def experiments_dir() -> Path:
    """experiments/ of the checkout, or $REPRO_EXPERIMENTS (which must be a folder)."""
    given = os.environ.get("REPRO_EXPERIMENTS")
    if given is None:
        return repo_root() / "experiments"
    if not Path(given).is_dir():
        what = "not a folder" if Path(given).exists() else "no such folder"
        raise UserError(f"REPRO_EXPERIMENTS={given}: {what}; point it at a folder of spec YAML files "
                        f"(or unset it for the checkout's experiments/)")
    return Path(given)


def check_id(kind: str, name: str) -> None:
    if not ID_RE.match(name):
        raise UserError(f"invalid {kind} name {name!r}: use lowercase letters, digits, '_' or '-'")


def list_spec_ids() -> list[str]:
    return sorted(p.stem for p in experiments_dir().glob("*.yaml") if ID_RE.match(p.stem))


def list_model_ids() -> list[str]:
    return sorted(p.stem for p in (experiments_dir() / "models").glob("*.yaml") if ID_RE.match(p.stem))


def load_yaml(path: Path, what: str) -> dict[str, Any]:
    try:
        doc = load(path.read_text(encoding="utf-8"))   # 1e-4 a float, a key written twice an error
    except IsADirectoryError:
        raise UserError(f"{what} {path}: a folder, not a YAML file; move it out of {path.parent}") from None
    except OSError as e:   # a dangling link, no permission
        raise UserError(f"{what} {path}: cannot be read ({e.strerror or e}); fix or remove it") from None
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


def load_spec_document(spec_id: str) -> dict[str, Any]:
    check_id("spec", spec_id)
    if spec_id not in list_spec_ids():
        known = ", ".join(list_spec_ids()) or "none"
        raise UserError(f"unknown spec {spec_id!r}; known specs: {known}")
    doc = load_yaml(experiments_dir() / f"{spec_id}.yaml", "spec")
    if doc.get("id", spec_id) != spec_id:
        raise UserError(f"spec {spec_id}.yaml declares id {doc.get('id')!r}; the id must equal the file name")
    doc.setdefault("id", spec_id)
    return doc


def _model_chain_documents(name: str) -> list[tuple[str, dict[str, Any]]]:
    """(id, YAML document as written) of the model and, through `base:`, of every model it is
    merged over, the model first; each file read once."""
    chain: list[tuple[str, dict[str, Any]]] = []
    while True:
        check_id("model", name)
        if name not in list_model_ids():
            known = ", ".join(list_model_ids()) or "none"
            raise UserError(f"unknown model {name!r}; known models: {known}")
        doc = load_yaml(experiments_dir() / "models" / f"{name}.yaml", "model config")
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
        raise UserError(validation_message(e, f"spec {spec_id}")) from None
