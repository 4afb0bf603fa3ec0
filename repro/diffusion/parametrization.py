"""Conversions between the denoiser D, the score and epsilon at noise level sigma; DDPM alphas.

Convention (DESIGN.md): x = x0 + sigma * eps with continuous sigma (EDM's D(x; sigma)).
Then the score is (D - x) / sigma^2 (Tweedie) and the predicted noise is (x - D) / sigma.
A DDPM at discrete step t with cumulative alpha_bar sees x_ddpm = sqrt(alpha_bar) x, so
sigma = sqrt((1 - alpha_bar) / alpha_bar) (EDM paper, Sec. 2 / Appendix C.2).
The samplers and guidance convert through these functions (repro.sampling.edm,
repro.guidance.epsilon_scaling); an expression is kept inline only where the call would change
its floating-point operations (e.g. a Python-float sigma, which CUDA divides as a reciprocal).
"""
from __future__ import annotations

import math

import torch


def _col(sigma, like: torch.Tensor) -> torch.Tensor:
    """Sigma as a tensor broadcastable over `like` (scalar, [B] or already [B,1,...])."""
    s = torch.as_tensor(sigma, dtype=like.dtype, device=like.device)
    if s.ndim == 1 and like.ndim > 1 and s.shape[0] == like.shape[0]:
        s = s.reshape(-1, *([1] * (like.ndim - 1)))
    return s


def score_from_denoiser(D: torch.Tensor, x: torch.Tensor, sigma) -> torch.Tensor:
    """grad_x log p(x; sigma) = (D(x; sigma) - x) / sigma^2 (Tweedie's formula)."""
    s = _col(sigma, x)
    return (D - x) / s**2


def denoiser_from_score(score: torch.Tensor, x: torch.Tensor, sigma) -> torch.Tensor:
    """D = x + sigma^2 * score."""
    s = _col(sigma, x)
    return x + s**2 * score


def eps_from_denoiser(D: torch.Tensor, x: torch.Tensor, sigma) -> torch.Tensor:
    """Predicted noise eps = (x - D) / sigma; this is also the EDM ODE direction dx/dsigma."""
    s = _col(sigma, x)
    return (x - D) / s


def denoiser_from_eps(eps: torch.Tensor, x: torch.Tensor, sigma) -> torch.Tensor:
    """D = x - sigma * eps."""
    s = _col(sigma, x)
    return x - s * eps


def sigma_from_alpha_bar(alpha_bar):
    """sigma = sqrt((1 - alpha_bar) / alpha_bar): the VE noise level of a DDPM step."""
    a = torch.as_tensor(alpha_bar)
    return ((1 - a) / a).sqrt()


def alpha_bar_from_sigma(sigma):
    """alpha_bar = 1 / (1 + sigma^2), the inverse of `sigma_from_alpha_bar`."""
    s = torch.as_tensor(sigma)
    return 1 / (1 + s**2)


def ddpm_alpha_bars(betas: torch.Tensor) -> torch.Tensor:
    """alpha_bar_t = prod_{s<=t} (1 - beta_s) (002 thesis, Prop. 6.1)."""
    return torch.cumprod(1 - betas.to(torch.float64), dim=0)


def linear_beta_schedule(T: int, beta_1: float = 1e-4, beta_T: float = 0.02) -> torch.Tensor:
    """DDPM's linear betas (Ho et al.), float64, length T."""
    return torch.linspace(beta_1, beta_T, T, dtype=torch.float64)


def cosine_beta_schedule(T: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Nichol & Dhariwal's cosine schedule: alpha_bar(t) = cos^2(((t/T + s)/(1 + s)) pi/2).

    beta_t = 1 - alpha_bar(t) / alpha_bar(t-1), clipped at `max_beta` as in their paper.
    """
    t = torch.arange(T + 1, dtype=torch.float64)
    f = torch.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2
    alpha_bar = f / f[0]
    betas = 1 - alpha_bar[1:] / alpha_bar[:-1]
    return betas.clamp(max=max_beta)
