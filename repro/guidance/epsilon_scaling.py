"""Epsilon scaling (Ning et al., "Elucidating the exposure bias"; 002 thesis Ch. 10.3, 11.2).

During sampling the predicted noise eps = (x - D)/sigma is divided by b_i = b + k i, where i
is the EDM step index (0 at sigma_max, N - 1 at the last step; both Heun evaluations of a
step use the same i). The thesis (Sec. 11.2) keeps k = 0 and tunes b (best 1.0004 with
w_DG = 1.67, Fig. 12.4).

Placement, when discriminator guidance is also on (they coincide when it is off):
- 'ning':  d = (eps + w g / sigma) / b_i, i.e. the scale applied to the direction the
           sampler would otherwise use, at both Heun evaluations (Ning et al.'s EDM code
           scales d_cur and d_prime).
- 'sedm':  d = eps / b_i + w g / sigma, i.e. SEDM-G++: epsilon scaled first, the
           discriminator term then added unscaled.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import torch

from repro.diffusion.parametrization import eps_from_denoiser

PLACEMENTS = ("ning", "sedm")


@dataclass(frozen=True)
class EpsilonScaling:
    b: float = 1.0
    k: float = 0.0
    placement: str = "ning"

    def __post_init__(self):
        if self.placement not in PLACEMENTS:
            raise ValueError(f"placement must be one of {PLACEMENTS}, got {self.placement!r}")
        if self.b <= 0:
            raise ValueError(f"epsilon scale b must be > 0, got {self.b}")

    def factor(self, step: int) -> float:
        """b_i = b + k i (thesis Sec. 11.2, 'linear schedule'; uniform when k = 0)."""
        b_i = self.b + self.k * step
        if b_i <= 0:
            raise ValueError(f"epsilon scale b + k i = {b_i} <= 0 at step {step}")
        return b_i

    def wrap(self, denoiser: Callable, step: int) -> Callable:
        """D'(x; sigma) = x - sigma * eps / b_i: the scaled denoiser, for samplers that take D.

        `edm_sample` divides eps directly instead (bit-exact when b_i = 1).
        """
        b_i = self.factor(step)

        def scaled(x: torch.Tensor, sigma, *args, **kwargs) -> torch.Tensor:
            D = denoiser(x, sigma, *args, **kwargs)
            if b_i == 1.0:
                return D
            s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
            s = s.reshape(-1, *([1] * (x.ndim - 1))) if s.ndim == 1 else s
            return x - s * eps_from_denoiser(D, x, s) / b_i

        return scaled

    def describe(self) -> dict:
        """The settings, for recording beside a result."""
        return asdict(self)
