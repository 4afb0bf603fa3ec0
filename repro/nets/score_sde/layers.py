"""Layers of the score SDE release's NCSN++ / DDPM++ (score_sde_pytorch models/layers.py,
layerspp.py), with its module and parameter names (GroupNorm_0, Conv_0, Dense_0, NIN_0, ...),
registered in its order, so that released state dicts load with strict keys and EMA shadow
parameters line up with `parameters()`.

Initialisation as the release: DDPM's variance scaling (fan_avg, uniform; scale 0 -> 1e-10).
Skip connections are divided by sqrt(2) with `skip_rescale` (score SDE paper, App. H).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from repro.nets.score_sde import fir as firlib


def default_init(scale: float = 1.0):
    """DDPM's initialiser: U(-sqrt(3 v), sqrt(3 v)) with v = scale / ((fan_in + fan_out) / 2)."""
    scale = 1e-10 if scale == 0 else scale

    def init(shape, dtype=torch.float32, device=None):
        shape = tuple(shape)
        receptive = math.prod(shape) / shape[1] / shape[0]
        fan_in, fan_out = shape[1] * receptive, shape[0] * receptive
        variance = scale / ((fan_in + fan_out) / 2)
        return (torch.rand(*shape, dtype=dtype, device=device) * 2.0 - 1.0) * math.sqrt(3 * variance)

    return init


def conv1x1(in_ch: int, out_ch: int, stride: int = 1, bias: bool = True, init_scale: float = 1.0,
            padding: int = 0) -> nn.Conv2d:
    conv = nn.Conv2d(in_ch, out_ch, kernel_size=1, stride=stride, padding=padding, bias=bias)
    conv.weight.data = default_init(init_scale)(conv.weight.shape, device=conv.weight.device)
    nn.init.zeros_(conv.bias)
    return conv


def conv3x3(in_ch: int, out_ch: int, stride: int = 1, bias: bool = True, init_scale: float = 1.0,
            padding: int = 1) -> nn.Conv2d:
    conv = nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=stride, padding=padding, bias=bias)
    conv.weight.data = default_init(init_scale)(conv.weight.shape, device=conv.weight.device)
    nn.init.zeros_(conv.bias)
    return conv


def dense(in_dim: int, out_dim: int) -> nn.Linear:
    lin = nn.Linear(in_dim, out_dim)
    lin.weight.data = default_init()(lin.weight.shape, device=lin.weight.device)
    nn.init.zeros_(lin.bias)
    return lin


