"""Small helpers shared by the score-SDE samplers: time grids, guidance, checks, step registries."""
from __future__ import annotations

from collections.abc import Callable

import torch

from repro.errors import UserError

ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def check_steps(steps: int, name: str = "steps") -> int:
    if steps is None or int(steps) < 1:
        raise UserError(f"sampler option {name} must be a positive integer, got {steps!r}")
    return int(steps)


def resolve_eps(sde, eps: float | None) -> float:
    eps = sde.default_eps if eps is None else float(eps)
    if not 0.0 < eps < sde.T:
        raise UserError(f"sampler option eps must lie in (0, {sde.T}), got {eps}")
    return eps


def reverse_time_grid(steps: int, eps: float, x: torch.Tensor, T: float = 1.0,
                      end: float | None = 0.0) -> torch.Tensor:
    """linspace(T, eps, steps) followed by `end` (the time after the last step), on x's device.

    With end=None the grid is linspace(T, eps, steps + 1) (ODE solvers stop at eps).
    """
    if end is None:
        return torch.linspace(T, eps, steps + 1, device=x.device, dtype=x.dtype)
    ts = torch.linspace(T, eps, steps, device=x.device, dtype=x.dtype)
    return torch.cat([ts, ts.new_full((1,), end)])


def with_guidance(score_fn: ScoreFn, guidance: ScoreFn | None) -> ScoreFn:
    """score_fn + guidance, e.g. s(t) grad log p(y | x) (thesis Eq. 4.22, 5.6)."""
    if guidance is None:
        return score_fn

    def guided(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return score_fn(x, t) + guidance(x, t)

    return guided


class StepRegistry:
    """Names -> step functions of one kind ("predictor", "corrector"), filled by the `register`
    decorator next to each definition (as score_sde's register_predictor / register_corrector).
    An unknown name is a UserError listing the registered names in registration order."""

    def __init__(self, kind: str):
        self.kind = kind
        self._steps: dict[str, Callable] = {}

    def register(self, name: str) -> Callable[[Callable], Callable]:
        def add(fn: Callable) -> Callable:
            if name in self._steps:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._steps[name] = fn
            return fn

        return add

    def names(self) -> tuple[str, ...]:
        return tuple(self._steps)

    def __contains__(self, name: str) -> bool:
        return name in self._steps

    def get(self, name: str) -> Callable:
        if name not in self._steps:
            raise UserError(f"unknown {self.kind} {name!r}; choose one of {', '.join(self._steps)}")
        return self._steps[name]
