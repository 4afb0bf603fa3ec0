"""Discrete DDPM: beta schedules, the closed-form forward marginal and L_simple (001 paper Sec. 2.3).

Three schedules over T steps, indexed 0..T-1 as the appendix code indexes its arrays (array
index i is the paper's 1-based step t = i + 1):
- `paper_cosine_beta`: the 001 appendix's `cosine_noise_schedule`, a half-cosine ramp *in beta*,
  beta_i = beta_start + (beta_end - beta_start) (1 - cos(pi i / (T - 1))) / 2. The text (Sec. 2.3.1)
  says it follows Nichol & Dhariwal's cosine schedule [26]; the code does not: that one is a
  cosine in alpha_bar (`nichol_cosine` below);
- `linear`: Ho et al.'s linspace(beta_start, beta_end, T);
- `nichol_cosine`: alpha_bar(t) = cos^2(((t/T + s)/(1 + s)) pi/2), betas clipped at 0.999.
beta_start/beta_end 1e-4/0.02: the text gives them only for the linear schedule (Sec. 2.3.1,
"increasing from beta_1 = 0.0001 to beta_T = 0.02"); the appendix code reads them from its config.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from repro.diffusion.parametrization import cosine_beta_schedule, ddpm_alpha_bars, linear_beta_schedule
from repro.errors import UserError

SCHEDULES = ("paper_cosine_beta", "linear", "nichol_cosine")
BETA_START, BETA_END = 1e-4, 0.02   # 001 Sec. 2.3.1 (stated for the linear schedule only)


def paper_cosine_beta_schedule(T: int, beta_start: float = BETA_START, beta_end: float = BETA_END) -> torch.Tensor:
    """001 appendix `cosine_noise_schedule`, float64 [T]:
    reversed(beta_start + (beta_end - beta_start) (1 + cos(pi linspace(0, 1, T))) / 2), which is
    beta_start + (beta_end - beta_start) (1 - cos(pi i / (T - 1))) / 2 at index i."""
    if T < 2:
        raise UserError(f"DDPM steps T must be >= 2 for the paper's schedule, got {T}")
    i = torch.arange(T, dtype=torch.float64)
    return beta_start + (beta_end - beta_start) * (1 - torch.cos(math.pi * i / (T - 1))) / 2


def make_betas(name: str, T: int, beta_start: float = BETA_START, beta_end: float = BETA_END) -> torch.Tensor:
    """The betas [T] (float64) of schedule `name` (one of SCHEDULES)."""
    if T < 2:
        raise UserError(f"DDPM steps T must be >= 2, got {T}")
    if not 0 < beta_start < beta_end < 1:
        raise UserError(f"DDPM betas need 0 < beta_start < beta_end < 1, got {beta_start}, {beta_end}")
    if name == "paper_cosine_beta":
        return paper_cosine_beta_schedule(T, beta_start, beta_end)
    if name == "linear":
        return linear_beta_schedule(T, beta_start, beta_end)
    if name == "nichol_cosine":
        return cosine_beta_schedule(T)
    raise UserError(f"unknown DDPM schedule {name!r}: use one of {', '.join(SCHEDULES)}")


@dataclass(frozen=True)
class DDPMSchedule:
    """betas, alphas = 1 - betas, alpha_bars = cumprod(alphas) (001 Sec. 2.3.1), float64 [T] on the CPU."""

    name: str
    betas: torch.Tensor

    @classmethod
    def make(cls, name: str = "paper_cosine_beta", T: int = 1000, beta_start: float = BETA_START,
             beta_end: float = BETA_END) -> "DDPMSchedule":
        return cls(name, make_betas(name, T, beta_start, beta_end))

    @property
    def T(self) -> int:
        return int(self.betas.shape[0])

    @property
    def alphas(self) -> torch.Tensor:
        return 1 - self.betas

    @property
    def alpha_bars(self) -> torch.Tensor:
        return ddpm_alpha_bars(self.betas)

    def record(self) -> dict:
        b = self.betas
        return {"schedule": self.name, "T": self.T, "beta_first": float(b[0]), "beta_last": float(b[-1]),
                "alpha_bar_last": float(self.alpha_bars[-1])}


def _gather(values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """values[t] as [B, 1, ...] in like's dtype and device."""
    v = values.to(like.device)[t.to(like.device).long()].to(like.dtype)
    return v.reshape(-1, *([1] * (like.ndim - 1)))


def q_sample(schedule: DDPMSchedule, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps (001 Eq. 2.1) for integer steps t [B]."""
    ab = _gather(schedule.alpha_bars, t, x0)
    return ab.sqrt() * x0 + (1 - ab).sqrt() * noise


def _draw_randn(shape, generator: torch.Generator | None, device, dtype) -> torch.Tensor:
    # drawn where the generator lives, then moved: the same seed gives the same numbers on any device
    gdev = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=gdev, dtype=dtype).to(device)


def sample_timesteps(schedule: DDPMSchedule, n: int, generator: torch.Generator | None,
                     device) -> torch.Tensor:
    """t ~ Uniform({1, ..., T}) (001 Alg. 1 line 3) as 0-based array indices [n] (long)."""
    gdev = generator.device if generator is not None else device
    return torch.randint(0, schedule.T, (n,), generator=generator, device=gdev).to(device)


def l_simple(eps_fn, schedule: DDPMSchedule, x0: torch.Tensor, generator: torch.Generator | None,
             t: torch.Tensor | None = None) -> torch.Tensor:
    """L_simple = E || eps - eps_theta(x_t, t) ||^2 (001 Eq. 2.2, Alg. 1), the mean over every element
    (the appendix's `mse(noise, predicted_noise)`). eps_fn(x_t, t) -> predicted noise."""
    if t is None:
        t = sample_timesteps(schedule, x0.shape[0], generator, x0.device)
    noise = _draw_randn(x0.shape, generator, x0.device, x0.dtype)
    x_t = q_sample(schedule, x0, t, noise)
    return torch.mean((noise - eps_fn(x_t, t)) ** 2)
