"""Every weights file a spec's models name, opened and checked before any work starts (preflight).

Each model kind that names weights files declares them (`weights_files(resolved)` in its trainer
module, repro.trainers); the checks themselves are generic (repro.checkpoints).
"""
from __future__ import annotations

from contextlib import nullcontext

from repro.checkpoints import WeightsFile, check_file, validate_inception_weights
from repro.metrics.inception import require_inception_weights
from repro.specs import ResolvedModel, ResolvedSpec
from repro.trainers import kind_module


def model_weights_files(resolved: ResolvedModel) -> list[WeightsFile]:
    """The files a resolved model config names (none for a kind without `weights_files`)."""
    module = kind_module(resolved.config.kind)
    return list(module.weights_files(resolved)) if hasattr(module, "weights_files") else []


def validate_model_files(resolved: ResolvedModel) -> None:
    """Open and check every weights file a resolved model config names."""
    for wf in model_weights_files(resolved):
        check_file(wf, f"model {resolved.id}", (resolved.hash,))


def validate_spec_files(resolved_spec: ResolvedSpec, problems=None) -> None:
    """Every weights file of a resolved spec: its models' files and the FID weights if it needs them.
    With `problems` (repro.engine.problems.Problems) every bad file is collected, not only the first."""
    def check():
        return problems.check() if problems is not None else nullcontext()

    for role in resolved_spec.spec.models:
        with check():
            validate_model_files(resolved_spec.model(role))
    if "fid" in resolved_spec.spec.metrics:
        with check():
            validate_inception_weights(require_inception_weights(resolved_spec.spec.fixed.get("fid_weights")))