def group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=min(channels // 4, 32), num_channels=channels, eps=1e-6)


def timestep_embedding(timesteps: torch.Tensor, dim: int, max_positions: int = 10000) -> torch.Tensor:
    """DDPM's sinusoidal embedding of (continuous) timesteps: [sin(t w_k), cos(t w_k)]."""
    half = dim // 2
    freq = torch.exp(torch.arange(half, dtype=torch.float32, device=timesteps.device)
                     * -(math.log(max_positions) / (half - 1)))
    emb = timesteps.float()[:, None] * freq[None, :]
    emb = torch.cat([torch.sin(emb), torch.cos(emb)], dim=1)
    return F.pad(emb, (0, 1)) if dim % 2 else emb


class GaussianFourierProjection(nn.Module):
    """[sin(2 pi W x), cos(2 pi W x)] with fixed W ~ N(0, scale^2) (W is a non-trained parameter)."""

    def __init__(self, embedding_size: int = 256, scale: float = 1.0):
        super().__init__()
        self.W = nn.Parameter(torch.randn(embedding_size) * scale, requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        proj = x[:, None] * self.W[None, :] * 2 * math.pi
        return torch.cat([torch.sin(proj), torch.cos(proj)], dim=-1)


class NIN(nn.Module):
    """A 1x1 convolution stored as W [in, out] and b (network-in-network)."""

    def __init__(self, in_dim: int, num_units: int, init_scale: float = 0.1):
        super().__init__()
        self.W = nn.Parameter(default_init(scale=init_scale)((in_dim, num_units)))
        self.b = nn.Parameter(torch.zeros(num_units))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (torch.einsum("bhwc,cd->bhwd", x.permute(0, 2, 3, 1), self.W) + self.b).permute(0, 3, 1, 2)


def _skip(x: torch.Tensor, h: torch.Tensor, rescale: bool) -> torch.Tensor:
    return (x + h) / math.sqrt(2.0) if rescale else x + h


class Combine(nn.Module):
    """Combine a pyramid input with h (progressive_input='input_skip'): 1x1 conv, then cat or sum."""

    def __init__(self, dim1: int, dim2: int, method: str = "cat"):
        super().__init__()
        self.Conv_0 = conv1x1(dim1, dim2)
        self.method = method

    def forward(self, x, y):
        h = self.Conv_0(x)
        if self.method == "cat":
            return torch.cat([h, y], dim=1)
        if self.method == "sum":
            return h + y
        raise ValueError(f"combine method {self.method!r} unknown")


class AttnBlockpp(nn.Module):
    """Spatial self-attention over all H x W positions (DDPM's block, softmax over keys)."""

    def __init__(self, channels: int, skip_rescale: bool = False, init_scale: float = 0.0):
        super().__init__()
        self.GroupNorm_0 = group_norm(channels)
        self.NIN_0 = NIN(channels, channels)
        self.NIN_1 = NIN(channels, channels)
        self.NIN_2 = NIN(channels, channels)
        self.NIN_3 = NIN(channels, channels, init_scale=init_scale)
        self.skip_rescale = skip_rescale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, hh, ww = x.shape
        h = self.GroupNorm_0(x)
        q, k, v = self.NIN_0(h), self.NIN_1(h), self.NIN_2(h)
        w = torch.einsum("bchw,bcij->bhwij", q, k) * (int(c) ** (-0.5))
        w = F.softmax(w.reshape(b, hh, ww, hh * ww), dim=-1).reshape(b, hh, ww, hh, ww)
        h = self.NIN_3(torch.einsum("bhwij,bcij->bchw", w, v))
        return _skip(x, h, self.skip_rescale)


class Upsample(nn.Module):
    def __init__(self, in_ch=None, out_ch=None, with_conv=False, fir=False, fir_kernel=(1, 3, 3, 1)):
        super().__init__()
        out_ch = out_ch if out_ch else in_ch
        if with_conv:
            if fir:
                self.Conv2d_0 = firlib.FIRConv2d(in_ch, out_ch, kernel=3, up=True, resample_kernel=fir_kernel,
                                                 kernel_init=default_init())
            else:
                self.Conv_0 = conv3x3(in_ch, out_ch)
        self.fir, self.with_conv, self.fir_kernel, self.out_ch = fir, with_conv, tuple(fir_kernel), out_ch

    def forward(self, x):
        _, _, h, w = x.shape
        if not self.fir:
            x = F.interpolate(x, (h * 2, w * 2), mode="nearest")
            return self.Conv_0(x) if self.with_conv else x
        return self.Conv2d_0(x) if self.with_conv else firlib.upsample_2d(x, self.fir_kernel, factor=2)


class Downsample(nn.Module):
    def __init__(self, in_ch=None, out_ch=None, with_conv=False, fir=False, fir_kernel=(1, 3, 3, 1)):
        super().__init__()
        out_ch = out_ch if out_ch else in_ch
        if with_conv:
            if fir:
                self.Conv2d_0 = firlib.FIRConv2d(in_ch, out_ch, kernel=3, down=True, resample_kernel=fir_kernel,
                                                 kernel_init=default_init())
            else:
                self.Conv_0 = conv3x3(in_ch, out_ch, stride=2, padding=0)
        self.fir, self.with_conv, self.fir_kernel, self.out_ch = fir, with_conv, tuple(fir_kernel), out_ch

    def forward(self, x):
        if not self.fir:
            if self.with_conv:
                return self.Conv_0(F.pad(x, (0, 1, 0, 1)))
            return F.avg_pool2d(x, 2, stride=2)
        return self.Conv2d_0(x) if self.with_conv else firlib.downsample_2d(x, self.fir_kernel, factor=2)


class ResnetBlockDDPMpp(nn.Module):
    """DDPM's residual block (resblock_type='ddpm')."""

    def __init__(self, act, in_ch, out_ch=None, temb_dim=None, conv_shortcut=False, dropout=0.1,
                 skip_rescale=False, init_scale=0.0):
        super().__init__()
        out_ch = out_ch if out_ch else in_ch
        self.GroupNorm_0 = group_norm(in_ch)
        self.Conv_0 = conv3x3(in_ch, out_ch)
        if temb_dim is not None:
            self.Dense_0 = dense(temb_dim, out_ch)
        self.GroupNorm_1 = group_norm(out_ch)
        self.Dropout_0 = nn.Dropout(dropout)
        self.Conv_1 = conv3x3(out_ch, out_ch, init_scale=init_scale)
        if in_ch != out_ch:
            if conv_shortcut:
                self.Conv_2 = conv3x3(in_ch, out_ch)
            else:
                self.NIN_0 = NIN(in_ch, out_ch)
        self.skip_rescale, self.act, self.out_ch, self.conv_shortcut = skip_rescale, act, out_ch, conv_shortcut

    def forward(self, x, temb=None):
        h = self.Conv_0(self.act(self.GroupNorm_0(x)))
        if temb is not None:
            h = h + self.Dense_0(self.act(temb))[:, :, None, None]
        h = self.Conv_1(self.Dropout_0(self.act(self.GroupNorm_1(h))))
        if x.shape[1] != self.out_ch:
            x = self.Conv_2(x) if self.conv_shortcut else self.NIN_0(x)
        return _skip(x, h, self.skip_rescale)


class ResnetBlockBigGANpp(nn.Module):
    """BigGAN's residual block (resblock_type='biggan'), resampling inside the block (FIR or naive)."""

    def __init__(self, act, in_ch, out_ch=None, temb_dim=None, up=False, down=False, dropout=0.1,
                 fir=False, fir_kernel=(1, 3, 3, 1), skip_rescale=True, init_scale=0.0):
        super().__init__()
        out_ch = out_ch if out_ch else in_ch
        self.GroupNorm_0 = group_norm(in_ch)
        self.up, self.down, self.fir, self.fir_kernel = up, down, fir, tuple(fir_kernel)
        self.Conv_0 = conv3x3(in_ch, out_ch)
        if temb_dim is not None:
            self.Dense_0 = dense(temb_dim, out_ch)
        self.GroupNorm_1 = group_norm(out_ch)
        self.Dropout_0 = nn.Dropout(dropout)
        self.Conv_1 = conv3x3(out_ch, out_ch, init_scale=init_scale)
        if in_ch != out_ch or up or down:
            self.Conv_2 = conv1x1(in_ch, out_ch)
        self.skip_rescale, self.act, self.in_ch, self.out_ch = skip_rescale, act, in_ch, out_ch

    def _resample(self, x):
        if self.up:
            return (firlib.upsample_2d(x, self.fir_kernel, factor=2) if self.fir
                    else firlib.naive_upsample_2d(x, factor=2))
        if self.down:
            return (firlib.downsample_2d(x, self.fir_kernel, factor=2) if self.fir
                    else firlib.naive_downsample_2d(x, factor=2))
        return x

    def forward(self, x, temb=None):
        h = self.act(self.GroupNorm_0(x))
        h, x = self._resample(h), self._resample(x)
        h = self.Conv_0(h)
        if temb is not None:
            h = h + self.Dense_0(self.act(temb))[:, :, None, None]
        h = self.Conv_1(self.Dropout_0(self.act(self.GroupNorm_1(h))))
        if self.in_ch != self.out_ch or self.up or self.down:
            x = self.Conv_2(x)
        return _skip(x, h, self.skip_rescale)
