"""Noise-conditional U-Net segmenter (thesis Sec. 5.2).

The classical U-Net of Ronneberger et al. (double 3x3 conv blocks, max-pool down,
transposed-conv up, skip concatenation). The noise level (log sigma(t) or t, the
caller's choice) enters as one extra input channel: thesis Sec. 5.2.2 expands the
per-image noise of size N to N x 1 x H x W and concatenates it with the image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

NORMS = ("batch", "group", "none")
UP_MODES = ("transpose", "bilinear")


def _group_count(channels: int, max_groups: int = 32, min_per_group: int = 4) -> int:
    """Largest group count <= max_groups dividing channels with >= min_per_group channels each."""
    for groups in range(min(max_groups, channels), 0, -1):
        if channels % groups == 0 and channels // groups >= min_per_group:
            return groups
    return 1


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(_group_count(channels), channels)
    return nn.Identity()


class DoubleConv(nn.Sequential):
    """(3x3 conv -> norm -> ReLU) twice; padding keeps the spatial size."""

    def __init__(self, in_channels: int, out_channels: int, norm: str):
        bias = norm == "none"  # a norm layer after the conv makes its bias redundant
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=bias),
            _norm(norm, out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=bias),
            _norm(norm, out_channels),
            nn.ReLU(inplace=True),
        )


class Up(nn.Module):
    """Upsample by 2, concatenate the skip, double conv."""

    def __init__(self, in_channels: int, out_channels: int, norm: str, up_mode: str):
        super().__init__()
        if up_mode == "transpose":
            self.up = nn.ConvTranspose2d(in_channels, in_channels // 2, 2, stride=2)
        else:
            self.up = nn.Sequential(
                nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                nn.Conv2d(in_channels, in_channels // 2, 1),
            )
        self.conv = DoubleConv(in_channels // 2 + out_channels, out_channels, norm)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([skip, self.up(x)], dim=1))


class NoiseConditionalUNet(nn.Module):
    """U-Net segmenter p_theta(x(t), level) with the noise level as an extra input channel.

    forward(x [N,C,H,W], noise_level [N] or scalar) -> logits [N,num_classes,H,W].
    Any H, W works: the input is padded to a multiple of 2**depth and the output cropped.
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 20,
        base_channels: int = 64,
        depth: int = 4,
        norm: str = "group",
        noise_channel: bool = True,
        up_mode: str = "transpose",
    ):
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        if up_mode not in UP_MODES:
            raise ValueError(f"up_mode must be one of {UP_MODES}, got {up_mode!r}")
        if depth < 1 or base_channels < 1 or num_classes < 1 or in_channels < 1:
            raise ValueError("in_channels, num_classes, base_channels and depth must be >= 1")
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.depth = depth
        self.noise_channel = noise_channel

        widths = [base_channels * 2**i for i in range(depth + 1)]
        self.inc = DoubleConv(in_channels + int(noise_channel), widths[0], norm)
        self.downs = nn.ModuleList(
            nn.Sequential(nn.MaxPool2d(2), DoubleConv(widths[i], widths[i + 1], norm))
            for i in range(depth)
        )
        self.ups = nn.ModuleList(
            Up(widths[i + 1], widths[i], norm, up_mode) for i in reversed(range(depth))
        )
        self.head = nn.Conv2d(widths[0], num_classes, 1)

    def _noise_plane(self, x: torch.Tensor, noise_level) -> torch.Tensor:
        if noise_level is None:
            raise ValueError("noise_level is required when noise_channel=True")
        level = torch.as_tensor(noise_level, dtype=x.dtype, device=x.device).reshape(-1)
        if level.numel() == 1:
            level = level.expand(x.shape[0])
        if level.shape[0] != x.shape[0]:
            raise ValueError(f"noise_level has {level.shape[0]} entries for a batch of {x.shape[0]}")
        # thesis Sec. 5.2.2: N -> N x 1 x H x W, concatenated as a (C+1)-th channel
        return level.view(-1, 1, 1, 1).expand(-1, 1, x.shape[2], x.shape[3])

    def forward(self, x: torch.Tensor, noise_level=None) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected x of shape [N,{self.in_channels},H,W], got {tuple(x.shape)}")
        if self.noise_channel:
            x = torch.cat([x, self._noise_plane(x, noise_level)], dim=1)
        height, width = x.shape[-2:]
        multiple = 2**self.depth
        pad_h = (-height) % multiple
        pad_w = (-width) % multiple
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")

        skips = [self.inc(x)]
        for down in self.downs:
            skips.append(down(skips[-1]))
        h = skips.pop()
        for up in self.ups:
            h = up(h, skips.pop())
        return self.head(h)[..., :height, :width]


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters of a model."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)

