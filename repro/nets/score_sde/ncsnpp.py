"""NCSN++ of the score SDE release (score_sde_pytorch models/ncsnpp.py), the network behind its
CIFAR-10 checkpoints; DDPM++ is the same class with another configuration (configs.py).

The modules live in one ModuleList `all_modules`, appended in the release's order, so that the
released state dicts (`all_modules.<i>.<name>`, plus the `sigmas` buffer) load with strict keys.
Input `time_cond` is sigma(t) with the Fourier embedding (VE: log sigma is embedded; the output
is divided by sigma with `scale_by_sigma`) or the continuous timestep 999 t with the positional
embedding (VP: the output is -std(t) times the score). Uncentred data are mapped x -> 2x - 1.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
from torch import nn

from repro.nets.score_sde import layers as L


@dataclass(frozen=True)
class ScoreSdeNetConfig:
    """config.model / config.data fields of the release that shape the network."""

    image_size: int = 32
    num_channels: int = 3
    centered: bool = False
    nf: int = 128
    ch_mult: tuple[int, ...] = (1, 2, 2, 2)
    num_res_blocks: int = 4
    attn_resolutions: tuple[int, ...] = (16,)
    dropout: float = 0.1
    resamp_with_conv: bool = True
    conditional: bool = True
    fir: bool = True
    fir_kernel: tuple[int, ...] = (1, 3, 3, 1)
    skip_rescale: bool = True
    resblock_type: str = "biggan"
    progressive: str = "none"
    progressive_input: str = "residual"
    progressive_combine: str = "sum"
    init_scale: float = 0.0
    embedding_type: str = "fourier"
    fourier_scale: float = 16.0
    scale_by_sigma: bool = True
    nonlinearity: str = "swish"
    sigma_min: float = 0.01
    sigma_max: float = 50.0
    num_scales: int = 1000

    def __post_init__(self):
        checks = {"progressive": ("none", "output_skip", "residual"),
                  "progressive_input": ("none", "input_skip", "residual"),
                  "embedding_type": ("fourier", "positional"), "resblock_type": ("ddpm", "biggan"),
                  "progressive_combine": ("sum", "cat"), "nonlinearity": ("swish", "elu", "relu", "lrelu")}
        for name, allowed in checks.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"score_sde net: {name} must be one of {allowed}, got {getattr(self, name)!r}")


def _act(name: str) -> nn.Module:
    return {"swish": nn.SiLU, "elu": nn.ELU, "relu": nn.ReLU}.get(name, lambda: nn.LeakyReLU(0.2))()


class NCSNpp(nn.Module):
    def __init__(self, config: ScoreSdeNetConfig):
        super().__init__()
        c = self.config = config
        self.act = act = _act(c.nonlinearity)
        # utils.get_sigmas: geometric from sigma_max down to sigma_min (float64, as np makes it)
        self.register_buffer("sigmas", torch.exp(torch.linspace(math.log(c.sigma_max), math.log(c.sigma_min),
                                                                c.num_scales, dtype=torch.float64)))
        nf, ch_mult, nrb = c.nf, tuple(c.ch_mult), c.num_res_blocks
        self.num_resolutions = n_res = len(ch_mult)
        self.all_resolutions = res = [c.image_size // (2 ** i) for i in range(n_res)]
        attn = tuple(c.attn_resolutions)
        fir, fk, skip = c.fir, tuple(c.fir_kernel), c.skip_rescale

        modules: list[nn.Module] = []
        if c.embedding_type == "fourier":
            modules.append(L.GaussianFourierProjection(embedding_size=nf, scale=c.fourier_scale))
            embed_dim = 2 * nf
        else:
            embed_dim = nf
        if c.conditional:
            modules.append(L.dense(embed_dim, nf * 4))
            modules.append(L.dense(nf * 4, nf * 4))

        AttnBlock = functools.partial(L.AttnBlockpp, init_scale=c.init_scale, skip_rescale=skip)
        Upsample = functools.partial(L.Upsample, with_conv=c.resamp_with_conv, fir=fir, fir_kernel=fk)
        Downsample = functools.partial(L.Downsample, with_conv=c.resamp_with_conv, fir=fir, fir_kernel=fk)
        if c.progressive == "output_skip":
            self.pyramid_upsample = L.Upsample(fir=fir, fir_kernel=fk, with_conv=False)
        pyramid_upsample = functools.partial(L.Upsample, fir=fir, fir_kernel=fk, with_conv=True)
        if c.progressive_input == "input_skip":
            self.pyramid_downsample = L.Downsample(fir=fir, fir_kernel=fk, with_conv=False)
        pyramid_downsample = functools.partial(L.Downsample, fir=fir, fir_kernel=fk, with_conv=True)
        if c.resblock_type == "ddpm":
            ResnetBlock = functools.partial(L.ResnetBlockDDPMpp, act=act, dropout=c.dropout,
                                            init_scale=c.init_scale, skip_rescale=skip, temb_dim=nf * 4)
        else:
            ResnetBlock = functools.partial(L.ResnetBlockBigGANpp, act=act, dropout=c.dropout, fir=fir,
                                            fir_kernel=fk, init_scale=c.init_scale, skip_rescale=skip,
                                            temb_dim=nf * 4)
        combiner = functools.partial(L.Combine, method=c.progressive_combine)

        channels = c.num_channels
        input_pyramid_ch = channels
        modules.append(L.conv3x3(channels, nf))
        hs_c = [nf]
        in_ch = nf
        for i_level in range(n_res):  # downsampling path
            for _ in range(nrb):
                out_ch = nf * ch_mult[i_level]
                modules.append(ResnetBlock(in_ch=in_ch, out_ch=out_ch))
                in_ch = out_ch
                if res[i_level] in attn:
                    modules.append(AttnBlock(channels=in_ch))
                hs_c.append(in_ch)
            if i_level != n_res - 1:
                modules.append(Downsample(in_ch=in_ch) if c.resblock_type == "ddpm"
                               else ResnetBlock(down=True, in_ch=in_ch))
                if c.progressive_input == "input_skip":
                    modules.append(combiner(dim1=input_pyramid_ch, dim2=in_ch))
                    if c.progressive_combine == "cat":
                        in_ch *= 2
                elif c.progressive_input == "residual":
                    modules.append(pyramid_downsample(in_ch=input_pyramid_ch, out_ch=in_ch))
                    input_pyramid_ch = in_ch
                hs_c.append(in_ch)

        in_ch = hs_c[-1]
        modules.append(ResnetBlock(in_ch=in_ch))
        modules.append(AttnBlock(channels=in_ch))
        modules.append(ResnetBlock(in_ch=in_ch))

        pyramid_ch = 0
        for i_level in reversed(range(n_res)):  # upsampling path
            for _ in range(nrb + 1):
                out_ch = nf * ch_mult[i_level]
                modules.append(ResnetBlock(in_ch=in_ch + hs_c.pop(), out_ch=out_ch))
                in_ch = out_ch
            if res[i_level] in attn:
                modules.append(AttnBlock(channels=in_ch))
            if c.progressive != "none":
                if i_level == n_res - 1:
                    modules.append(L.group_norm(in_ch))
                    if c.progressive == "output_skip":
                        modules.append(L.conv3x3(in_ch, channels, init_scale=c.init_scale))
                        pyramid_ch = channels
                    else:
                        modules.append(L.conv3x3(in_ch, in_ch, bias=True))
                        pyramid_ch = in_ch
                elif c.progressive == "output_skip":
                    modules.append(L.group_norm(in_ch))
                    modules.append(L.conv3x3(in_ch, channels, bias=True, init_scale=c.init_scale))
                    pyramid_ch = channels
                else:
                    modules.append(pyramid_upsample(in_ch=pyramid_ch, out_ch=in_ch))
                    pyramid_ch = in_ch
            if i_level != 0:
                modules.append(Upsample(in_ch=in_ch) if c.resblock_type == "ddpm"
                               else ResnetBlock(in_ch=in_ch, up=True))
        assert not hs_c
        if c.progressive != "output_skip":
            modules.append(L.group_norm(in_ch))
            modules.append(L.conv3x3(in_ch, channels, init_scale=c.init_scale))
        self.all_modules = nn.ModuleList(modules)

    def forward(self, x: torch.Tensor, time_cond: torch.Tensor) -> torch.Tensor:
        c, modules, m = self.config, self.all_modules, 0
        if c.embedding_type == "fourier":
            used_sigmas = time_cond
            temb = modules[m](torch.log(used_sigmas))
            m += 1
        else:
            used_sigmas = self.sigmas[time_cond.long()]
            temb = L.timestep_embedding(time_cond, c.nf)  # float32, as the release; cast for other dtypes
            temb = temb.to(x.dtype)
        if c.conditional:
            temb = modules[m + 1](self.act(modules[m](temb)))
            m += 2
        else:
            temb = None
        if not c.centered:
            x = 2 * x - 1.0
        input_pyramid = x if c.progressive_input != "none" else None
        hs = [modules[m](x)]
        m += 1
        for i_level in range(self.num_resolutions):
            for _ in range(c.num_res_blocks):
                h = modules[m](hs[-1], temb)
                m += 1
                if h.shape[-1] in c.attn_resolutions:
                    h = modules[m](h)
                    m += 1
                hs.append(h)
            if i_level != self.num_resolutions - 1:
                h = modules[m](hs[-1]) if c.resblock_type == "ddpm" else modules[m](hs[-1], temb)
                m += 1
                if c.progressive_input == "input_skip":
                    input_pyramid = self.pyramid_downsample(input_pyramid)
                    h = modules[m](input_pyramid, h)
                    m += 1
                elif c.progressive_input == "residual":
                    input_pyramid = modules[m](input_pyramid)
                    m += 1
                    input_pyramid = (input_pyramid + h) / math.sqrt(2.0) if c.skip_rescale else input_pyramid + h
                    h = input_pyramid
                hs.append(h)
        h = modules[m](hs[-1], temb)
        h = modules[m + 1](h)
        h = modules[m + 2](h, temb)
        m += 3
        pyramid = None
        for i_level in reversed(range(self.num_resolutions)):
            for _ in range(c.num_res_blocks + 1):
                h = modules[m](torch.cat([h, hs.pop()], dim=1), temb)
                m += 1
            if h.shape[-1] in c.attn_resolutions:
                h = modules[m](h)
                m += 1
            if c.progressive != "none":
                if i_level == self.num_resolutions - 1:
                    pyramid = modules[m + 1](self.act(modules[m](h)))
                    m += 2
                elif c.progressive == "output_skip":
                    pyramid = self.pyramid_upsample(pyramid)
                    pyramid = pyramid + modules[m + 1](self.act(modules[m](h)))
                    m += 2
                else:
                    pyramid = modules[m](pyramid)
                    m += 1
                    pyramid = (pyramid + h) / math.sqrt(2.0) if c.skip_rescale else pyramid + h
                    h = pyramid
            if i_level != 0:
                h = modules[m](h) if c.resblock_type == "ddpm" else modules[m](h, temb)
                m += 1
        assert not hs
        if c.progressive == "output_skip":
            h = pyramid
        else:
            h = modules[m + 1](self.act(modules[m](h)))
            m += 2
        assert m == len(modules)
        if c.scale_by_sigma:
            h = h / used_sigmas.reshape((x.shape[0], *([1] * (x.ndim - 1)))).to(h.dtype)
        return h
