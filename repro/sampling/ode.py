"""Probability-flow ODE sampling (thesis Eq. 4.21): dx = [f - g^2 score / 2] dt from t = 1 to eps.

`method="rk45"`: scipy's adaptive Runge-Kutta (solve_ivp) in float64, NFE = its nfev.
`method="euler"` / `"heun"`: fixed steps on linspace(1, eps, steps + 1) in torch; Heun is the
explicit trapezoid rule (2 evaluations per step).
"""
from __future__ import annotations

import numpy as np
import torch

from repro.diffusion.sde import SDE, bcast
from repro.errors import UserError
from repro.sampling.common import (ScoreFn, check_steps, resolve_eps, reverse_time_grid,
                                   with_guidance)
from repro.sampling.result import SampleResult

METHODS = ("rk45", "euler", "heun")


def _denoise(sde: SDE, score_fn: ScoreFn, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Noise-free reverse-diffusion step from eps to 0 (one extra evaluation)."""
    rev_f, _ = sde.reverse_discretize(score_fn(x, t), x, t, torch.zeros_like(t))
    return x + rev_f


def _solve_rk45(sde, score_fn, x_init, eps, rtol, atol, keep_trajectory):
    from scipy.integrate import solve_ivp

    shape, device, dtype = x_init.shape, x_init.device, x_init.dtype
    b = shape[0]

    def fun(t, y):
        x = torch.from_numpy(y).reshape(shape).to(device=device, dtype=dtype)
        tv = torch.full((b,), t, device=device, dtype=dtype)
        with torch.no_grad():
            d = sde.reverse_drift(score_fn(x, tv), x, tv, probability_flow=True)
        return d.reshape(-1).to(torch.float64).cpu().numpy()

    y0 = x_init.detach().reshape(-1).to(torch.float64).cpu().numpy()
    sol = solve_ivp(fun, (sde.T, eps), y0, method="RK45", rtol=rtol, atol=atol)
    if not sol.success:
        raise RuntimeError(f"probability-flow ODE solver failed: {sol.message}")
    to_x = lambda y: torch.from_numpy(np.ascontiguousarray(y)).reshape(shape).to(device=device, dtype=dtype)
    traj = [to_x(sol.y[:, k]) for k in range(sol.y.shape[1])] if keep_trajectory else None
    return to_x(sol.y[:, -1]), int(sol.nfev), traj


@torch.no_grad()
def probability_flow_ode_sample(score_fn: ScoreFn, sde: SDE, x_init: torch.Tensor, *,
                                steps: int | None = None, generator: torch.Generator | None = None,
                                eps: float | None = None, method: str = "rk45",
                                rtol: float = 1e-5, atol: float = 1e-5,
                                guidance: ScoreFn | None = None, denoise: bool = False,
                                keep_trajectory: bool = False) -> SampleResult:
    """Integrate the probability-flow ODE from x_init at t = 1 to t = eps; deterministic (the
    generator is unused). `steps` is required for euler/heun; `denoise` adds one noise-free
    reverse-diffusion step from eps to 0."""
    eps = resolve_eps(sde, eps)
    if method not in METHODS:
        raise UserError(f"unknown ODE method {method!r}; choose one of {', '.join(METHODS)}")
    score_fn = with_guidance(score_fn, guidance)
    b = x_init.shape[0]
    if method == "rk45":
        x, nfe, traj = _solve_rk45(sde, score_fn, x_init, eps, rtol, atol, keep_trajectory)
    else:
        steps = check_steps(steps)
        grid = reverse_time_grid(steps, eps, x_init, sde.T, end=None)
        x, nfe, traj = x_init, 0, ([] if keep_trajectory else None)
        for i in range(steps):
            t, t_next = grid[i].expand(b), grid[i + 1].expand(b)
            dt = bcast(t_next - t, x)
            d1 = sde.reverse_drift(score_fn(x, t), x, t, probability_flow=True)
            x_euler = x + d1 * dt
            if method == "heun":
                d2 = sde.reverse_drift(score_fn(x_euler, t_next), x_euler, t_next, probability_flow=True)
                x = x + 0.5 * (d1 + d2) * dt
            else:
                x = x_euler
            if traj is not None:
                traj.append(x)
        nfe = steps * (2 if method == "heun" else 1)
    if denoise:
        x = _denoise(sde, score_fn, x, x.new_full((b,), eps))
        nfe += 1
    return SampleResult(x, nfe, traj)
