"""Reverse-SDE solvers from the Ito-Taylor expansion (short report Eq. 6): Euler-Maruyama keeps
the first term, Milstein the first two:

    x_{n+1} = x_n + a dt + b dW + 1/2 b b' (dW^2 - |dt|),   dW = sqrt(|dt|) z,

with a the reverse drift f - g^2 score (thesis Eq. 4.11), b = g and b' = d g / d x taken from
`sde.diffusion_dx` (autograd). For VE/VP/sub-VP, g does not depend on x, so b' = 0 and Milstein
coincides with Euler-Maruyama draw for draw.
"""
from __future__ import annotations

import torch

from repro.diffusion.sde import SDE, batch_t, bcast
from repro.errors import UserError
from repro.rng import randn_like
from repro.sampling.common import ScoreFn, check_steps, resolve_eps, reverse_time_grid, with_guidance
from repro.sampling.result import SampleResult
from repro.sampling.score_sde_pc import score_sde_pc_sample


def ito_taylor_step(x: torch.Tensor, drift: torch.Tensor, g: torch.Tensor, dt: torch.Tensor,
                    z: torch.Tensor, g_dx: torch.Tensor | None = None) -> torch.Tensor:
    """One Euler-Maruyama step, plus the Milstein term when g_dx (= d g / d x) is given."""
    dt = bcast(dt, x)
    g = bcast(g, x)
    dw = (dt.abs()).sqrt() * z
    out = x + drift * dt + g * dw
    if g_dx is not None:
        out = out + 0.5 * g * bcast(g_dx, x) * (dw * dw - dt.abs())
    return out


def _reverse_ito_taylor(score_fn, sde, x_init, steps, generator, eps, guidance, denoise,
                        keep_trajectory, milstein, discretisation="grid"):
    steps, eps = check_steps(steps), resolve_eps(sde, eps)
    if discretisation == "score_sde":  # score_sde's EulerMaruyamaPredictor alone: dt = -1/N every step
        return score_sde_pc_sample(score_fn, sde, x_init, steps=steps, eps=eps, generator=generator,
                                   predictor="milstein" if milstein else "euler_maruyama", corrector="none",
                                   guidance=guidance, denoise=denoise, keep_trajectory=keep_trajectory)
    if discretisation != "grid":
        raise UserError(f"unknown discretisation {discretisation!r}; choose one of grid, score_sde")
    score_fn = with_guidance(score_fn, guidance)
    grid = reverse_time_grid(steps, eps, x_init, sde.T)
    b = x_init.shape[0]
    x, traj = x_init, ([] if keep_trajectory else None)
    for i in range(steps):
        t, t_next = grid[i].expand(b), grid[i + 1].expand(b)
        dt = t_next - t
        drift, g = sde.sde(x, t)
        drift = drift - bcast(g * g, x) * score_fn(x, t)
        if denoise and i == steps - 1:  # noise-free mean of the last step
            x = x + drift * bcast(dt, x)
        else:
            g_dx = sde.diffusion_dx(x, t) if milstein else None
            x = ito_taylor_step(x, drift, g, dt, randn_like(x, generator), g_dx)
        if traj is not None:
            traj.append(x)
    return SampleResult(x, steps, traj)


@torch.no_grad()
def euler_maruyama_sample(score_fn: ScoreFn, sde: SDE, x_init: torch.Tensor, *, steps: int,
                          generator: torch.Generator | None = None, eps: float | None = None,
                          guidance: ScoreFn | None = None, denoise: bool = True,
                          keep_trajectory: bool = False, discretisation: str = "grid") -> SampleResult:
    """Euler-Maruyama on the reverse SDE at linspace(1, eps, steps), last step to t = 0
    (discretisation "score_sde": score_sde's dt = -1/N on every step)."""
    return _reverse_ito_taylor(score_fn, sde, x_init, steps, generator, eps, guidance, denoise,
                               keep_trajectory, milstein=False, discretisation=discretisation)


@torch.no_grad()
def milstein_sample(score_fn: ScoreFn, sde: SDE, x_init: torch.Tensor, *, steps: int,
                    generator: torch.Generator | None = None, eps: float | None = None,
                    guidance: ScoreFn | None = None, denoise: bool = True,
                    keep_trajectory: bool = False, discretisation: str = "grid") -> SampleResult:
    """Milstein (short report Eq. 6) on the reverse SDE; same grid and noise as Euler-Maruyama."""
    return _reverse_ito_taylor(score_fn, sde, x_init, steps, generator, eps, guidance, denoise,
                               keep_trajectory, milstein=True, discretisation=discretisation)


@torch.no_grad()
def integrate_forward(sde: SDE, x0: torch.Tensor, *, t_end: float, steps: int,
                      generator: torch.Generator | None = None, t_start: float = 0.0,
                      method: str = "euler_maruyama", noise: torch.Tensor | None = None
                      ) -> torch.Tensor:
    """Simulate the forward SDE from t_start to t_end (for Monte Carlo checks of marginals and
    of the solvers' strong order). `noise` ([steps, *x0.shape] standard normals) fixes the
    Brownian path; otherwise it is drawn from `generator`."""
    steps = check_steps(steps)
    if method not in ("euler_maruyama", "milstein"):
        raise UserError(f"unknown SDE method {method!r}; choose euler_maruyama or milstein")
    grid = torch.linspace(t_start, t_end, steps + 1, device=x0.device, dtype=x0.dtype)
    x = x0
    for i in range(steps):
        t = batch_t(grid[i], x)
        drift, g = sde.sde(x, t)
        g_dx = sde.diffusion_dx(x, t) if method == "milstein" else None
        z = randn_like(x, generator) if noise is None else noise[i]
        x = ito_taylor_step(x, drift, g, grid[i + 1] - grid[i], z, g_dx)
    return x
