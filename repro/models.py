"""Trained models: trained once per (config, profile), stored under artifacts/, reused by every spec.

artifacts/<name>/<profile>-<hash>/ holds model.pt (a state dict, loaded with weights_only=True),
meta.json (what training measured, the weights' sha256) and config.json (the resolved config).
The hash is that of the resolved config, so a changed setting trains a new model. Training a
missing model and loading a stored one is repro.trainers.ensure's job (it calls the kind's trainer).
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from repro.specs import ResolvedModel

ARTIFACTS_DIR = "artifacts"


def artifacts_root() -> Path:
    return Path(os.environ.get("REPRO_ARTIFACTS", ARTIFACTS_DIR))


def artifact_dir(resolved: ResolvedModel) -> Path:
    return artifacts_root() / resolved.id / f"{resolved.profile}-{resolved.hash}"


@dataclass
class TrainedModel:
    name: str
    profile: str
    hash: str
    path: Path
    net: nn.Module
    meta: dict[str, Any]
    resolved: ResolvedModel


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
