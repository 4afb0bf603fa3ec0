"""The 001 paper's mask-guided U-Net (Sec. 4.2, Fig. 10): no attention, the one-hot mask *added*.

Sec. 4.2: 3 down blocks [downscale, DoubleConv, DoubleConv], 3 bottleneck DoubleConvs, 3 up blocks
[upscale, DoubleConv, DoubleConv]; DoubleConv = [Conv2d, GroupNorm, GELU, Conv2d, GroupNorm]; the
sinusoidal step embedding enters down1-3 and up1-3 through [SiLU, Linear]; the image goes through
DoubleConv(3 -> 128), the one-hot mask through DoubleConv(19 -> 128), and the two are added, so an
unconditional pass (no mask) has the same shapes. The text fixes only the 128-channel input and
the total, 88,842,371 parameters; the rest below is the layout that gives exactly that count at
base width 128: widths 128/256/512/512 down, 1024 in the bottleneck, bias-free 3x3 convolutions,
GroupNorm(1, C), a residual first DoubleConv per down/up block (gelu(x + f(x))), the up blocks'
second DoubleConv with mid channels = in / 2, max-pool down, bilinear x2 up (align_corners) with
the skip concatenated, a Linear(emb, out) step projection per block, a 1x1 output conv with bias.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

PAPER_PARAMETERS = 88_842_371   # 001 Sec. 4.2: "the total number of parameters was 88,842,371"


def sinusoidal_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Transformer position encoding of the integer step (001 Sec. 4.2 [34]): [sin(t f), cos(t f)],
    f_k = 10000^(-2k/dim), k < dim/2 (sin half first)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(0, half, device=t.device, dtype=torch.float32) * 2 / dim)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1)


class DoubleConv(nn.Module):
    """[Conv3x3, GroupNorm(1), GELU, Conv3x3, GroupNorm(1)]; residual: gelu(x + f(x))."""

    def __init__(self, cin: int, cout: int, mid: int | None = None, residual: bool = False):
        super().__init__()
        mid = mid or cout
        self.residual = residual
        self.body = nn.Sequential(
            nn.Conv2d(cin, mid, 3, padding=1, bias=False), nn.GroupNorm(1, mid), nn.GELU(),
            nn.Conv2d(mid, cout, 3, padding=1, bias=False), nn.GroupNorm(1, cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(x + self.body(x)) if self.residual else self.body(x)


class Down(nn.Module):
    """[max-pool 2, DoubleConv(residual), DoubleConv] + the step embedding projected to `cout`."""

    def __init__(self, cin: int, cout: int, emb_dim: int):
        super().__init__()
        self.convs = nn.Sequential(nn.MaxPool2d(2), DoubleConv(cin, cin, residual=True), DoubleConv(cin, cout))
        self.emb = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, cout))

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        return self.convs(x) + self.emb(emb)[:, :, None, None]


class Up(nn.Module):
    """[bilinear x2, concat skip, DoubleConv(residual), DoubleConv(mid = in/2)] + step embedding."""

    def __init__(self, cin: int, cout: int, emb_dim: int):
        super().__init__()
        self.convs = nn.Sequential(DoubleConv(cin, cin, residual=True), DoubleConv(cin, cout, cin // 2))
        self.emb = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, cout))

    def forward(self, x: torch.Tensor, skip: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        return self.convs(torch.cat([skip, x], dim=1)) + self.emb(emb)[:, :, None, None]


class MaskGuidedUNet(nn.Module):
    """eps_theta(x_t, t, mask). forward(x, t, mask=None, drop=None):
    x [B, C, H, W] (H, W divisible by 8), t [B] integer steps, mask [B', K, H, W] one-hot for the
    first B' <= B rows (the other rows are unconditional: a guided pass [x; x] needs the mask
    branch only once), drop bool [B'] rows whose mask is dropped (classifier-free training)."""

    def __init__(self, in_channels: int = 3, num_classes: int = 19, base: int = 128, emb_dim: int = 256):
        super().__init__()
        c1, c2, c3, c4 = base, 2 * base, 4 * base, 8 * base
        self.emb_dim, self.num_classes = emb_dim, num_classes
        self.inc = DoubleConv(in_channels, c1)
        self.mask_in = DoubleConv(num_classes, c1)
        self.down1, self.down2, self.down3 = Down(c1, c2, emb_dim), Down(c2, c3, emb_dim), Down(c3, c3, emb_dim)
        self.bot = nn.Sequential(DoubleConv(c3, c4), DoubleConv(c4, c4), DoubleConv(c4, c3))
        self.up1, self.up2, self.up3 = Up(2 * c3, c2, emb_dim), Up(2 * c2, c1, emb_dim), Up(2 * c1, c1, emb_dim)
        self.outc = nn.Conv2d(c1, in_channels, 1)

    def forward(self, x: torch.Tensor, t: torch.Tensor, mask: torch.Tensor | None = None,
                drop: torch.Tensor | None = None) -> torch.Tensor:
        emb = sinusoidal_embedding(t, self.emb_dim).to(x.dtype)
        x1 = self.inc(x)
        if mask is not None:
            m = self.mask_in(mask.to(x1.dtype))
            if drop is not None:
                m = m * (~drop.to(m.device)).to(m.dtype)[:, None, None, None]
            n = m.shape[0]
            x1 = torch.cat([x1[:n] + m, x1[n:]]) if n < x1.shape[0] else x1 + m   # 001 Sec. 4.2: added
        x2 = self.down1(x1, emb)
        x3 = self.down2(x2, emb)
        x4 = self.bot(self.down3(x3, emb))
        x = self.up1(x4, x3, emb)
        x = self.up2(x, x2, emb)
        x = self.up3(x, x1, emb)
        return self.outc(x)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def paper_parameter_count(in_channels: int = 3, num_classes: int = 19, base: int = 128, emb_dim: int = 256) -> int:
    """Parameters of MaskGuidedUNet, counted on the meta device (no memory, no init time)."""
    with torch.device("meta"):
        return count_parameters(MaskGuidedUNet(in_channels, num_classes, base, emb_dim))
