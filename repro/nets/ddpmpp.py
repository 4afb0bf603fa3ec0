"""DDPM++-style U-Net: the raw network F inside EDM's preconditioning (002 thesis Ch. 11.2).

Follows the layout EDM uses for CIFAR-10 (Song et al.'s DDPM++ as re-implemented by Karras
et al.): positional embedding of c_noise -> 2-layer MLP; residual blocks with GroupNorm,
SiLU, an additive embedding, dropout and a skip scale of sqrt(1/2); self-attention at the
listed resolutions; an encoder/decoder with skip concatenations. Channel counts, depth and
attention are configurable so the `test`/`smoke` profiles can use a tiny net.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class DDPMppConfig:
    img_resolution: int = 32          # height; decides which levels get attention (any W works)
    in_channels: int = 3
    out_channels: int = 3
    label_dim: int = 0                 # class-conditional when > 0
    augment_dim: int = 0               # EDM's augmentation labels (9 on CIFAR-10)
    model_channels: int = 128
    channel_mult: tuple[int, ...] = (2, 2, 2)
    channel_mult_emb: int = 4
    num_blocks: int = 4
    attn_resolutions: tuple[int, ...] = (16,)
    dropout: float = 0.10
    embedding_type: str = "positional"  # or 'fourier' (NCSN++ style)
    skip_scale: float = field(default=math.sqrt(0.5))

    def to_dict(self) -> dict:
        return asdict(self)


def ddpmpp_cifar10_config(**overrides) -> DDPMppConfig:
    """EDM's DDPM++ for CIFAR-10 32x32 (EDM paper Tab. 7 / train.py 'ddpmpp'): 128 base channels,
    mult [2, 2, 2], 4 blocks per level, attention at 16x16, dropout 0.13, augment_dim 9."""
    cfg = dict(img_resolution=32, in_channels=3, out_channels=3, model_channels=128,
               channel_mult=(2, 2, 2), num_blocks=4, attn_resolutions=(16,), dropout=0.13,
               augment_dim=9, embedding_type="positional")
    cfg.update(overrides)
    return DDPMppConfig(**cfg)


def _group_norm(channels: int) -> nn.GroupNorm:
    # 32 groups as in DDPM++, fewer for the tiny test nets (at least 4 channels per group).
    return nn.GroupNorm(num_groups=max(1, min(32, channels // 4)), num_channels=channels, eps=1e-6)


class PositionalEmbedding(nn.Module):
    """Transformer sinusoids of a scalar per sample (EDM's 'positional', endpoint=True)."""

    def __init__(self, channels: int, max_positions: int = 10000):
        super().__init__()
        half = channels // 2
        freqs = (1 / max_positions) ** (torch.arange(half, dtype=torch.float32) / max(half - 1, 1))
        self.register_buffer("freqs", freqs, persistent=False)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        x = t.float()[:, None] * self.freqs[None, :]
        return torch.cat([x.cos(), x.sin()], dim=1)


class FourierEmbedding(nn.Module):
    """Random Fourier features of a scalar (NCSN++'s 'fourier', scale 16)."""

    def __init__(self, channels: int, scale: float = 16.0):
        super().__init__()
        self.register_buffer("freqs", torch.randn(channels // 2) * scale)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        x = t.float()[:, None] * (2 * math.pi * self.freqs[None, :])
        return torch.cat([x.cos(), x.sin()], dim=1)


class UNetBlock(nn.Module):
    """Residual block: GN-SiLU-conv, + embedding, GN-SiLU-dropout-conv, skip; optional attention."""

    def __init__(self, cin: int, cout: int, emb_channels: int, *, up: bool = False,
                 down: bool = False, attention: bool = False, dropout: float = 0.0,
                 skip_scale: float = math.sqrt(0.5)):
        super().__init__()
        self.in_channels, self.out_channels = cin, cout
        self.up, self.down, self.skip_scale = up, down, skip_scale
        self.norm0 = _group_norm(cin)
        self.conv0 = nn.Conv2d(cin, cout, 3, padding=1)
        self.affine = nn.Linear(emb_channels, cout)
        self.norm1 = _group_norm(cout)
        self.dropout = nn.Dropout(dropout)
        self.conv1 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if (cin != cout or up or down) else None
        self.attention = attention
        if attention:
            self.norm2 = _group_norm(cout)
            self.qkv = nn.Conv2d(cout, cout * 3, 1)
            self.proj = nn.Conv2d(cout, cout, 1)
        # Near-zero init of the last layer of each residual branch, as DDPM++ (init_zero).
        for layer in [self.conv1] + ([self.proj] if attention else []):
            with torch.no_grad():
                layer.weight.mul_(1e-5)
                layer.bias.zero_()

    def _resample(self, x: torch.Tensor) -> torch.Tensor:
        if self.up:
            return F.interpolate(x, scale_factor=2, mode="nearest")
        if self.down:
            return F.avg_pool2d(x, 2)
        return x

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        orig = self._resample(x)
        h = self.conv0(self._resample(F.silu(self.norm0(x))))
        h = F.silu(self.norm1(h + self.affine(emb)[:, :, None, None]))
        h = self.conv1(self.dropout(h))
        x = (h + (self.skip(orig) if self.skip is not None else orig)) * self.skip_scale
        if self.attention:
            B, C, H, W = x.shape
            q, k, v = self.qkv(self.norm2(x)).reshape(B, 3, 1, C, H * W).transpose(-1, -2).unbind(1)
            a = F.scaled_dot_product_attention(q, k, v)         # one head, as DDPM++
            x = (self.proj(a.transpose(-1, -2).reshape(B, C, H, W)) + x) * self.skip_scale
        return x


class DDPMpp(nn.Module):
    """F(x, c_noise[, class_labels, augment_labels]) -> same shape as x (out_channels)."""

    def __init__(self, config: DDPMppConfig | None = None, **kwargs):
        super().__init__()
        cfg = config or DDPMppConfig(**kwargs)
        self.config = cfg
        self.label_dim = cfg.label_dim
        noise_ch = cfg.model_channels
        emb_ch = cfg.model_channels * cfg.channel_mult_emb
        embed = PositionalEmbedding if cfg.embedding_type == "positional" else FourierEmbedding
        self.map_noise = embed(noise_ch)
        self.map_label = nn.Linear(cfg.label_dim, noise_ch) if cfg.label_dim else None
        self.map_augment = nn.Linear(cfg.augment_dim, noise_ch, bias=False) if cfg.augment_dim else None
        self.map_layer0 = nn.Linear(noise_ch, emb_ch)
        self.map_layer1 = nn.Linear(emb_ch, emb_ch)
        blk = dict(emb_channels=emb_ch, dropout=cfg.dropout, skip_scale=cfg.skip_scale)

        # Encoder: a 3x3 conv, then per level (a downsampling block and) num_blocks blocks.
        self.conv_in = nn.Conv2d(cfg.in_channels, cfg.model_channels, 3, padding=1)
        self.enc = nn.ModuleList()
        skips = [cfg.model_channels]
        cout = cfg.model_channels
        for level, mult in enumerate(cfg.channel_mult):
            res = cfg.img_resolution >> level
            if level > 0:
                self.enc.append(UNetBlock(cout, cout, down=True, **blk))
                skips.append(cout)
            for _ in range(cfg.num_blocks):
                cin, cout = cout, cfg.model_channels * mult
                self.enc.append(UNetBlock(cin, cout, attention=res in cfg.attn_resolutions, **blk))
                skips.append(cout)

        # Decoder: mirror image, each block concatenating one encoder skip.
        self.dec = nn.ModuleList()
        self.dec_takes_skip: list[bool] = []
        for level, mult in reversed(list(enumerate(cfg.channel_mult))):
            res = cfg.img_resolution >> level
            if level == len(cfg.channel_mult) - 1:
                self.dec.extend([UNetBlock(cout, cout, attention=True, **blk), UNetBlock(cout, cout, **blk)])
                self.dec_takes_skip += [False, False]
            else:
                self.dec.append(UNetBlock(cout, cout, up=True, **blk))
                self.dec_takes_skip.append(False)
            for idx in range(cfg.num_blocks + 1):
                cin, cout = cout + skips.pop(), cfg.model_channels * mult
                attn = idx == cfg.num_blocks and res in cfg.attn_resolutions
                self.dec.append(UNetBlock(cin, cout, attention=attn, **blk))
                self.dec_takes_skip.append(True)
        self.out_norm = _group_norm(cout)
        self.out_conv = nn.Conv2d(cout, cfg.out_channels, 3, padding=1)
        with torch.no_grad():
            self.out_conv.weight.mul_(1e-5)
            self.out_conv.bias.zero_()

    def forward(self, x: torch.Tensor, noise_labels: torch.Tensor,
                class_labels: torch.Tensor | None = None,
                augment_labels: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.map_noise(noise_labels.reshape(-1).expand(x.shape[0]))
        if self.map_label is not None and class_labels is not None:
            emb = emb + self.map_label(class_labels.to(emb.dtype))
        if self.map_augment is not None and augment_labels is not None:
            emb = emb + self.map_augment(augment_labels.to(emb.dtype))
        emb = F.silu(self.map_layer1(F.silu(self.map_layer0(emb))))
        x = self.conv_in(x)
        skips = [x]
        for block in self.enc:
            x = block(x, emb)
            skips.append(x)
        for block, takes_skip in zip(self.dec, self.dec_takes_skip):
            if takes_skip:
                x = torch.cat([x, skips.pop()], dim=1)
            x = block(x, emb)
        return self.out_conv(F.silu(self.out_norm(x)))


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
