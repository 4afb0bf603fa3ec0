"""Ancestral sampling: the discrete reverse Markov chains of DDPM (VP) and SMLD (VE)."""
from __future__ import annotations

import torch

from repro.diffusion.sde import SDE, VESDE, VPSDE, bcast
from repro.errors import UserError
from repro.sampling.common import ScoreFn, check_steps, resolve_eps, reverse_time_grid, with_guidance
from repro.rng import randn_like
from repro.sampling.result import SampleResult


def ancestral_step(sde: SDE, score: torch.Tensor, x: torch.Tensor, t: torch.Tensor,
                   t_next: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, std [B]) of x_{t_next} given x_t for the ancestral chain of `sde`.

    VP (thesis Eq. 4.13): mean = (x + beta_i s) / sqrt(1 - beta_i), std = sqrt(beta_i).
    VE (SMLD): mean = x + (sigma_i^2 - sigma_{i-1}^2) s,
               std = sqrt(sigma_{i-1}^2 (sigma_i^2 - sigma_{i-1}^2) / sigma_i^2).
    """
    if isinstance(sde, VPSDE):
        beta = sde.ddpm_beta(t, t_next)
        mean = (x + bcast(beta, x) * score) / bcast((1.0 - beta).sqrt(), x)
        return mean, beta.sqrt()
    if isinstance(sde, VESDE):
        sig = sde.sigma(t)
        sig_next = torch.where(t_next > 0, sde.sigma(t_next.clamp_min(0.0)), torch.zeros_like(sig))
        diff = (sig * sig - sig_next * sig_next).clamp_min(0.0)
        mean = x + bcast(diff, x) * score
        return mean, (sig_next * sig_next * diff / (sig * sig)).sqrt()
    raise UserError(f"ancestral sampling is defined for the VE and VP SDEs, not {type(sde).__name__}")


@torch.no_grad()
def ancestral_sample(score_fn: ScoreFn, sde: SDE, x_init: torch.Tensor, *, steps: int,
                     generator: torch.Generator | None = None, eps: float | None = None,
                     guidance: ScoreFn | None = None, denoise: bool = True,
                     keep_trajectory: bool = False) -> SampleResult:
    """Ancestral sampling at the times linspace(1, eps, steps), then down to t = 0."""
    steps, eps = check_steps(steps), resolve_eps(sde, eps)
    if not isinstance(sde, (VESDE, VPSDE)):
        raise UserError(f"ancestral sampling is defined for the VE and VP SDEs, not {type(sde).__name__}")
    score_fn = with_guidance(score_fn, guidance)
    grid = reverse_time_grid(steps, eps, x_init, sde.T)
    b = x_init.shape[0]
    x, traj = x_init, ([] if keep_trajectory else None)
    for i in range(steps):
        t, t_next = grid[i].expand(b), grid[i + 1].expand(b)
        mean, std = ancestral_step(sde, score_fn(x, t), x, t, t_next)
        x = mean if (denoise and i == steps - 1) else mean + bcast(std, x) * randn_like(x, generator)
        if traj is not None:
            traj.append(x)
    return SampleResult(x, steps, traj)
