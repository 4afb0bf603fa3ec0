"""`repro doctor`: what this installation would compute with, and what it is missing.

Versions against the lock file, torch's build (BLAS, CPU kernels, CUDA), the thread setting,
the device, the datasets, the FID weights, the paper checkpoints, the MLflow store.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Iterator

from repro import environment
from repro.data import dataset_info, list_datasets
from repro.metrics.inception import inception_weights_path
from repro.models import artifacts_root
from repro.results import CELL_KEYS, results_root
from repro.specs import list_model_ids, resolve_model
from repro.stored import problem_of
from repro.tracking.runs import tracking_uri
from repro.tracking.store import schema_problem, store_problem

_SHOWN = ("repro", "torch", "torchvision", "numpy", "scipy", "torchmetrics", "pytorch-fid", "mlflow",
          "optuna", "dvc", "typer", "pandas", "pydantic")


def environment_lines() -> Iterator[str]:
    import platform

    yield f"python      {platform.python_version()} ({sys.executable})"
    for pkg in _SHOWN:
        yield f"{pkg:<13}{environment.package_version(pkg) or 'not installed'}"
    import torch

    build = environment.torch_build()
    yield "torch build " + ", ".join(f"{k} {v}" for k, v in build.items())
    setting = environment.threads_setting()
    omp = os.environ.get("OMP_NUM_THREADS")
    yield (f"threads     {setting} intra-op (setting: --threads, ${environment.THREADS_ENV}, default "
           f"{environment.DEFAULT_THREADS}); this machine has {os.cpu_count()} cores"
           + (f"; OMP_NUM_THREADS={omp}" if omp else ""))
    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        yield f"device      cuda ({names}; CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()})"
    else:
        yield f"device      cpu ({os.cpu_count()} cores; no CUDA)"
    yield from lock_lines()


def lock_lines() -> Iterator[str]:
    path = environment.lock_path()
    if not path.is_file():
        yield f"lock        no {environment.LOCK_FILE} at {path}: versions cannot be checked"
        return
    pins = environment.read_lock(path)
    diffs = environment.lock_differences(pins)
    if not diffs:
        yield f"lock        every installed version matches {environment.LOCK_FILE} ({len(pins)} pins)"
    else:
        yield f"lock        {len(diffs)} of {len(pins)} pins differ from {environment.LOCK_FILE} " \
              f"(`make setup` installs the locked versions):"
        for name, want, have in diffs:
            yield f"  differs   {name}: locked {want}, installed {have or 'none'}"
    for name in environment.unlocked_requirements(pins):
        yield f"  unlocked  {name}: declared in pyproject.toml but not in the lock (refresh it: `make lock`)"


def inputs_lines() -> Iterator[str]:
    for name in list_datasets():
        info = dataset_info(name)
        if info.embedded:
            yield f"dataset     {name:<14} embedded"
        else:
            root = os.path.join(os.environ.get("REPRO_DATA", "data"), name)
            found = "found" if os.path.isdir(root) else "not found"
            yield f"dataset     {name:<14} {found} at {root}"
    weights = inception_weights_path()
    yield "fid         " + (f"Inception weights at {weights}" if weights else
                            "unavailable: pytorch-fid's pt_inception-2015-12-05-6726825d.pth is not in the "
                            "torch hub cache (set REPRO_FID_WEIGHTS to the file)")
    for name in list_model_ids():   # files the paper settings read (user-supplied checkpoints)
        cfg = resolve_model(name, "paper").config
        for section, key in (("net", "adm_classifier"), ("net", "checkpoint"), ("train", "pretrained")):
            path = getattr(cfg, section).get(key)
            if isinstance(path, str):
                state = "found" if os.path.isfile(os.path.expanduser(path)) else "missing"
                yield f"checkpoint  {name} {section}.{key}: {state} at {path}"
    yield f"mlflow      {tracking_uri()}" + _store_problem(tracking_uri())


def _store_problem(uri: str) -> str:
    """': DAMAGED ...' when the store cannot take runs (repro.tracking.store.store_problem)."""
    problem = store_problem(uri) or schema_problem(uri)
    return f": DAMAGED: {problem}" if problem else ""


def stored_lines() -> Iterator[str]:
    """Every damaged file under results/ and artifacts/ (named, not moved: a run sets it aside)."""
    checked, damaged = 0, []
    for path in sorted(results_root().glob("*/*/cells/*.json")):
        checked += 1
        damaged.append((path, problem_of(path, CELL_KEYS)[1]))
    for path in sorted(results_root().glob("*/*/spec.json")) + sorted(results_root().glob("*/*/failed/*.json")):
        checked += 1
        damaged.append((path, problem_of(path)[1]))
    for path in sorted(artifacts_root().glob("*/*/meta.json")):
        checked += 1
        damaged.append((path, problem_of(path, ("sha256",))[1]))
    damaged = [(p, why) for p, why in damaged if why]
    for path, why in damaged:
        yield f"damaged     {path}: {why} (the next run sets it aside and does that work again)"
    if not damaged:
        yield f"stored      {checked} result and model records under {results_root()} and {artifacts_root()}: none damaged"


def doctor_lines() -> Iterator[str]:
    yield from environment_lines()
    yield from inputs_lines()
    yield from stored_lines()
