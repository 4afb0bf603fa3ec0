"""SPADE: spatially-adaptive (de)normalisation and the SPADE residual generator (Park et al. 2019;
000 thesis Sec. 3.2.3, Eq. 3.5-3.7), laid out as the authors' release (NVlabs/SPADE) builds it.

The label map enters every normalisation: activations are normalised per channel without
learned affine parameters, then scaled and shifted by gamma(m), beta(m) predicted per pixel by a
small convolutional net from the (resized) one-hot map. The paper's Eq. 1 (and the thesis's
Eq. 3.5) scales by gamma; the authors' code by (1 + gamma): both are options (`modulation`).
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

Modulation = Literal["code", "paper"]


def one_hot_map(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Label map [N, H, W] (int) -> one-hot float [N, K, H, W], the generators' input."""
    return F.one_hot(labels.long(), num_classes).permute(0, 3, 1, 2).float()


class SPADE(nn.Module):
    """h_norm = gamma(m) * (h - mu_c) / sigma_c + beta(m) (thesis Eq. 3.5; `paper`), or
    (1 + gamma(m)) * ... + beta(m) (`code`, NVlabs/SPADE normalization.py). mu_c, sigma_c: the
    batch statistics of channel c (Eq. 3.6, 3.7; `param_free="batch"`, SPADE's sync batch norm
    on one process) or per sample (`"instance"`)."""

    def __init__(self, channels: int, label_nc: int, hidden: int = 128, kernel_size: int = 3,
                 param_free: Literal["batch", "instance"] = "batch", modulation: Modulation = "code",
                 eps: float = 1e-5):
        super().__init__()
        if param_free == "batch":
            self.param_free_norm = nn.BatchNorm2d(channels, affine=False, eps=eps)
        elif param_free == "instance":
            self.param_free_norm = nn.InstanceNorm2d(channels, affine=False, eps=eps)
        else:
            raise ValueError(f"param_free must be batch or instance, got {param_free!r}")
        if modulation not in ("code", "paper"):
            raise ValueError(f"modulation must be code or paper, got {modulation!r}")
        self.modulation = modulation
        pad = kernel_size // 2
        self.mlp_shared = nn.Sequential(nn.Conv2d(label_nc, hidden, kernel_size, padding=pad), nn.ReLU())
        self.mlp_gamma = nn.Conv2d(hidden, channels, kernel_size, padding=pad)
        self.mlp_beta = nn.Conv2d(hidden, channels, kernel_size, padding=pad)

    def modulation_maps(self, x: torch.Tensor, segmap: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """gamma, beta [N, C, H, W] for activations x from the one-hot map, resized nearest to x."""
        seg = F.interpolate(segmap, size=x.shape[-2:], mode="nearest")
        actv = self.mlp_shared(seg)
        return self.mlp_gamma(actv), self.mlp_beta(actv)

    def forward(self, x: torch.Tensor, segmap: torch.Tensor) -> torch.Tensor:
        normalized = self.param_free_norm(x)
        gamma, beta = self.modulation_maps(x, segmap)
        scale = 1 + gamma if self.modulation == "code" else gamma
        return normalized * scale + beta


def _maybe_sn(conv: nn.Module, use: bool) -> nn.Module:
    return spectral_norm(conv) if use else conv


class SPADEResBlock(nn.Module):
    """SPADE ResBlk (Park et al. Fig. 4): [SPADE, LReLU(0.2), 3x3 conv] x 2 plus a shortcut,
    learned (SPADE, 1x1 conv without bias) when the channel count changes."""

    def __init__(self, fin: int, fout: int, label_nc: int, *, hidden: int = 128, spectral: bool = True,
                 param_free: str = "batch", modulation: Modulation = "code"):
        super().__init__()
        self.learned_shortcut = fin != fout
        fmid = min(fin, fout)
        self.conv_0 = _maybe_sn(nn.Conv2d(fin, fmid, 3, padding=1), spectral)
        self.conv_1 = _maybe_sn(nn.Conv2d(fmid, fout, 3, padding=1), spectral)
        kw = dict(hidden=hidden, param_free=param_free, modulation=modulation)
        self.norm_0 = SPADE(fin, label_nc, **kw)
        self.norm_1 = SPADE(fmid, label_nc, **kw)
        if self.learned_shortcut:
            self.conv_s = _maybe_sn(nn.Conv2d(fin, fout, 1, bias=False), spectral)
            self.norm_s = SPADE(fin, label_nc, **kw)

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        x_s = self.conv_s(self.norm_s(x, seg)) if self.learned_shortcut else x
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, seg), 0.2))
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx, seg), 0.2))
        return x_s + dx


