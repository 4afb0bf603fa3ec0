"""What every kind's cost module shares: the context of one spec's estimate and the shape of an estimator.

A family's cost module (repro.experiments.<family>.cost) maps each of its kinds to a `KindEstimator`
in `ESTIMATORS`. An estimator reads the runner's own `fixed` settings (already validated by its
`Fixed`) and, where the runner has a pure function for a cell's sampler settings, that function;
what the runner then does is counted in the units of repro.work, so the runners stay untouched.
repro.plan finds a kind's estimator through repro.experiments.cost_module(kind); a kind without
one is reported as "work units unknown for kind K", never guessed.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from repro.data import dataset_info
from repro.experiments import runner_module
from repro.work import EVAL, FEATURES, LOOP, SIGMA_CHUNK, SIGMA_PAIRS, CellWork, NetRef


def net_ref(resolved) -> NetRef:
    """The network of a resolved model config, as the calibration keys it."""
    ds = resolved.config.dataset
    over = tuple(sorted((k, repr(v)) for k, v in (resolved.overrides or {}).items()))
    return NetRef(resolved.id, resolved.profile, resolved.hash, over, tuple(ds.resolution) if ds.resolution else None)


def add_sigma_max_pairs(work: CellWork, resolved, pairs: int) -> None:
    """Thesis Sec. 5.4.3's sigma_max estimate: the largest distance among `pairs` random image pairs,
    counted as pair distances (timed by the calibration like a network)."""
    ds = resolved.config.dataset
    info = dataset_info(ds.name)
    h, w = ds.resolution or info.default_resolution or (32, 32)
    ref = NetRef(SIGMA_PAIRS, resolution=(info.channels, int(h), int(w)))
    work.add(ref, EVAL, pairs, SIGMA_CHUNK, f"sigma_max estimate: {pairs} random image pairs ({resolved.id})")


def add_training_loop(work: CellWork, dataset_name: str, resolution: tuple | None, steps: int, batch: int) -> None:
    """The loop around the network in training: batching, bookkeeping, checkpoints (timed per step)."""
    if resolution is None:
        return
    c = dataset_info(dataset_name).channels
    work.add(NetRef(LOOP, resolution=(c, *resolution)), EVAL, steps * batch, batch,
             f"training loop: {steps} steps at batch {batch}")


@dataclass
class SpecContext:
    """What the estimators of one spec share: the resolved spec, its models' networks, and the
    work already counted in this plan (a runner computes some things once per run)."""

    resolved: Any
    device_type: str = "cpu"    # cpu | cuda: what the run will use (the batch search runs on CUDA only)
    seen: set = field(default_factory=set)
    _refs: dict = field(default_factory=dict)
    _settings: Any = None

    @property
    def spec(self):
        return self.resolved.spec

    @property
    def fixed(self) -> dict:
        return self.resolved.spec.fixed

    @property
    def settings(self):
        """`fixed` as the kind's validated `Fixed`, as the runner reads it (for its own settings functions)."""
        if self._settings is None:
            self._settings = runner_module(self.spec.kind).Fixed.model_validate(self.fixed)
        return self._settings

    def model(self, role: str):
        if role not in self._refs:
            self._refs[role] = self.resolved.model(role)
        return self._refs[role]

    def ref(self, role: str) -> NetRef:
        return net_ref(self.model(role))

    def quality(self) -> tuple[NetRef | None, int]:
        """The Frechet metric's feature network and its batch (fid: Inception; fd_evalnet: the evaluator)."""
        metrics = self.spec.metrics
        if "fid" in metrics:
            res = self.spec.dataset.resolution
            return NetRef("inception", resolution=tuple(res) if res else None), 50
        if "fd_evalnet" in metrics and "evaluator" in self.spec.models:
            return self.ref("evaluator"), 256
        return None, 1

    def classifies(self) -> bool:
        """The digits evaluator also classifies the samples (class entropy, confidence)."""
        return ("fid" not in self.spec.metrics and "evaluator" in self.spec.models
                and self.model("evaluator").config.net.get("arch") == "digits_classifier")

    def score_eps(self, role: str, eps: float | None) -> float:
        """The sampler's end time: fixed.eps, else the SDE's default (VE 1e-5, VP / sub-VP 1e-3)."""
        if eps is not None:
            return float(eps)
        return 1e-5 if self.model(role).config.net.get("sde", "ve") == "ve" else 1e-3

    def add_features(self, work: CellWork, n: int, what: str) -> None:
        """n images through the Frechet metric's network (and the digits evaluator's classification)."""
        net, batch = self.quality()
        if net is not None:
            work.add(net, FEATURES, n, batch, f"{what}: {n} images through {net.name}")
        if self.classifies():
            work.add(self.ref("evaluator"), EVAL, n, 256, f"{what}: {n} images classified by the evaluator")


CellEstimator = Callable[[SpecContext, dict], CellWork]
PrepareEstimator = Callable[[SpecContext], CellWork]
RolesFn = Callable[[SpecContext], list[str]]


@dataclass(frozen=True)
class KindEstimator:
    cell: CellEstimator
    prepare: PrepareEstimator | None = None
    roles: RolesFn | None = None   # the roles whose models the runner trains (default: every role)
