"""Trained models: trained once per (config, profile), stored under artifacts/, reused by every spec.

artifacts/<name>/<profile>-<hash>/ holds model.pt (a state dict, loaded with weights_only=True),
meta.json (what training measured, the weights' sha256) and config.json (the resolved config).
The hash is that of the resolved config, so a changed setting trains a new model.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from repro import environment, results
from repro.atomic import atomic_write, atomic_write_text
from repro.errors import UserError
from repro.specs import ResolvedModel, resolve_model
from repro.trainers import kind_module

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


def ensure_model(name: str, profile: str, *, overrides: dict[str, Any] | None = None,
                 inject: dict[str, Any] | None = None, device: torch.device | str = "cpu", force: bool = False,
                 progress: bool = True) -> TrainedModel:
    """Load the model trained with this resolved config, training it first if needed."""
    from repro.tracking.runs import Tracker

    resolved = resolve_model(name, profile, overrides, inject=inject)
    module = kind_module(resolved.config.kind)
    if hasattr(module, "validate"):
        module.validate(resolved)
    out = artifact_dir(resolved)
    weights, meta_path = out / "model.pt", out / "meta.json"
    device = torch.device(device)
    # Under torchrun every rank trains (DDP inside repro.train); rank 0 alone tracks and writes.
    rank = int(os.environ.get("RANK", "0"))
    if force or not meta_path.exists():  # meta.json is written last: its presence marks a finished model
        tags = {"repro.model": name, "repro.profile": profile, "repro.model_hash": resolved.hash,
                "repro.git_commit": results.git_commit(), "repro.device": str(device),
                "repro.dataset": resolved.config.dataset.name, "repro.host": platform.node()}
        params = {"profile": profile, **resolved.config.model_dump(mode="json", exclude={"profiles", "title"})}
        with Tracker(f"train-{name}", f"{name}-{profile}-{resolved.hash}", tags=tags, params=params,
                     enabled=rank == 0) as tr:
            out.mkdir(parents=True, exist_ok=True)
            from repro.atomic import remove_orphan_temporaries

            remove_orphan_temporaries(out)   # a killed training's half-written checkpoint
            if rank == 0:
                atomic_write_text(out / "config.json", json.dumps(resolved.data, indent=2, default=str))
            # Initial weights (built inside train_model) follow the config's seed, not whatever the
            # process drew before: the same config trains the same model in any order of specs.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(resolved.config.seed)
                net, meta = module.train_model(resolved, out, device, tr.parent, progress and rank == 0)
            from repro.train.distributed import barrier

            if rank != 0:   # wait for rank 0's files: a rank that looked for them (or for the next model's)
                barrier()   # sooner would train again, alone, and DDP would pair it with another model
                return TrainedModel(name, profile, resolved.hash, out, net.eval(), meta, resolved)
            # Each tensor in its own contiguous storage: the file's bytes (and its sha256) then depend on the
            # values alone, not on how training left storages shared or strided (e.g. after a resume).
            state = {k: v.detach().clone(memory_format=torch.contiguous_format) for k, v in net.state_dict().items()}
            atomic_write(weights, lambda f: torch.save(state, f), binary=True)
            meta = {**meta, "sha256": sha256_file(weights), "name": name, "profile": profile,
                    "hash": resolved.hash, "git_commit": results.git_commit(), "mlflow_run_id": tr.run_id,
                    "environment": environment.record()}
            atomic_write_text(meta_path, json.dumps(meta, indent=2, default=str))
            barrier()   # the model is complete on disk for every rank
            if tr.parent is not None:
                tr.parent.log_artifact(meta_path)
    meta = json.loads(meta_path.read_text())
    net = module.build_net(resolved, meta)
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file
        raise UserError(f"model {name}: cannot load {weights} ({type(e).__name__}); delete it and retrain") from None
    net.load_state_dict(state)
    net.to(device).eval()
    return TrainedModel(name, profile, resolved.hash, out, net, meta, resolved)
