"""Noise schedules shared by the segmenter, the score SDEs, EDM and discriminator guidance."""
from __future__ import annotations

import torch


def ve_sigma(t: torch.Tensor | float, sigma_min: float, sigma_max: float) -> torch.Tensor:
    """VE noise scale sigma(t) = sigma_min (sigma_max / sigma_min)^t (thesis Eq. 5.2)."""
    t = torch.as_tensor(t, dtype=torch.float32) if not torch.is_tensor(t) else t
    return sigma_min * (sigma_max / sigma_min) ** t


def vp_sigma(tau, beta_min: float = 0.1, beta_max: float = 20.0):
    """VP SDE noise-to-signal ratio sigma(tau) = sqrt(exp(b0 tau + (b1 - b0) tau^2 / 2) - 1)."""
    tau = torch.as_tensor(tau, dtype=torch.float64)
    return torch.expm1(beta_min * tau + (beta_max - beta_min) * tau**2 / 2).sqrt()


def sigma_to_vp_time(sigma, beta_min: float = 0.1, beta_max: float = 20.0):
    """tau(sigma) = (-b0 + sqrt(b0^2 + 2 (b1 - b0) ln(1 + sigma^2))) / (b1 - b0): vp_sigma^-1."""
    s = torch.as_tensor(sigma, dtype=torch.float64)
    db = beta_max - beta_min
    return (-beta_min + (beta_min**2 + 2 * db * torch.log1p(s**2)).sqrt()) / db


def estimate_sigma_max(images: torch.Tensor, n_pairs: int, generator: torch.Generator,
                       chunk: int = 4096) -> float:
    """Largest Euclidean distance among `n_pairs` random pairs of training images.

    The thesis (Sec. 5.4.3) estimates sigma_max this way because all O(n^2) pairs are
    infeasible: 20,000,000 random pairs on Cityscapes give sigma_max ~ 338.
    """
    n = images.shape[0]
    if n < 2:
        raise ValueError("need at least two images to estimate sigma_max")
    flat = images.reshape(n, -1).float()
    best = 0.0
    done = 0
    while done < n_pairs:
        m = min(chunk, n_pairs - done)
        i = torch.randint(0, n, (m,), generator=generator)
        j = torch.randint(0, n, (m,), generator=generator)
        d = (flat[i] - flat[j]).norm(dim=1).max().item()
        best = max(best, d)
        done += m
    return best
