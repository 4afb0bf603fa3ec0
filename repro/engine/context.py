"""What a runner sees of a run: `RunContext`, one per run (or per cell worker / sweep worker)."""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import torch

from repro.trainers import ensure
from repro.engine.ranks import gather_units, shard_indices
from repro.errors import UserError
from repro.experiments import runner_module
from repro.rng import make_generator
from repro.specs import ResolvedSpec
from repro.tracking.runs import Tracker


@dataclass
class RunContext:
    resolved: ResolvedSpec
    device: torch.device
    progress: bool = True
    force: bool = False
    work_dir: Path = field(default_factory=Path)
    tracker: Tracker | None = None

    @property
    def spec(self):
        return self.resolved.spec

    @property
    def profile(self) -> str:
        return self.resolved.profile

    @cached_property
    def fixed(self) -> Any:
        """The spec's `fixed` settings as the kind's validated `Fixed` model (typed; computed once)."""
        return runner_module(self.spec.kind).Fixed.model_validate(self.spec.fixed)

    def generator(self, *salt: Any) -> torch.Generator:
        """A CPU generator seeded from the spec's seed and `salt` (e.g. the cell key)."""
        return make_generator(torch.device("cpu"), self.spec.seed, *salt)

    def shard(self, n: int) -> list[int]:
        """This process's units of a cell's n work units: all of them, or its rank's share under torchrun."""
        return shard_indices(n)

    def gather(self, local: dict[int, Any], n: int | None = None) -> list[Any] | None:
        """{unit: payload} of every rank -> all payloads in unit order on rank 0, None on the others."""
        return gather_units(local, n)

    def model(self, role: str, overrides: dict[str, Any] | None = None):
        """The trained model the spec names for `role`, trained now if it does not exist yet."""
        if role not in self.spec.models:
            raise UserError(f"spec {self.spec.id} names no model for role {role!r}")
        name, merged, inject = self.resolved.model_args(role, overrides)
        return ensure.ensure_model(name, self.profile, overrides=merged, inject=inject, device=self.device,
                                   progress=self.progress)

    def artifacts_dir(self, key: str) -> Path:
        d = self.work_dir / "artifacts" / key
        d.mkdir(parents=True, exist_ok=True)
        return d
