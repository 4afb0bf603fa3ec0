"""pix2pixHD's global generator G1 (Wang et al. 2018; 000 thesis Sec. 3.2.2), as the authors'
release (NVIDIA/pix2pixHD, networks.GlobalGenerator) builds it; the thesis trained pix2pixHD at
512x256, where the release uses the global generator alone (no local enhancer).

Reflection-padded 7x7 conv, `n_down` stride-2 3x3 convs doubling the width, `n_blocks` residual
blocks, `n_down` transposed convs halving it, a 7x7 conv to RGB and tanh; instance norm without
affine parameters and ReLU after every conv but the last. The map enters only at the input.
"""
from __future__ import annotations

import torch
from torch import nn


class ResnetBlock(nn.Module):
    """x + [reflect-pad 1, 3x3 conv, norm, ReLU, reflect-pad 1, 3x3 conv, norm](x)."""

    def __init__(self, dim: int, dropout: float = 0.0):
        super().__init__()
        layers = [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), nn.InstanceNorm2d(dim), nn.ReLU(True)]
        if dropout:
            layers.append(nn.Dropout(dropout))
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), nn.InstanceNorm2d(dim)]
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class GlobalGenerator(nn.Module):
    def __init__(self, label_nc: int, *, ngf: int = 64, n_down: int = 4, n_blocks: int = 9,
                 out_channels: int = 3):
        super().__init__()
        self.label_nc, self.n_down = label_nc, n_down
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(label_nc, ngf, 7), nn.InstanceNorm2d(ngf),
                                   nn.ReLU(True)]
        for i in range(n_down):
            mult = 2 ** i
            layers += [nn.Conv2d(ngf * mult, ngf * mult * 2, 3, stride=2, padding=1),
                       nn.InstanceNorm2d(ngf * mult * 2), nn.ReLU(True)]
        mult = 2 ** n_down
        layers += [ResnetBlock(ngf * mult) for _ in range(n_blocks)]
        for i in range(n_down):
            mult = 2 ** (n_down - i)
            layers += [nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, 3, stride=2, padding=1, output_padding=1),
                       nn.InstanceNorm2d(ngf * mult // 2), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_channels, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, segmap: torch.Tensor) -> torch.Tensor:
        h, w = segmap.shape[-2:]
        if h % (2 ** self.n_down) or w % (2 ** self.n_down):
            raise ValueError(f"map size {h}x{w} is not divisible by 2^n_down = {2 ** self.n_down}")
        return self.model(segmap)


def init_pix2pixhd_weights(module: nn.Module, std: float = 0.02) -> None:
    """The release's weights_init: conv weights ~ N(0, 0.02) (biases keep torch's default);
    BatchNorm weights ~ N(1, 0.02), biases 0 (none here: instance norm has no parameters)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            weight = m.parametrizations.weight.original if hasattr(m, "parametrizations") else m.weight
            with torch.no_grad():
                weight.normal_(0.0, std)
        elif isinstance(m, nn.BatchNorm2d) and m.affine:
            with torch.no_grad():
                m.weight.normal_(1.0, std)
                m.bias.zero_()
