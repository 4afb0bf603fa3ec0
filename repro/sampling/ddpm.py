"""DDPM ancestral sampling (001 paper Alg. 2), with the appendix code's loop as a named option.

x_{t-1} = 1/sqrt(alpha_t) (x_t - (1 - alpha_t)/sqrt(1 - alpha_bar_t) eps_theta(x_t, t)) + sigma_t z,
sigma_t = sqrt(beta_t), z = 0 at the last step (001 Sec. 2.3.3). Two loops:
- `algorithm2`: t = T, ..., 1 (array indices T-1 ... 0): T network calls, no noise at index 0;
- `appendix`: the listing's `reversed(range(1, steps))`: indices T-1 ... 1, i.e. T-1 = 999 calls,
  no noise at index 1 (`if i > 1`); index 0 is never visited. Its caption (Tab. 2) says 1000 steps.
The coefficients are Python floats computed once, so a step costs the network call plus three
elementwise ops (see benchmarks/bench_ddpm_sampler.py).
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from repro.diffusion.ddpm import DDPMSchedule
from repro.errors import UserError
from repro.rng import randn_like
from repro.sampling.result import SampleResult

LOOPS = ("algorithm2", "appendix")
EpsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def ddpm_timesteps(T: int, loop: str) -> list[int]:
    """The array indices visited, in order: T-1..0 (Alg. 2) or T-1..1 (the appendix's loop)."""
    if loop == "algorithm2":
        return list(range(T - 1, -1, -1))
    if loop == "appendix":
        return list(range(T - 1, 0, -1))
    raise UserError(f"unknown DDPM loop {loop!r}: use one of {', '.join(LOOPS)}")


def step_coefficients(schedule: DDPMSchedule, i: int) -> tuple[float, float, float]:
    """(1/sqrt(alpha_i), (1 - alpha_i)/sqrt(1 - alpha_bar_i), sigma_i = sqrt(beta_i)) at index i (Alg. 2 line 4)."""
    a, ab, b = float(schedule.alphas[i]), float(schedule.alpha_bars[i]), float(schedule.betas[i])
    return 1.0 / a ** 0.5, (1.0 - a) / (1.0 - ab) ** 0.5, b ** 0.5


def ancestral_update(x: torch.Tensor, eps: torch.Tensor, coefs: tuple[float, float, float],
                     z: torch.Tensor | None) -> torch.Tensor:
    """One step of Alg. 2 line 4 given the predicted noise; z None = no noise (the last step)."""
    c1, c2, sigma = coefs
    mean = (x - c2 * eps) * c1
    return mean if z is None else mean.add_(z, alpha=sigma)


@torch.no_grad()
def ddpm_sample(eps_fn: EpsFn, schedule: DDPMSchedule, x_init: torch.Tensor, *,
                generator: torch.Generator | None = None, loop: str = "algorithm2",
                keep_trajectory: bool = False, first_steps: int | None = None) -> SampleResult:
    """Ancestral sampling from x_T = x_init. eps_fn(x, t) takes integer steps t [B] (long, 0-based array
    indices, what the network was trained on). nfe counts eps_fn calls (a classifier-free guided eps_fn
    is one batched network pass of size 2B). first_steps: run only the first k steps (timing; the result
    is then x at an intermediate step, not a sample)."""
    steps = ddpm_timesteps(schedule.T, loop)
    last = steps[-1]
    if first_steps is not None:
        steps = steps[: max(1, int(first_steps))]
    b, device = x_init.shape[0], x_init.device
    t_all = torch.arange(schedule.T, device=device, dtype=torch.long)
    coefs = {i: step_coefficients(schedule, i) for i in steps}
    x, traj = x_init, ([] if keep_trajectory else None)
    for i in steps:
        eps = eps_fn(x, t_all[i].expand(b))
        z = None if i == last else randn_like(x, generator)
        x = ancestral_update(x, eps.to(x.dtype), coefs[i], z)
        if traj is not None:
            traj.append(x)
    return SampleResult(x, len(steps), traj)
