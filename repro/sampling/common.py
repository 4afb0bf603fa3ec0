"""Small helpers shared by the score-SDE samplers: time grids, guidance, noise, checks."""
from __future__ import annotations

from collections.abc import Callable, Sequence

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


Generators = torch.Generator | Sequence[torch.Generator] | None


def _draw(fn, shape, generator, device, dtype) -> torch.Tensor:
    # Draw where the generator lives (a CPU generator cannot fill a CUDA tensor), then move:
    # the same seed gives the same numbers whichever device the result goes to.
    device = torch.device(device) if device is not None else None
    if isinstance(generator, (list, tuple)):
        # One generator per sample: sample i's numbers do not depend on which batch it is in,
        # so a batch of maps gives the same images as the maps one by one.
        if len(generator) != shape[0]:
            raise ValueError(f"{len(generator)} generators for a batch of {shape[0]} samples")
        return torch.stack([_draw(fn, tuple(shape[1:]), g, device, dtype) for g in generator])
    if generator is None or device is None or generator.device == device:
        return fn(tuple(shape), generator=generator, device=device, dtype=dtype)
    return fn(tuple(shape), generator=generator, device=generator.device, dtype=dtype).to(device)


def randn(shape, generator: Generators, device=None, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Standard normal draws of `shape` on `device` from `generator` (or one generator per
    sample along the first dimension), on any pair of devices."""
    return _draw(torch.randn, shape, generator, device, dtype)


def rand(shape, generator: Generators, device=None, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Uniform [0, 1) draws of `shape` on `device` from `generator`, on any pair of devices."""
    return _draw(torch.rand, shape, generator, device, dtype)


def randn_like(x: torch.Tensor, generator: Generators) -> torch.Tensor:
    return randn(x.shape, generator, x.device, x.dtype)
