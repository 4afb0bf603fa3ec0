"""Small helpers shared by the score-SDE samplers: time grids, guidance, noise, checks."""
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