def spade_layout(n_up: int) -> list[tuple[str, int, int]]:
    """The generator's blocks as (name, in_mult, out_mult) with "up" entries, in SPADE's naming.

    n_up = 5, 6, 7 are the release's `normal`, `more` (its Cityscapes setting) and `most`:
    head_0 (16 nf), up, G_middle_0, [up if >= 6], G_middle_1, then up + a channel-halving block
    four times down to nf, [up, up_4 to nf/2 if 7]. Fewer upsamplings (small embedded images)
    drop the widest halving blocks: n_up = 3 starts at 4 nf.
    """
    if not 1 <= n_up <= 7:
        raise ValueError(f"n_up must lie in [1, 7], got {n_up}")
    halving = min(n_up - 1, 4)
    top = 2 ** halving
    layout = [("head_0", top, top), ("up", 0, 0), ("G_middle_0", top, top)]
    if n_up >= 6:
        layout.append(("up", 0, 0))
    layout.append(("G_middle_1", top, top))
    for i in range(halving):
        layout += [("up", 0, 0), (f"up_{i}", top >> i, top >> (i + 1))]
    if n_up == 7:
        layout += [("up", 0, 0), ("up_4", -1, -2)]   # nf -> nf // 2 (marked by negative mults)
    return layout


class SPADEGenerator(nn.Module):
    """Label map -> image in [-1, 1] (no VAE encoder: the release's default without --use_vae).

    The one-hot map, resized to the bottom resolution (H / 2^n_up, W / 2^n_up), enters a 3x3
    conv to 16 nf channels; SPADE ResBlks and nearest 2x upsamplings follow; LReLU(0.2), a 3x3
    conv to RGB and tanh end it.
    """

    def __init__(self, label_nc: int, image_size: tuple[int, int], *, ngf: int = 64, n_up: int = 6,
                 hidden: int = 128, spectral: bool = True, param_free: str = "batch",
                 modulation: Modulation = "code", out_channels: int = 3):
        super().__init__()
        h, w = image_size
        if h % (2 ** n_up) or w % (2 ** n_up):
            raise ValueError(f"image size {h}x{w} is not divisible by 2^n_up = {2 ** n_up}")
        self.label_nc, self.image_size, self.n_up = label_nc, (h, w), n_up
        self.bottom = (h >> n_up, w >> n_up)
        layout = spade_layout(n_up)
        self.order = [name for name, _, _ in layout]
        top = layout[0][1]
        self.fc = nn.Conv2d(label_nc, top * ngf, 3, padding=1)
        kw = dict(hidden=hidden, spectral=spectral, param_free=param_free, modulation=modulation)
        self.blocks = nn.ModuleDict()
        final = ngf
        for name, a, b in layout:
            if name == "up":
                continue
            fin, fout = (a * ngf, b * ngf) if a > 0 else (ngf, ngf // 2)
            self.blocks[name] = SPADEResBlock(fin, fout, label_nc, **kw)
            final = fout
        self.conv_img = nn.Conv2d(final, out_channels, 3, padding=1)

    def forward(self, segmap: torch.Tensor) -> torch.Tensor:
        x = self.fc(F.interpolate(segmap, size=self.bottom, mode="nearest"))
        for name in self.order:
            x = F.interpolate(x, scale_factor=2, mode="nearest") if name == "up" else self.blocks[name](x, segmap)
        return torch.tanh(self.conv_img(F.leaky_relu(x, 0.2)))


def init_spade_weights(module: nn.Module, gain: float = 0.02) -> None:
    """The release's default init (`--init_type xavier --init_variance 0.02`): Xavier-normal conv
    and linear weights with gain 0.02, zero biases. Call before spectral norm wraps the weights."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            weight = m.parametrizations.weight.original if hasattr(m, "parametrizations") else m.weight
            with torch.no_grad():
                nn.init.xavier_normal_(weight, gain=gain)
                if m.bias is not None:
                    m.bias.zero_()
