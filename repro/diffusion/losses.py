"""Training losses on noisy data: denoising score matching of the score model, and the BCE of
the time-conditioned discriminator of discriminator guidance (repro.nets.discriminator)."""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from repro.diffusion.schedules import sigma_to_vp_time, vp_sigma
from repro.diffusion.sde import SDE, batch_t, bcast
from repro.rng import rand, randn


def dsm_loss(score_model: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], sde: SDE,
             x0: torch.Tensor, generator: torch.Generator | None = None, eps: float | None = 1e-5,
             likelihood_weighting: bool = False, reduce_mean: bool = True) -> torch.Tensor:
    """Continuous denoising score matching (thesis Eq. 4.14), t ~ U(eps, 1).

    With lambda(t) = std(t)^2 the per-sample term is || std s(x_t, t) + z ||^2 (thesis Sec.
    4.3.1: lambda(sigma) = sigma^2), where x_t = m(t) x0 + std(t) z. `likelihood_weighting`
    uses lambda(t) = g(t)^2 instead. `reduce_mean` averages over the data dimensions (a
    per-dimension loss comparable across resolutions); False sums them as the score SDE code
    does. Returns the batch mean. eps=None takes the SDE's default (1e-5 VE, 1e-3 VP).
    """
    eps = sde.default_eps if eps is None else eps
    b = x0.shape[0]
    t = rand((b,), generator, x0.device, x0.dtype) * (sde.T - eps) + eps
    z = randn(x0.shape, generator, x0.device, x0.dtype)
    mean, std = sde.marginal_prob(x0, t)
    std_b = bcast(std, x0)
    score = score_model(mean + std_b * z, t)
    if likelihood_weighting:
        g2 = sde.sde(x0, batch_t(t, x0))[1] ** 2
        per_elem = (score + z / std_b) ** 2 * bcast(g2, x0)
    else:
        per_elem = (score * std_b + z) ** 2
    flat = per_elem.reshape(b, -1)
    per_sample = flat.mean(dim=1) if reduce_mean else flat.sum(dim=1)
    return per_sample.mean()


def sample_vp_time(n: int, generator: torch.Generator, *, t_min: float = 1e-5, t_max: float = 1.0,
                   importance_sampling: bool = True, beta_min: float = 0.1, beta_max: float = 20.0,
                   device=None) -> torch.Tensor:
    """VP times for discriminator training, as DG does.

    importance_sampling=True draws tau with density proportional to beta(tau) / sigma_vp(tau)^2
    (the likelihood weighting of Song et al.), whose antiderivative is ln(sigma(tau)^2): i.e.
    ln sigma is uniform between sigma(t_min) and sigma(t_max), mapped back to tau. Every
    draw then has unit weight in the BCE. False draws tau uniformly on [t_min, t_max].
    """
    u = rand((n,), generator, device, torch.float64)
    if not importance_sampling:
        return t_min + (t_max - t_min) * u
    vp = {"beta_min": beta_min, "beta_max": beta_max}
    lo, hi = vp_sigma(t_min, **vp).log().item(), vp_sigma(t_max, **vp).log().item()
    return sigma_to_vp_time((lo + (hi - lo) * u).exp(), **vp)


def discriminator_bce_loss(disc: nn.Module, real: torch.Tensor, fake: torch.Tensor,
                           generator: torch.Generator, *, t_min: float = 1e-5,
                           importance_sampling: bool = True, beta_min: float = 0.1,
                           beta_max: float = 20.0, class_labels=None) -> torch.Tensor:
    """BCE of d on real (label 1) vs generated (label 0) images at random noise levels
    (002 thesis Eq. 9.2). Each clean image x0 is noised with the VP marginal at its tau:
    x_vp = (x0 + sigma(tau) n) / sqrt(1 + sigma(tau)^2)."""
    if real.shape != fake.shape:
        raise ValueError(f"real and generated batches must match: {tuple(real.shape)} vs {tuple(fake.shape)}")
    x0 = torch.cat([real, fake])
    target = torch.cat([torch.ones(real.shape[0]), torch.zeros(fake.shape[0])]).to(x0)
    tau = sample_vp_time(x0.shape[0], generator, t_min=t_min, importance_sampling=importance_sampling,
                         beta_min=beta_min, beta_max=beta_max, device=x0.device)
    sigma = vp_sigma(tau, beta_min, beta_max).to(x0.dtype).reshape(-1, *([1] * (x0.ndim - 1)))
    noise = randn(x0.shape, generator, x0.device, x0.dtype)
    x_vp = (x0 + sigma * noise) / (1 + sigma**2).sqrt()
    args = (x_vp, tau.to(x0.dtype)) if class_labels is None else (x_vp, tau.to(x0.dtype), class_labels)
    return F.binary_cross_entropy_with_logits(disc(*args), target)

