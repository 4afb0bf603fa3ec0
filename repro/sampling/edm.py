"""EDM's deterministic/stochastic sampler (Karras et al. 2022, Algorithm 2), Euler or Heun.

One function serves EDM, EDM-G++ (discriminator guidance, 002 thesis Ch. 9) and SEDM-G++
(epsilon scaling on top, 002 thesis Ch. 11.2) through the `guidance` and `eps_scale`
arguments. The state is float64 as in EDM; the denoiser is evaluated in `net_dtype`
(float32 by default: cast in, cast out).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import torch

from repro.diffusion.parametrization import eps_from_denoiser
from repro.rng import randn


class Guidance(Protocol):
    """A term added to the ODE direction d = (x - D)/sigma, or None for "nothing here"."""

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, denoised: torch.Tensor, *,
                 stage: str, step: int) -> torch.Tensor | None: ...


@dataclass
class StepRecord:
    """One denoiser evaluation: step index i, 'euler' or 'heun', sigma, per-sample norms."""

    step: int
    stage: str
    sigma: float
    eps_norm: torch.Tensor        # ||(x - D)/sigma||_2 per sample: the network's own epsilon
    direction_norm: torch.Tensor  # ||d||_2 per sample after epsilon scaling and guidance


@dataclass
class EDMSampleResult:
    samples: torch.Tensor          # float64, the final x at sigma = 0
    nfe: int                       # denoiser evaluations
    sigmas: torch.Tensor           # the N + 1 time steps used (float64)
    guided_evals: int = 0          # evaluations where the guidance returned a term
    records: list[StepRecord] = field(default_factory=list)


def edm_time_steps(N: int, sigma_min: float = 0.002, sigma_max: float = 80.0,
                   rho: float = 7.0) -> torch.Tensor:
    """sigma_i = (smax^(1/rho) + i/(N-1) (smin^(1/rho) - smax^(1/rho)))^rho, i < N; then 0.

    EDM Eq. 5; returns N + 1 float64 values (the last is 0).
    """
    if N < 1:
        raise ValueError(f"steps must be >= 1, got {N}")
    i = torch.arange(N, dtype=torch.float64)
    frac = i / (N - 1) if N > 1 else i
    t = (sigma_max ** (1 / rho) + frac * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    return torch.cat([t, torch.zeros(1, dtype=torch.float64)])


def network_sigma_range(denoiser, sigma_min: float, sigma_max: float) -> tuple[float, float]:
    """[sigma_min, sigma_max] clamped to the network's own range when it declares one (attributes
    `sigma_min` / `sigma_max`, as NVlabs' preconditioners do): NVlabs/edm generate.py,
    sigma_min = max(sigma_min, net.sigma_min), sigma_max = min(sigma_max, net.sigma_max). Matters
    for networks with a narrower range, e.g. VEPrecond's sigma_min = 0.02 > EDM's 0.002."""
    net_min, net_max = getattr(denoiser, "sigma_min", None), getattr(denoiser, "sigma_max", None)
    if isinstance(net_min, (int, float)) and not isinstance(net_min, bool):
        sigma_min = max(sigma_min, float(net_min))
    if isinstance(net_max, (int, float)) and not isinstance(net_max, bool):
        sigma_max = min(sigma_max, float(net_max))
    if not 0 < sigma_min < sigma_max:
        raise ValueError(f"empty sigma range [{sigma_min}, {sigma_max}] after clamping to the network's range")
    return sigma_min, sigma_max


@torch.no_grad()   # guidance terms that need gradients enable them locally
def edm_sample(denoiser: Callable, latents: torch.Tensor, *, steps: int, solver: str = "heun",
               generator: torch.Generator | None = None, sigma_min: float = 0.002,
               sigma_max: float = 80.0, rho: float = 7.0, S_churn: float = 0.0,
               S_min: float = 0.0, S_max: float = math.inf, S_noise: float = 1.0,
               guidance: Guidance | None = None, eps_scale=None,
               class_labels: torch.Tensor | None = None, record: bool = False,
               net_dtype: torch.dtype | None = torch.float32, clamp_to_net: bool = True) -> EDMSampleResult:
    """Sample with EDM's Algorithm 2. `latents` ~ N(0, I) are multiplied by sigma_max here.

    solver: 'euler' (NFE = N) or 'heun' (2nd-order correction on every step but the last,
    NFE = 2N - 1). `guidance(x, sigma, D, stage=, step=)` returns a term added to the ODE
    direction (DG: w g / sigma). `eps_scale` (an EpsilonScaling) divides the predicted eps by
    b_i at both evaluations; its placement decides whether the guidance term is divided too
    ('ning') or added unscaled afterwards ('sedm'). b = 1 and no guidance give EDM bit for bit.
    `generator` is required when S_churn > 0. `net_dtype=None` evaluates in float64.
    With `clamp_to_net` the sigma range is clamped to the network's own (network_sigma_range).
    """
    if solver not in ("euler", "heun"):
        raise ValueError(f"solver must be 'euler' or 'heun', got {solver!r}")
    if S_churn > 0 and generator is None:
        raise ValueError("S_churn > 0 draws noise: pass a torch.Generator")
    device, B = latents.device, latents.shape[0]
    if clamp_to_net:
        sigma_min, sigma_max = network_sigma_range(denoiser, sigma_min, sigma_max)
    t_steps = edm_time_steps(steps, sigma_min, sigma_max, rho).to(device)
    result = EDMSampleResult(samples=latents, nfe=0, sigmas=t_steps)

    def direction(x: torch.Tensor, sigma: torch.Tensor, i: int, stage: str) -> torch.Tensor:
        x_in = x if net_dtype is None else x.to(net_dtype)
        s_in = sigma.to(x_in.dtype).expand(B)
        args = (x_in, s_in) if class_labels is None else (x_in, s_in, class_labels)
        denoised = denoiser(*args).to(torch.float64)
        result.nfe += 1
        eps = eps_from_denoiser(denoised, x, sigma)        # EDM Eq. 3 direction = predicted eps
        b = 1.0 if eps_scale is None else eps_scale.factor(i)
        d = eps if b == 1.0 else eps / b                   # 002 thesis Eq. 10.3
        g = None if guidance is None else guidance(x, sigma, denoised, stage=stage, step=i)
        if g is not None:
            result.guided_evals += 1
            g = g.to(torch.float64)
            if eps_scale is not None and eps_scale.placement == "ning":
                d = (eps + g) / b                          # the whole guided direction scaled
            else:
                d = d + g                                  # SEDM-G++: DG term added unscaled
        if record:
            result.records.append(StepRecord(i, stage, float(sigma), eps.flatten(1).norm(dim=1),
                                             d.flatten(1).norm(dim=1)))
        return d

    x_next = latents.to(torch.float64) * t_steps[0]
    for i in range(steps):
        t_cur, t_next = t_steps[i], t_steps[i + 1]
        x_cur = x_next
        # Churn: raise the noise level temporarily (EDM Alg. 2, lines 4-6).
        gamma = min(S_churn / steps, math.sqrt(2) - 1) if S_min <= float(t_cur) <= S_max else 0.0
        t_hat = t_cur + gamma * t_cur
        x_hat = x_cur
        if gamma > 0:
            noise = randn(x_cur.shape, generator, device, torch.float64)
            x_hat = x_cur + (t_hat**2 - t_cur**2).sqrt() * S_noise * noise
        # Euler step.
        d_cur = direction(x_hat, t_hat, i, "euler")
        x_next = x_hat + (t_next - t_hat) * d_cur
        # Heun's 2nd-order correction, skipped on the last step (sigma = 0).
        if solver == "heun" and i < steps - 1:
            d_prime = direction(x_next, t_next, i, "heun")
            x_next = x_hat + (t_next - t_hat) * (0.5 * d_cur + 0.5 * d_prime)
    result.samples = x_next
    return result
