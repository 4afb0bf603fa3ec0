"""Experiment specs: schema, loading, profiles, dotted --set overrides, stable hash.

A spec is a YAML file `experiments/<id>.yaml`; a model config is `experiments/models/<name>.yaml`.
Both carry `profiles` (test / smoke / paper) whose values are deep-merged over the base
document. Everything is validated here, once, at the edge; runners receive resolved,
typed objects. Every mistake a user can make ends in a `UserError` (one line, exit 2).

schema.py holds the pydantic models, documents.py reads the YAML (and a model's `base:` chain),
overrides.py parses and applies `--set` and profiles, resolve.py resolves and hashes, cells.py
names grid cells; the public names are re-exported here.
"""
from repro.specs.cells import cell_key, grid_cells, match_cell
from repro.specs.documents import (
    ID_RE,
    check_id,
    experiments_dir,
    list_model_ids,
    list_spec_ids,
    load_model_document,
    load_spec,
    load_yaml,
    model_base_chain,
    repo_root,
)
from repro.specs.overrides import parse_set, profile_document
from repro.specs.resolve import ResolvedModel, ResolvedSpec, resolve_model, resolve_spec
from repro.specs.schema import (
    CLAIM_KINDS,
    DEFAULT_PROFILE,
    PROFILES,
    CellSelector,
    Claim,
    ClaimPlace,
    DatasetSpec,
    ExternalReference,
    ModelConfig,
    PaperValues,
    Source,
    Spec,
    StrictModel,
    validation_message,
)

__all__ = [
    "CLAIM_KINDS", "CellSelector", "Claim", "ClaimPlace", "ExternalReference", "DEFAULT_PROFILE", "ID_RE", "PROFILES", "DatasetSpec", "ModelConfig", "PaperValues", "ResolvedModel",
    "ResolvedSpec", "Source", "Spec", "StrictModel", "cell_key", "check_id", "experiments_dir", "grid_cells",
    "list_model_ids", "list_spec_ids", "load_model_document", "load_spec", "load_yaml", "match_cell",
    "model_base_chain", "parse_set", "profile_document", "repo_root", "resolve_model", "resolve_spec",
    "validation_message",
]
