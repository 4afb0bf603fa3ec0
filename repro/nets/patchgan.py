"""Multi-scale PatchGAN discriminator with intermediate features (pix2pixHD, Wang et al. 2018;
000 thesis Sec. 3.2.2, Eq. 3.4; SPADE reuses it with spectral norm).

Each scale is an N-layer PatchGAN on the concatenation [one-hot map, image]; scale k+1 sees the
input average-pooled by 2 (3x3 kernel, stride 2, padding 1, padding not counted). Every scale
returns the outputs of all its layers: the last one is the patch decision map, the others feed
the feature-matching loss.

Layer count: `n_layers` follows SPADE's convention (conv blocks before the final 1-channel conv,
the last of them with stride 1): SPADE's default n_layers_D = 4 is pix2pixHD's n_layers_D = 3.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


class NLayerDiscriminator(nn.Module):
    """4x4 convs, padding 2: conv(ndf, stride 2) + LReLU(0.2), then n_layers - 1 blocks of
    conv (channels doubling up to 512; stride 2, the last stride 1) + norm + LReLU, then a
    stride-1 conv to one channel."""

    def __init__(self, in_channels: int, ndf: int = 64, n_layers: int = 4, norm: str = "instance",
                 spectral: bool = True):
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"n_layers must be >= 1, got {n_layers}")
        kw, pad = 4, int(math.ceil((4 - 1) / 2))
        sn = spectral_norm if spectral else (lambda m: m)
        layers = [nn.Sequential(nn.Conv2d(in_channels, ndf, kw, stride=2, padding=pad), nn.LeakyReLU(0.2))]
        nf = ndf
        for n in range(1, n_layers):
            prev, nf = nf, min(nf * 2, 512)
            stride = 1 if n == n_layers - 1 else 2
            block = [sn(nn.Conv2d(prev, nf, kw, stride=stride, padding=pad))]
            if norm == "instance":
                block.append(nn.InstanceNorm2d(nf, affine=False))
            elif norm != "none":
                raise ValueError(f"norm must be instance or none, got {norm!r}")
            layers.append(nn.Sequential(*block, nn.LeakyReLU(0.2)))
        layers.append(nn.Sequential(nn.Conv2d(nf, 1, kw, stride=1, padding=pad)))
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for layer in self.layers:
            x = layer(x)
            outs.append(x)
        return outs


class MultiscaleDiscriminator(nn.Module):
    """`num_d` PatchGANs on successively halved inputs; forward gives [scale][layer] outputs."""

    def __init__(self, in_channels: int, ndf: int = 64, n_layers: int = 4, num_d: int = 2,
                 norm: str = "instance", spectral: bool = True):
        super().__init__()
        self.n_layers = n_layers
        self.scales = nn.ModuleList(NLayerDiscriminator(in_channels, ndf, n_layers, norm, spectral)
                                    for _ in range(num_d))

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        out = []
        for k, d in enumerate(self.scales):
            if k:
                x = F.avg_pool2d(x, kernel_size=3, stride=2, padding=1, count_include_pad=False)
            out.append(d(x))
        return out


def discriminate(d: nn.Module, segmap: torch.Tensor, images: torch.Tensor) -> list[list[torch.Tensor]]:
    """D's outputs for (map, image) pairs: the input is their channel concatenation."""
    return d(torch.cat([segmap, images], dim=1))
