"""EDM (Karras et al. 2022): preconditioned denoiser, training loss, exact Gaussian denoiser.

The 002 thesis (Ch. 11.2) builds SEDM-G++ on EDM; the formulas below are EDM's Table 1
("Network and preconditioning" and "Training" rows) with sigma_data = 0.5.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from repro.rng import randn


def _per_sample(sigma, x: torch.Tensor) -> torch.Tensor:
    """Sigma as [B, 1, ..., 1] in x's dtype/device from a scalar, [B] or [B, 1, ...]."""
    s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1)
    if s.numel() == 1:
        s = s.expand(x.shape[0])
    return s.reshape(-1, *([1] * (x.ndim - 1)))


class EDMPrecond(nn.Module):
    """D(x; sigma) = c_skip x + c_out F(c_in x, c_noise) around a raw network F.

    `net(x, noise_labels[, class_labels])` is called with class labels only when the net
    declares `label_dim > 0`; otherwise labels are ignored. `augment_labels` (EDM's
    augmentation labels, training only) are passed on as a keyword when given; sampling
    gives none, which DDPM++ treats as all-zero labels. The computation runs in x's dtype
    (the sampler hands float32 in, as EDM does).
    """

    def __init__(self, net: nn.Module, sigma_data: float = 0.5):
        super().__init__()
        self.net = net
        self.sigma_data = float(sigma_data)

    @property
    def label_dim(self) -> int:
        return int(getattr(self.net, "label_dim", 0) or 0)

    def coefficients(self, sigma: torch.Tensor):
        """(c_skip, c_out, c_in, c_noise) of EDM Table 1."""
        sd = self.sigma_data
        c_skip = sd**2 / (sigma**2 + sd**2)
        c_out = sigma * sd / (sigma**2 + sd**2).sqrt()
        c_in = 1 / (sigma**2 + sd**2).sqrt()
        c_noise = sigma.log() / 4
        return c_skip, c_out, c_in, c_noise

    def forward(self, x: torch.Tensor, sigma, class_labels: torch.Tensor | None = None,
                augment_labels: torch.Tensor | None = None):
        s = _per_sample(sigma, x)
        c_skip, c_out, c_in, c_noise = self.coefficients(s)
        args = (c_in * x, c_noise.reshape(-1))
        if class_labels is not None and self.label_dim > 0:
            args = args + (class_labels,)
        kwargs = {} if augment_labels is None else {"augment_labels": augment_labels}
        F_x = self.net(*args, **kwargs)
        return c_skip * x + c_out * F_x.to(x.dtype)


def edm_loss(denoiser: Callable, x0: torch.Tensor, generator: torch.Generator,
             P_mean: float = -1.2, P_std: float = 1.2, sigma_data: float = 0.5,
             class_labels: torch.Tensor | None = None,
             augment_pipe: Callable | None = None) -> torch.Tensor:
    """EDM training loss, averaged over batch and pixels.

    ln sigma ~ N(P_mean, P_std^2); weight lambda(sigma) = (sigma^2 + sd^2) / (sigma sd)^2,
    so that the effective target of F has unit variance at every sigma (EDM Table 1).
    `augment_pipe(images, generator) -> (images, labels)` (repro.diffusion.augment), when
    given, augments the clean images before noising; the denoiser learns to reproduce the
    augmented image and gets the labels as `augment_labels` (EDM training/loss.py, EDMLoss).
    """
    shape = (x0.shape[0],) + (1,) * (x0.ndim - 1)
    rnd = randn(shape, generator, x0.device, x0.dtype)
    sigma = (rnd * P_std + P_mean).exp()
    weight = (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2
    kwargs = {}
    if augment_pipe is not None:
        x0, augment_labels = augment_pipe(x0, generator)
        kwargs["augment_labels"] = augment_labels
    noise = randn(x0.shape, generator, x0.device, x0.dtype)
    args = (x0 + sigma * noise, sigma.reshape(-1))
    if class_labels is not None:
        args = args + (class_labels,)
    D = denoiser(*args, **kwargs)
    return (weight * (D - x0) ** 2).mean()


def gaussian_denoiser(mu, s2: float) -> Callable:
    """Exact E[x0 | x] for data N(mu, s2 I) noised with N(0, sigma^2 I).

    D(x; sigma) = mu + s2 / (s2 + sigma^2) (x - mu); `mu` is a scalar or a tensor that
    broadcasts over one sample. Used by the closed-form tests and benchmarks.
    """

    def D(x: torch.Tensor, sigma, class_labels=None) -> torch.Tensor:
        s = _per_sample(sigma, x)
        m = torch.as_tensor(mu, dtype=x.dtype, device=x.device)
        return m + s2 / (s2 + s**2) * (x - m)

    return D
