"""Time-conditioned discriminator d(x, tau) for discriminator guidance (Kim et al. 2023).

As in Kim et al. and the 002 thesis (Sec. 11.2): a frozen, pretrained feature encoder (for
CIFAR-10, ADM's noise-conditional classifier encoder, repro.nets.adm) followed by a trainable
head that sees the features and the VP time tau and outputs a logit. The head is all that
trains. The small encoder and FiLM head below are the embedded profiles' stand-ins.
Inputs are VP-scaled noisy images x_vp = (x0 + sigma n) / sqrt(1 + sigma^2), tau in (0, 1]; the
training loss is repro.diffusion.losses.discriminator_bce_loss.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from repro.nets.ddpmpp import PositionalEmbedding


def _gn(c: int) -> nn.GroupNorm:
    return nn.GroupNorm(max(1, min(32, c // 4)), c)


class SmallEncoder(nn.Module):
    """A small CNN feature extractor (stride 4) standing in for ADM's encoder on embedded data."""

    def __init__(self, in_channels: int = 3, channels: int = 32):
        super().__init__()
        self.out_channels = channels * 2
        self.layers = nn.Sequential(
            nn.Conv2d(in_channels, channels, 3, padding=1), _gn(channels), nn.SiLU(),
            nn.Conv2d(channels, channels, 3, stride=2, padding=1), _gn(channels), nn.SiLU(),
            nn.Conv2d(channels, self.out_channels, 3, stride=2, padding=1), _gn(self.out_channels),
            nn.SiLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)

    @staticmethod
    def out_size(resolution: int) -> int:
        """Side of the feature map: two stride-2 convolutions, ceil(ceil(n / 2) / 2) = ceil(n / 4)."""
        return (resolution + 3) // 4


class DiscriminatorHead(nn.Module):
    """Features + tau embedding -> logit: two FiLM-conditioned conv layers, mean pool, linear."""

    def __init__(self, in_channels: int, channels: int = 64, emb_channels: int = 64):
        super().__init__()
        self.embed = PositionalEmbedding(emb_channels)
        self.mlp = nn.Sequential(nn.Linear(emb_channels, emb_channels), nn.SiLU(),
                                 nn.Linear(emb_channels, 4 * channels))
        self.conv0 = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.norm0 = _gn(channels)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm1 = _gn(channels)
        self.out = nn.Linear(channels, 1)

    def forward(self, features: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        # ADM embeds integer timesteps; tau * 1000 puts VP time on the same scale.
        s0, b0, s1, b1 = self.mlp(self.embed(tau * 1000)).chunk(4, dim=1)
        h = F.silu(self.norm0(self.conv0(features)) * (1 + s0[..., None, None]) + b0[..., None, None])
        h = F.silu(self.norm1(self.conv1(h)) * (1 + s1[..., None, None]) + b1[..., None, None])
        return self.out(h.mean(dim=(2, 3))).squeeze(1)


class TimeConditionedDiscriminator(nn.Module):
    """d(x_vp, tau) as a logit. `encoder` is frozen (no grads, kept in eval mode); gradients
    with respect to the input still flow through it, which discriminator guidance needs."""

    def __init__(self, encoder: nn.Module, head: nn.Module, encoder_takes_time: bool = False):
        super().__init__()
        self.encoder = encoder.eval().requires_grad_(False)
        self.head = head
        self.encoder_takes_time = encoder_takes_time

    def train(self, mode: bool = True):
        super().train(mode)
        self.encoder.eval()
        return self

    def forward(self, x: torch.Tensor, tau: torch.Tensor, class_labels=None) -> torch.Tensor:
        tau = torch.as_tensor(tau, dtype=x.dtype, device=x.device).reshape(-1).expand(x.shape[0])
        feats = self.encoder(x, tau) if self.encoder_takes_time else self.encoder(x)
        return self.head(feats, tau)


def small_discriminator(in_channels: int = 3, channels: int = 32) -> TimeConditionedDiscriminator:
    """Encoder + head sized for the embedded profiles."""
    enc = SmallEncoder(in_channels, channels)
    return TimeConditionedDiscriminator(enc, DiscriminatorHead(enc.out_channels, 2 * channels))
