"""Adversarial and feature-matching losses of the multi-scale GAN baselines.

`preds` is a multi-scale discriminator's output, [scale][layer] tensors; the last layer of each
scale is its patch decision map. The two releases combine scales differently, and both ways
are kept: SPADE (NVlabs/SPADE models/networks/loss.py GANLoss) averages the per-scale losses,
pix2pixHD (NVIDIA/pix2pixHD models/networks.py GANLoss) sums them.
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

Adversarial = Literal["hinge", "lsgan"]
Reduction = Literal["mean", "sum"]


def hinge_d_real(pred: torch.Tensor) -> torch.Tensor:
    """Hinge loss of D on real patches: E[max(0, 1 - D(x))] (Lim & Ye 2017; SPADE's choice)."""
    return F.relu(1.0 - pred).mean()


def hinge_d_fake(pred: torch.Tensor) -> torch.Tensor:
    """Hinge loss of D on generated patches: E[max(0, 1 + D(G(m)))]."""
    return F.relu(1.0 + pred).mean()


def hinge_g(pred: torch.Tensor) -> torch.Tensor:
    """The generator's hinge loss: -E[D(G(m))]."""
    return -pred.mean()


def lsgan(pred: torch.Tensor, target: float) -> torch.Tensor:
    """Least-squares GAN loss (Mao et al. 2017; pix2pixHD's): E[(D(.) - target)^2], target 1
    for real (and for the generator's own loss), 0 for generated."""
    return ((pred - target) ** 2).mean()


def adversarial_loss(preds: list[list[torch.Tensor]], role: Literal["d_real", "d_fake", "g"],
                     kind: Adversarial = "hinge", reduction: Reduction = "mean") -> torch.Tensor:
    """One adversarial term over all scales (each scale's last output), averaged or summed."""
    if kind == "hinge":
        fn = {"d_real": hinge_d_real, "d_fake": hinge_d_fake, "g": hinge_g}[role]
    elif kind == "lsgan":
        target = 0.0 if role == "d_fake" else 1.0
        fn = lambda p: lsgan(p, target)  # noqa: E731
    else:
        raise ValueError(f"adversarial loss must be hinge or lsgan, got {kind!r}")
    total = sum(fn(scale[-1]) for scale in preds)
    return total / len(preds) if reduction == "mean" else total


def feature_matching_loss(fake: list[list[torch.Tensor]], real: list[list[torch.Tensor]],
                          layer_weight: float = 1.0) -> torch.Tensor:
    """Discriminator feature matching (pix2pixHD Eq. 4): sum over scales k and intermediate
    layers i of layer_weight / num_scales * mean |D_k^(i)(m, G(m)) - D_k^(i)(m, x)|, the real
    features held fixed. SPADE: layer_weight 1; pix2pixHD: 4 / (n_layers_D + 1) in its own count
    (= 4 / the number of intermediate layers)."""
    total = fake[0][0].new_zeros(())
    for f_scale, r_scale in zip(fake, real, strict=True):
        for f, r in zip(f_scale[:-1], r_scale[:-1], strict=True):
            total = total + layer_weight * F.l1_loss(f, r.detach()) / len(fake)
    return total
