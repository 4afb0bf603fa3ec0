"""What a sampler's discretisation alone does, with no network: Gaussian data N(0, s^2 I) have an
exact score at every t (repro.diffusion.sde.gaussian_score_fn), so the spread of the samples says
how far the discretised chain is from the true reverse process at a given number of steps.

Used to explain reduced-step smoke runs (the slides' Tab. 1 at 1000 steps vs 50 on a CPU): a
sampler whose exact-score samples are too wide leaves visible noise, one whose samples are too
narrow over-smooths, whatever network it is given.
"""
from __future__ import annotations

import torch

from repro.diffusion.sde import SDE, gaussian_score_fn
from repro.sampling.predictor_corrector import predictor_corrector_sample


def exact_score_std_ratio(sde: SDE, *, steps: int, predictor: str, corrector: str = "none", snr: float = 0.16,
                          data_std: float = 0.5, dim: int = 256, n: int = 1000, seed: int = 0,
                          discretisation: str = "grid") -> float:
    """std of the samples / data_std for N(0, data_std^2 I) data sampled with the exact score
    (1.0: the discretisation is exact in spread; the mean is 0 by symmetry)."""
    g = torch.Generator().manual_seed(seed)
    x = sde.prior_sample((n, dim), g).double()
    res = predictor_corrector_sample(gaussian_score_fn(sde, 0.0, data_std), sde, x, steps=steps, generator=g,
                                     predictor=predictor, corrector=corrector, snr=snr, denoise=True,
                                     discretisation=discretisation)
    return float(res.samples.std()) / data_std
