"""Before anything is written: every input a run needs is there, and its outputs can be written.

Run once per invocation, by the command that resolved the spec (`repro run`, `repro sweep`, ...),
before the run's cost is estimated and before any MLflow run or results file."""
from __future__ import annotations

import os

from repro import results
from repro.atomic import check_writable
from repro.trainers.weights import validate_spec_files
from repro.data import load_dataset
from repro.engine.problems import Problems
from repro.metrics.frechet import require_more_samples_than_dims
from repro.metrics.inception import FID_FEATURE_DIM, require_inception_weights
from repro.models import artifact_dir, artifacts_root
from repro.specs import ResolvedSpec
from repro.tracking.store import check_store
from repro.trainers import kind_module


def preflight(resolved: ResolvedSpec) -> None:
    """Check every input a run needs before anything is written (datasets, model configs and
    the checkpoints they name, the FID weights)."""
    problems = Problems()   # every missing dataset / checkpoint / weights file, named in one line
    ds = resolved.spec.dataset
    with problems.check():
        load_dataset(ds.name, split=ds.split, resolution=ds.resolution, root=ds.root, n=1, seed=ds.seed)
    for role in resolved.spec.models:
        with problems.check():
            model = resolved.model(role)
            mds = model.config.dataset
            with problems.check():   # a missing dataset does not hide a missing checkpoint
                load_dataset(mds.name, split=mds.split, resolution=mds.resolution, root=mds.root, n=1, seed=mds.seed)
            module = kind_module(model.config.kind)
            if hasattr(module, "validate"):
                module.validate(model)
    if "fid" in resolved.spec.metrics:   # checked now: hours of training are no use without them
        with problems.check():
            require_inception_weights(resolved.spec.fixed.get("fid_weights"))
        # A spec may mirror a published rank-deficient protocol (thesis Tab. 5.3: FID on 100
        # samples) only by saying so (fixed.allow_rank_deficient); its report labels the value.
        sizes = () if resolved.spec.fixed.get("allow_rank_deficient") else ("n_samples", "n_ref", "n_reference")
        for key in sizes:   # the runners' names for the two sets' sizes
            n = resolved.spec.fixed.get(key)
            if isinstance(n, int):
                with problems.check():
                    require_more_samples_than_dims(n, FID_FEATURE_DIM, f"Inception pool3 features (fid; fixed.{key})")
    validate_spec_files(resolved, problems)   # every weights file opened, checked against its network's keys/shapes
    if os.environ.get("REPRO_NO_MLFLOW") != "1":
        with problems.check():   # a damaged, read-only or unreachable store: now, not after the first cell
            check_store()
    problems.raise_if_any()
    check_outputs_writable(resolved)


def check_outputs_writable(resolved: ResolvedSpec) -> None:
    """The results folder, and the artifacts folder when a model must still be trained, take files now
    (not a file, not read-only, not full): otherwise one line before any MLflow run or result."""
    check_writable(results.results_root(), "the results folder ($REPRO_RESULTS)")
    # the folders this run writes into, where they exist already (a read-only cells/ or model folder)
    check_writable(results.cells_dir(resolved.id, resolved.profile), f"the cells folder of {resolved.id}")
    to_train = [artifact_dir(resolved.model(role)) for role in resolved.spec.models
                if not (artifact_dir(resolved.model(role)) / "meta.json").exists()]
    if to_train:
        check_writable(artifacts_root(), "the artifacts folder ($REPRO_ARTIFACTS)")
    for folder in to_train:
        check_writable(folder.parent, f"the artifacts folder of model {folder.parent.name}")
