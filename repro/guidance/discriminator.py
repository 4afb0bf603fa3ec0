"""Discriminator guidance (Kim et al. 2023; 002 thesis Ch. 9, Eq. 9.3) for EDM samplers.

The correction to the score is c = grad_x log(d / (1 - d)) (thesis Sec. 9.2). EDM's ODE
direction is d_i = (x - D)/sigma = -sigma * score, so adding w * c to the score adds
w * g / sigma to d_i with g = -sigma^2 grad_x log(d / (1 - d)). The discriminator was
trained on the VP SDE (beta_min 0.1, beta_max 20): it sees the VP-scaled input
x / sqrt(1 + sigma^2) and the VP time tau whose marginal noise matches sigma.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from repro.diffusion.schedules import sigma_to_vp_time

_D_CLIP = 1e-5
_LOGIT_CLIP = math.log((1 - _D_CLIP) / _D_CLIP)   # clipping d to [1e-5, 1-1e-5], as a logit


def in_time_window(sigma, time_min: float = 0.01, time_max: float = 1.0, **vp) -> torch.Tensor:
    """True where the VP time of sigma lies in [time_min, time_max] (DG's window)."""
    tau = sigma_to_vp_time(sigma, **vp)
    return (tau >= time_min) & (tau <= time_max)


def discriminator_log_ratio(out: torch.Tensor, output: str = "logit") -> torch.Tensor:
    """log(d / (1 - d)) with d clipped to [1e-5, 1 - 1e-5]; `out` is a logit or d itself."""
    if output == "logit":
        return out.clamp(-_LOGIT_CLIP, _LOGIT_CLIP)   # same as clipping sigmoid(out)
    if output == "prob":
        d = out.clamp(_D_CLIP, 1 - _D_CLIP)
        return torch.log(d / (1 - d))
    raise ValueError(f"output must be 'logit' or 'prob', got {output!r}")


def discriminator_correction(discriminator: Callable, x: torch.Tensor, sigma,
                             time_min: float = 0.01, time_max: float = 1.0, *,
                             beta_min: float = 0.1, beta_max: float = 20.0,
                             output: str = "logit",
                             class_labels: torch.Tensor | None = None) -> torch.Tensor:
    """g = -sigma^2 grad_x log(d/(1-d)) at (x / sqrt(1 + sigma^2), tau(sigma)); 0 outside the window.

    `discriminator(x_vp, tau[, class_labels])` returns a logit per sample (or d if
    output='prob'). One forward and one backward pass, in float32; g has x's dtype.
    """
    B = x.shape[0]
    s = torch.as_tensor(sigma, dtype=torch.float64, device=x.device).reshape(-1).expand(B)
    inside = in_time_window(s, time_min, time_max, beta_min=beta_min, beta_max=beta_max)
    if not bool(inside.any()):
        return torch.zeros_like(x)
    tau = sigma_to_vp_time(s, beta_min, beta_max).float()
    col = (B,) + (1,) * (x.ndim - 1)
    mean = (1 / (1 + s**2).sqrt()).float().reshape(col)   # VP signal scale sqrt(alpha_bar)
    with torch.enable_grad():
        x_ = x.detach().float().requires_grad_(True)
        args = (mean * x_, tau) if class_labels is None else (mean * x_, tau, class_labels)
        log_ratio = discriminator_log_ratio(discriminator(*args).reshape(B), output)
        (grad,) = torch.autograd.grad(log_ratio.sum(), x_)
    g = -(s.float() ** 2).reshape(col) * grad
    g = torch.where(inside.reshape(col), g, torch.zeros_like(g))
    return g.to(x.dtype)


class DiscriminatorGuidance:
    """`guidance` callable for `edm_sample`: adds w * g / sigma to the ODE direction.

    w_1st applies to the Euler evaluation, w_2nd to Heun's correction (Kim et al. and the
    thesis use w_2nd = 0, halving discriminator calls). Returns None (no discriminator call)
    when the weight is 0 or sigma's VP time is outside [time_min, time_max].
    """

    def __init__(self, discriminator: Callable, w_1st: float = 1.0, w_2nd: float = 0.0,
                 time_min: float = 0.01, time_max: float = 1.0, *, beta_min: float = 0.1,
                 beta_max: float = 20.0, output: str = "logit",
                 class_labels: torch.Tensor | None = None):
        self.discriminator = discriminator
        self.w_1st, self.w_2nd = float(w_1st), float(w_2nd)
        self.time_min, self.time_max = float(time_min), float(time_max)
        self.vp = dict(beta_min=beta_min, beta_max=beta_max)
        self.output = output
        self.class_labels = class_labels

    def weight(self, stage: str) -> float:
        return self.w_1st if stage == "euler" else self.w_2nd

    def __call__(self, x: torch.Tensor, sigma, denoised=None, *, stage: str = "euler",
                 step: int = 0) -> torch.Tensor | None:
        w = self.weight(stage)
        if w == 0.0 or not bool(in_time_window(sigma, self.time_min, self.time_max, **self.vp).any()):
            return None
        g = discriminator_correction(self.discriminator, x, sigma, self.time_min, self.time_max,
                                     output=self.output, class_labels=self.class_labels, **self.vp)
        s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
        s = s.reshape(-1, *([1] * (x.ndim - 1))) if s.ndim == 1 else s
        return w * g / s                                   # 002 thesis Eq. 9.3 in ODE form
