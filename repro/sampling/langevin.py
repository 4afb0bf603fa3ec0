"""Annealed Langevin dynamics (thesis Alg. 1) and its denoised variant (thesis Alg. 2)."""
from __future__ import annotations

import torch

from repro.diffusion.sde import SDE
from repro.sampling.common import ScoreFn, check_steps, resolve_eps, reverse_time_grid, with_guidance
from repro.rng import randn_like
from repro.sampling.result import SampleResult


@torch.no_grad()
def annealed_langevin_sample(score_fn: ScoreFn, sde: SDE, x_init: torch.Tensor, *, steps: int,
                             generator: torch.Generator | None = None, eps: float | None = None,
                             n_steps_each: int = 100, step_lr: float = 2e-5,
                             denoise: bool = True, guidance: ScoreFn | None = None,
                             keep_trajectory: bool = False) -> SampleResult:
    """L = `steps` noise levels at t in linspace(1, eps, L) (geometric sigmas for VE), T =
    `n_steps_each` Langevin steps per level with alpha_i = step_lr sigma_i^2 / sigma_L^2 and
    x <- x + alpha_i / 2 s + sqrt(alpha_i) z (thesis Alg. 1). `denoise` adds Alg. 2's final
    step x + sigma_L^2 s(x, sigma_L) (for VP/sub-VP its Tweedie form (x + std^2 s) / m).
    """
    steps, eps = check_steps(steps), resolve_eps(sde, eps)
    n_each = check_steps(n_steps_each, "n_steps_each")
    score_fn = with_guidance(score_fn, guidance)
    ts = reverse_time_grid(steps, eps, x_init, sde.T, end=eps)[:-1]
    m, std = sde.marginal_coefs(ts)
    alphas = step_lr * (std / std[-1]) ** 2  # thesis Alg. 1 line 3
    half_alphas, sqrt_alphas = 0.5 * alphas, alphas.sqrt()
    b = x_init.shape[0]
    x, traj = x_init, ([] if keep_trajectory else None)
    for i in range(steps):
        t = ts[i].expand(b)
        for _ in range(n_each):  # thesis Alg. 1 line 6
            x = x + half_alphas[i] * score_fn(x, t) + sqrt_alphas[i] * randn_like(x, generator)
        if traj is not None:
            traj.append(x)
    nfe = steps * n_each
    if denoise:  # thesis Alg. 2 line 9
        t = ts[-1].expand(b)
        x = (x + std[-1] ** 2 * score_fn(x, t)) / m[-1]
        nfe += 1
    return SampleResult(x, nfe, traj)
