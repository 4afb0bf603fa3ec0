"""`repro train`: check a model's inputs, then train it once for a profile (or find it trained)."""
from __future__ import annotations

import os
from typing import Callable

from repro.atomic import check_writable
from repro.trainers.weights import validate_model_files
from repro.data import load_dataset
from repro.environment import apply_threads, resolve_device
from repro.models import artifacts_root
from repro.tracking.store import check_store
from repro.trainers.ensure import ensure_model
from repro.specs import parse_set, resolve_model
from repro.train.distributed import cleanup_distributed, launched_rank


def train_command(name: str, profile: str, sets: list[str] | None, *, device: str, force: bool,
                  progress: bool, threads: int | None, echo: Callable[..., None]) -> None:
    apply_threads(threads)
    overrides = parse_set(sets)
    resolved = resolve_model(name, profile, overrides)
    dev = resolve_device(device)
    ds = resolved.config.dataset
    load_dataset(ds.name, split=ds.split, resolution=ds.resolution, root=ds.root, n=1, seed=ds.seed)
    validate_model_files(resolved)   # the weights files it names, before any training
    check_writable(artifacts_root(), "the artifacts folder ($REPRO_ARTIFACTS)")
    if os.environ.get("REPRO_NO_MLFLOW") != "1":
        check_store()   # a damaged, read-only or unreachable store: now, not after training
    copies = resolved.config.replicas   # seeds seed .. seed + replicas - 1 (repro.experiments.model_seeds)
    try:
        for copy in range(copies):
            more = {"seed": resolved.config.seed + copy} if copy else {}
            model = ensure_model(name, profile, overrides={**overrides, **more} or None, device=dev, force=force,
                                 progress=progress)
            if launched_rank() == 0:  # under torchrun, rank 0 speaks for all
                seed = f" seed {resolved.config.seed + copy}" if copies > 1 else ""
                echo(f"{name} [{profile}]{seed}: {model.path} (sha256 {model.meta.get('sha256', '?')[:12]})")
    finally:
        cleanup_distributed()   # under torchrun: every rank leaves the group before it exits
