"""A trained model on demand: loaded from artifacts/ (repro.models), trained first by its kind's
trainer when the resolved config has no stored model yet.
"""
from __future__ import annotations

import json
import platform
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch

from repro import environment, results
from repro.atomic import atomic_write, atomic_write_text, remove_orphan_temporaries
from repro.errors import UserError
from repro.models import TrainedModel, artifact_dir, artifacts_root, sha256_file
from repro.runlock import held, lock_file
from repro.specs import ResolvedModel, resolve_model
from repro.stored import read_record
from repro.tracking.runs import Tracker
from repro.train.distributed import barrier, launched_by_torchrun, launched_rank
from repro.trainers import kind_module


def ensure_model(name: str, profile: str, *, overrides: dict[str, Any] | None = None,
                 inject: dict[str, Any] | None = None, device: torch.device | str = "cpu", force: bool = False,
                 progress: bool = True) -> TrainedModel:
    """Load the model trained with this resolved config, training it first if needed."""
    resolved = resolve_model(name, profile, overrides, inject=inject)
    module = kind_module(resolved.config.kind)
    module.validate(resolved)
    out = artifact_dir(resolved)
    weights, meta_path = out / "model.pt", out / "meta.json"
    device = torch.device(device)
    # Under torchrun every rank trains (DDP inside repro.train); rank 0 alone tracks and writes. The
    # environment's RANK, not repro.train.distributed.rank(): the process group opens inside training.
    rank = launched_rank()
    # meta.json is written last: its presence marks a finished model. A damaged one is set aside
    # (repro.stored) and the model trained again below, from its last checkpoint.
    meta = None if force else read_record(meta_path, ("sha256",))
    if meta is None:
        # one trainer of a model at a time: a second invocation waits, then loads what the first trained
        with _one_trainer(name, profile, resolved.hash):
            meta = None if force else read_record(meta_path, ("sha256",))
            if meta is None:
                trained = _train(name, profile, resolved, module, out, device, rank, progress)
                if trained is not None:
                    return trained
                meta = json.loads(meta_path.read_text())   # as stored (non-JSON values written as text)
    net = module.build_net(resolved, meta)
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file
        raise UserError(f"model {name}: cannot load {weights} ({type(e).__name__}); delete it and retrain") from None
    net.load_state_dict(state)
    net.to(device).eval()
    return TrainedModel(name, profile, resolved.hash, out, net, meta, resolved)


def _one_trainer(name: str, profile: str, model_hash: str):
    """The training lock of one model config (repro.runlock); under torchrun the ranks train together
    and rank 0's launcher is the one invocation, so no rank takes it."""
    if launched_by_torchrun():
        return nullcontext()
    return held(lock_file(artifacts_root(), name, profile, model_hash), f"training of model {name} [{profile}]")


def _train(name: str, profile: str, resolved: ResolvedModel, module: Any, out: Path, device: torch.device,
           rank: int, progress: bool) -> TrainedModel | None:
    """Train the model and store it (rank 0); a rank other than 0 gets its trained net back at once."""
    weights, meta_path = out / "model.pt", out / "meta.json"
    tags = {"repro.model": name, "repro.profile": profile, "repro.model_hash": resolved.hash,
            "repro.git_commit": results.git_commit(), "repro.device": str(device),
            "repro.dataset": resolved.config.dataset.name, "repro.host": platform.node()}
    params = {"profile": profile, **resolved.config.model_dump(mode="json", exclude={"profiles", "title"})}
    with Tracker(f"train-{name}", f"{name}-{profile}-{resolved.hash}", tags=tags, params=params,
                 enabled=rank == 0) as tr:
        out.mkdir(parents=True, exist_ok=True)
        remove_orphan_temporaries(out)   # a killed training's half-written checkpoint
        if rank == 0:
            atomic_write_text(out / "config.json", json.dumps(resolved.data, indent=2, default=str))
        # Initial weights (built inside train_model) follow the config's seed, not whatever the
        # process drew before: the same config trains the same model in any order of specs.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(resolved.config.seed)
            net, meta = module.train_model(resolved, out, device, tr.parent, progress and rank == 0)
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
    return None
