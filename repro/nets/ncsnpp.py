"""NCSN++-style noise-conditional score network for the VE SDE (score SDE paper; thesis Sec. 4.3.1, 5.4.3).

A U-Net of BigGAN-style residual blocks (GroupNorm, SiLU, the noise embedding added through a
linear projection, dropout, (x + h) / sqrt(2) skip rescaling), self-attention at chosen
resolutions, skip connections between the down and up paths, conditioned on a Gaussian
Fourier embedding of log sigma, with the output divided by sigma (||score|| ~ 1 / sigma).

Differences from the published NCSN++: the FIR up/down-sampling is replaced by plain
resampling (2x2 average pooling down, nearest-neighbour up), and the progressive input/output
branches are left out. Non-square inputs work (thesis Sec. 5.3.2): height and width are handled
separately everywhere; both must be divisible by 2^(len(ch_mult) - 1).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _groups(ch: int) -> int:
    """GroupNorm groups: min(ch // 4, 32) as in NCSN++, lowered until it divides ch."""
    g = max(1, min(ch // 4, 32))
    while ch % g:
        g -= 1
    return g


def _conv(cin: int, cout: int, k: int = 3, zero: bool = False) -> nn.Conv2d:
    conv = nn.Conv2d(cin, cout, k, padding=k // 2)
    if zero:  # NCSN++ initialises the last conv of each branch at (near) zero (init_scale = 0)
        nn.init.zeros_(conv.weight)
        nn.init.zeros_(conv.bias)
    return conv


class GaussianFourierProjection(nn.Module):
    """[sin(2 pi W log sigma), cos(2 pi W log sigma)] with fixed W ~ N(0, scale^2) (Tancik et al.)."""

    def __init__(self, embedding_size: int, scale: float = 16.0):
        super().__init__()
        self.register_buffer("W", torch.randn(embedding_size) * scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        proj = x[:, None] * self.W[None, :] * (2 * math.pi)
        return torch.cat([proj.sin(), proj.cos()], dim=-1)


class ResnetBlockBigGAN(nn.Module):
    """BigGAN-style residual block with optional 2x down/up-sampling and a noise embedding."""

    def __init__(self, cin: int, cout: int, temb_dim: int, dropout: float = 0.0,
                 up: bool = False, down: bool = False):
        super().__init__()
        self.up, self.down = up, down
        self.norm0 = nn.GroupNorm(_groups(cin), cin, eps=1e-6)
        self.conv0 = _conv(cin, cout)
        self.dense = nn.Linear(temb_dim, cout)
        nn.init.zeros_(self.dense.bias)
        self.norm1 = nn.GroupNorm(_groups(cout), cout, eps=1e-6)
        self.dropout = nn.Dropout(dropout)
        self.conv1 = _conv(cout, cout, zero=True)
        self.skip = _conv(cin, cout, k=1) if (cin != cout or up or down) else None

    def _resample(self, x: torch.Tensor) -> torch.Tensor:
        if self.up:
            return F.interpolate(x, scale_factor=2.0, mode="nearest")
        if self.down:
            return F.avg_pool2d(x, 2)
        return x

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = F.silu(self.norm0(x))
        h = self.conv0(self._resample(h))
        x = self._resample(x)
        h = h + self.dense(F.silu(temb))[:, :, None, None]
        h = self.conv1(self.dropout(F.silu(self.norm1(h))))
        if self.skip is not None:
            x = self.skip(x)
        return (x + h) * (1.0 / math.sqrt(2.0))


class AttnBlock(nn.Module):
    """Single-head self-attention over all H x W positions (H != W allowed), skip-rescaled."""

    def __init__(self, ch: int):
        super().__init__()
        self.norm = nn.GroupNorm(_groups(ch), ch, eps=1e-6)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.out = _conv(ch, ch, k=1, zero=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).transpose(-1, -2).unbind(1)
        a = F.scaled_dot_product_attention(q, k, v)  # [B, HW, C]
        a = a.transpose(-1, -2).reshape(b, c, h, w)
        return (x + self.out(a)) * (1.0 / math.sqrt(2.0))


class NCSNpp(nn.Module):
    """forward(x [B, C, H, W], sigma [B] or scalar) -> score estimate of the same shape as x.

    `image_size` (H, W or one int) only decides at which levels attention sits: level i has
    resolution min(H, W) / 2^i and gets attention if that is in `attn_resolutions`.
    """

    def __init__(self, in_channels: int = 3, nf: int = 128, ch_mult=(1, 2, 2, 2),
                 num_res_blocks: int = 2, attn_resolutions=(16,), dropout: float = 0.0,
                 image_size: int | tuple[int, int] = 32, fourier_scale: float = 16.0,
                 scale_by_sigma: bool = True):
        super().__init__()
        hw = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        self.in_channels, self.nf, self.ch_mult = in_channels, nf, tuple(ch_mult)
        self.num_res_blocks, self.scale_by_sigma = num_res_blocks, scale_by_sigma
        self.attn_resolutions, self.image_size = tuple(attn_resolutions), hw
        n_levels = len(self.ch_mult)
        self.multiple = 2 ** (n_levels - 1)
        temb_dim = 4 * nf
        self.fourier = GaussianFourierProjection(nf, fourier_scale)
        self.temb = nn.Sequential(nn.Linear(2 * nf, temb_dim), nn.SiLU(), nn.Linear(temb_dim, temb_dim))
        block = lambda cin, cout, **kw: ResnetBlockBigGAN(cin, cout, temb_dim, dropout, **kw)
        attn_at = [min(hw) // 2 ** i in self.attn_resolutions for i in range(n_levels)]

        self.conv_in = _conv(in_channels, nf)
        self.down = nn.ModuleList()
        skips, ch = [nf], nf
        for i, mult in enumerate(self.ch_mult):
            level = nn.ModuleList()
            for _ in range(num_res_blocks):
                level.append(block(ch, nf * mult))
                ch = nf * mult
                level.append(AttnBlock(ch) if attn_at[i] else nn.Identity())
                skips.append(ch)
            if i != n_levels - 1:
                level.append(block(ch, ch, down=True))
                skips.append(ch)
            self.down.append(level)
        self.mid = nn.ModuleList([block(ch, ch), AttnBlock(ch), block(ch, ch)])
        self.up = nn.ModuleList()
        for i in reversed(range(n_levels)):
            level = nn.ModuleList()
            for _ in range(num_res_blocks + 1):
                level.append(block(ch + skips.pop(), nf * self.ch_mult[i]))
                ch = nf * self.ch_mult[i]
            level.append(AttnBlock(ch) if attn_at[i] else nn.Identity())
            if i != 0:
                level.append(block(ch, ch, up=True))
            self.up.append(level)
        assert not skips
        self.norm_out = nn.GroupNorm(_groups(ch), ch, eps=1e-6)
        self.conv_out = _conv(ch, in_channels, zero=True)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        b, _, h, w = x.shape
        if h % self.multiple or w % self.multiple:
            raise ValueError(f"NCSNpp with {len(self.ch_mult)} levels needs H and W divisible by "
                             f"{self.multiple}, got {h}x{w}")
        sigma = torch.as_tensor(sigma, device=x.device, dtype=x.dtype)
        sigma = sigma.expand(b) if sigma.ndim == 0 else sigma
        temb = self.temb(self.fourier(sigma.log()))

        hs = [self.conv_in(x)]
        for level in self.down:
            mods = list(level)
            for j in range(self.num_res_blocks):
                hs.append(mods[2 * j + 1](mods[2 * j](hs[-1], temb)))
            if len(mods) > 2 * self.num_res_blocks:
                hs.append(mods[-1](hs[-1], temb))
        hcur = hs[-1]
        hcur = self.mid[2](self.mid[1](self.mid[0](hcur, temb)), temb)
        for level in self.up:
            mods = list(level)
            for j in range(self.num_res_blocks + 1):
                hcur = mods[j](torch.cat([hcur, hs.pop()], dim=1), temb)
            hcur = mods[self.num_res_blocks + 1](hcur)
            if len(mods) > self.num_res_blocks + 2:
                hcur = mods[-1](hcur, temb)
        out = self.conv_out(F.silu(self.norm_out(hcur)))
        if self.scale_by_sigma:
            out = out / sigma[:, None, None, None]
        return out


def ncsnpp_paper_config() -> dict:
    """The thesis's Cityscapes NCSN++ (Sec. 5.4.3): the score SDE paper's ~256x256 settings it
    adopted (nf 128, ch_mult (1, 1, 2, 2, 2, 2, 2), 2 residual blocks per level, attention at
    16, Fourier scale 16, dropout 0) on the full 256x512 images."""
    return dict(in_channels=3, nf=128, ch_mult=(1, 1, 2, 2, 2, 2, 2), num_res_blocks=2,
                attn_resolutions=(16,), dropout=0.0, image_size=(256, 512), fourier_scale=16.0)


def ncsnpp_tiny_config(in_channels: int = 3, image_size=(16, 32)) -> dict:
    """A ~0.2M-parameter net for tests and CPU smoke runs."""
    return dict(in_channels=in_channels, nf=16, ch_mult=(1, 2), num_res_blocks=1,
                attn_resolutions=(8,), dropout=0.0, image_size=image_size)


def count_parameters(config: dict) -> int:
    """Parameter count of NCSNpp(**config), built on the meta device (no memory, fast)."""
    with torch.device("meta"):
        net = NCSNpp(**config)
    return sum(p.numel() for p in net.parameters())
