"""The models a run needs, trained once before several processes would each train them."""
from __future__ import annotations

import torch

from repro.models import artifact_dir
from repro.trainers.ensure import ensure_model
from repro.specs import ResolvedSpec, resolve_model


def train_missing_models(resolved: ResolvedSpec, dev: torch.device) -> None:
    """Train the spec's missing models in this process, before worker processes (parallel cells,
    sweep workers) start and only load them."""
    for role in resolved.spec.models:
        name, overrides, inject = resolved.model_args(role)
        if not (artifact_dir(resolve_model(name, resolved.profile, overrides, inject=inject)) / "meta.json").exists():
            ensure_model(name, resolved.profile, overrides=overrides, inject=inject, device=dev, progress=True)
