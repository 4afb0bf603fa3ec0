"""A noise-conditional Wide Residual Network classifier p_theta(y | x(t), sigma) (000 thesis Sec. 5.1).

The thesis guides class-conditional sampling with "a noise conditional Wide Residual Network
(WideResNet) [48]" (Zagoruyko & Komodakis 2016), taken over from the score SDE release it
ported (score_sde's `wideresnet_noise_conditional`, the classifier of Song et al.'s
class-conditional CIFAR-10, App. I.1). This is our own PyTorch network after that idea:

- WRN-d-k: an initial 3x3 conv, three groups of n = (d - 4) / 6 pre-activation residual
  blocks with base*k, 2*base*k, 4*base*k channels (strides 1, 2, 2), norm-ReLU, global
  average pooling, a linear layer to the class logits. Shortcuts are 1x1 convs where the
  shape changes (the WRN paper's choice);
- the noise level enters as score_sde does it: Gaussian Fourier features of log sigma,
  two dense layers, and a per-block channel bias after the first conv. The score model
  (NCSN++) embeds log sigma the same way, so guide and score read the same noise level;
- every input is standardised per image (zero mean, unit std, std floored at 1/sqrt(D)):
  VE inputs range from sigma_min = 0.01 to sigma_max noise, and the network should see one
  scale (score_sde does the same; the thesis's segmenter min-max normalises, Eq. 5.3).
  The standardisation is part of the network, so grad_x log p(y | x) goes through it.
GroupNorm instead of BatchNorm (as score_sde): a sample's logits depend on that sample only,
so one backward pass of the summed log-probabilities gives every sample's gradient.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from repro.nets.ncsnpp import GaussianFourierProjection


def wrn_blocks_per_group(depth: int) -> int:
    """n of WRN-d-k: depth = 6 n + 4 (two convs per block, three groups, + first conv and head)."""
    if depth < 10 or (depth - 4) % 6:
        raise ValueError(f"WideResNet depth must be 6n + 4 with n >= 1 (10, 16, 22, 28, ...), got {depth}")
    return (depth - 4) // 6


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(32, max(1, channels // 4)), channels)


def standardize_per_image(x: torch.Tensor) -> torch.Tensor:
    """(x - mean) / max(std, 1/sqrt(D)) over each image's D values."""
    d = x[0].numel()
    flat = x.flatten(1)
    mean = flat.mean(1).view(-1, *([1] * (x.dim() - 1)))
    std = flat.std(1, unbiased=False).clamp_min(1.0 / math.sqrt(d)).view(-1, *([1] * (x.dim() - 1)))
    return (x - mean) / std


class WideBlock(nn.Module):
    """Pre-activation residual block: norm-ReLU-conv3x3, + noise bias, norm-ReLU-dropout-conv3x3."""

    def __init__(self, cin: int, cout: int, stride: int, temb_dim: int, dropout: float):
        super().__init__()
        self.norm1, self.conv1 = _norm(cin), nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.temb = nn.Linear(temb_dim, cout)
        self.norm2, self.conv2 = _norm(cout), nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.shortcut = (nn.Conv2d(cin, cout, 1, stride, bias=False) if stride != 1 or cin != cout
                         else nn.Identity())

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.relu(self.norm1(x)))
        h = h + self.temb(F.silu(temb))[:, :, None, None]
        h = self.conv2(self.dropout(F.relu(self.norm2(h))))
        return h + self.shortcut(x)


class NoiseConditionalWideResNet(nn.Module):
    """WRN-depth-widen_factor on images x [N, C, H, W] at noise levels sigma [N] (or a scalar):
    forward(x, sigma) -> class logits [N, num_classes]."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, depth: int = 28, widen_factor: int = 10,
                 base_channels: int = 16, embedding_size: int = 128, fourier_scale: float = 16.0,
                 dropout: float = 0.0):
        super().__init__()
        n = wrn_blocks_per_group(depth)
        widths = [base_channels * widen_factor * m for m in (1, 2, 4)]
        temb_dim = 4 * embedding_size
        self.fourier = GaussianFourierProjection(embedding_size, fourier_scale)
        self.temb = nn.Sequential(nn.Linear(2 * embedding_size, temb_dim), nn.SiLU(), nn.Linear(temb_dim, temb_dim))
        self.stem = nn.Conv2d(in_channels, base_channels, 3, 1, 1, bias=False)
        blocks, cin = [], base_channels
        for g, cout in enumerate(widths):
            for i in range(n):
                blocks.append(WideBlock(cin, cout, 2 if (g > 0 and i == 0) else 1, temb_dim, dropout))
                cin = cout
        self.blocks = nn.ModuleList(blocks)
        self.head_norm = _norm(cin)
        self.head = nn.Linear(cin, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        sigma = torch.as_tensor(sigma, device=x.device, dtype=x.dtype)
        if sigma.ndim == 0:
            sigma = sigma.expand(x.shape[0])
        temb = self.temb(self.fourier(torch.log(sigma)))
        h = self.stem(standardize_per_image(x))
        for block in self.blocks:
            h = block(h, temb)
        h = F.relu(self.head_norm(h)).mean(dim=(2, 3))
        return self.head(h)
