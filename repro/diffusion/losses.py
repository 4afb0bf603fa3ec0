"""Training losses of the score model."""
from __future__ import annotations

from collections.abc import Callable

import torch

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
