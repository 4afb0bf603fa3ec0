"""Exposure bias as the L2 norm of the predicted epsilon (002 thesis Sec. 11.1, Fig. 11.1/11.2).

Sampling side: the norm ||(x_hat - D(x_hat; sigma_i))/sigma_i||_2 of the network's own eps at
every denoiser evaluation of the sampler (EDM, or EDM-G++ with guidance), averaged over
samples. Training side: real images noised to the same sigma_i, eps predicted by the same
network, same norm. Exposure bias shows as the sampling norm exceeding the training norm.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from repro.rng import randn
from repro.sampling.edm import edm_sample


@dataclass
class ExposureBiasCurves:
    sigmas: list[float]     # noise level of each evaluation, in sampling order
    steps: list[int]        # EDM step index i of each evaluation
    stages: list[str]       # 'euler' or 'heun' (Heun's correction evaluation)
    sampling: list[float]   # mean ||eps|| along the sampler's own trajectory
    training: list[float]   # mean ||eps|| on real data noised to the same sigma

    def to_dict(self) -> dict:
        return dict(sigmas=self.sigmas, steps=self.steps, stages=self.stages,
                    sampling=self.sampling, training=self.training)


def sampling_eps_norms(denoiser, latents: torch.Tensor, *, steps: int, solver: str = "heun",
                       **sample_kwargs) -> tuple[list[float], list[int], list[str], list[float]]:
    """(sigmas, steps, stages, mean eps norms) at every evaluation of `edm_sample`."""
    res = edm_sample(denoiser, latents, steps=steps, solver=solver, record=True, **sample_kwargs)
    recs = res.records
    return ([r.sigma for r in recs], [r.step for r in recs], [r.stage for r in recs],
            [r.eps_norm.mean().item() for r in recs])


@torch.no_grad()
def training_eps_norms(denoiser, x0: torch.Tensor, sigmas, generator: torch.Generator, *,
                       batch_size: int = 256, net_dtype: torch.dtype | None = torch.float32,
                       class_labels: torch.Tensor | None = None) -> list[float]:
    """Mean ||(x - D(x; sigma))/sigma||_2 with x = x0 + sigma n, for each sigma in `sigmas`."""
    out = []
    for sigma in sigmas:
        total, count = 0.0, 0
        for start in range(0, x0.shape[0], batch_size):
            xb = x0[start:start + batch_size].to(torch.float64)
            n = randn(xb.shape, generator, xb.device, torch.float64)
            x = xb + sigma * n
            x_in = x if net_dtype is None else x.to(net_dtype)
            s_in = torch.full((xb.shape[0],), float(sigma), dtype=x_in.dtype, device=x.device)
            args = (x_in, s_in) if class_labels is None else (
                x_in, s_in, class_labels[start:start + batch_size])
            eps = (x - denoiser(*args).to(torch.float64)) / sigma
            total += eps.flatten(1).norm(dim=1).sum().item()
            count += xb.shape[0]
        out.append(total / count)
    return out


def exposure_bias_curves(denoiser, latents: torch.Tensor, real: torch.Tensor, *, steps: int,
                         solver: str = "heun", generator: torch.Generator,
                         batch_size: int = 256, **sample_kwargs) -> ExposureBiasCurves:
    """Both curves at the evaluations of one sampling run (thesis: Euler 21 steps, Heun 35 NFE).

    `sample_kwargs` go to `edm_sample` (guidance=..., eps_scale=..., S_churn=...).
    """
    with torch.no_grad():
        sigmas, idx, stages, samp = sampling_eps_norms(denoiser, latents, steps=steps, solver=solver,
                                                       generator=generator, **sample_kwargs)
    train = training_eps_norms(denoiser, real, sigmas, generator, batch_size=batch_size,
                               net_dtype=sample_kwargs.get("net_dtype", torch.float32))
    return ExposureBiasCurves(sigmas, idx, stages, samp, train)
