"""ADM's noise-conditional encoder ("half U-Net", Dhariwal & Nichol 2021) as discriminator guidance uses it.

Kim et al.'s discriminator (alsdudrla10/DG; the 002 thesis, Sec. 11.2: "the encoders of two U-Net
structures; the first is frozen and the second fine-tuned") is two of these encoders:

- the *feature extractor*: ADM's classifier for 32x32 images (width 128, 4 residual blocks per
  level, channel multipliers (1, 2, 4), attention at 32, 16 and 8 pixels, scale-shift norm,
  residual down-sampling), pretrained on ImageNet 32x32 and frozen; its middle-block output
  (512 x 8 x 8 on CIFAR-10) is the feature map;
- the *discriminator head*: the same architecture at image size 8 on those 512 channels
  (width 128, 2 blocks, one level, attention everywhere), ending in attention pooling to one logit.

Both take the VP time tau in [0, 1] and embed 999 tau sinusoidally (ADM's timestep scale).
The module and parameter names follow the released checkpoints' state dicts (input_blocks.k.j...,
middle_block, out, time_embed), so `load_state_dict` reads DG's `32x32_classifier.pt` and
`discriminator_*.pt` files as they are. GroupNorm (32 groups) runs in float32 whatever the input
dtype, as ADM does. The head returns a logit; DG applies a sigmoid and clips d to [1e-5, 1 - 1e-5],
which `repro.guidance.discriminator.discriminator_log_ratio` does on the logit.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

#: ADM's channel multipliers by image size (guided-diffusion's classifier defaults).
CHANNEL_MULT = {8: (1,), 16: (1, 2), 32: (1, 2, 4), 64: (1, 2, 3, 4), 128: (1, 1, 2, 3, 4),
                256: (1, 1, 2, 2, 4, 4)}


class GroupNorm32(nn.GroupNorm):
    """GroupNorm computed in float32 and cast back (ADM's normalisation)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w, b = self.weight.float(), self.bias.float()
        return F.group_norm(x.float(), self.num_groups, w, b, self.eps).type(x.dtype)


def _norm(channels: int) -> GroupNorm32:
    return GroupNorm32(32, channels)


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """[cos(t f_k), sin(t f_k)] with f_k = max_period^(-k / (dim/2)), k < dim/2 (ADM's order)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    return F.pad(emb, (0, 1)) if dim % 2 else emb


def _attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q^T k / sqrt(c)) over keys, applied to v; q, k, v are [B*heads, c, T]."""
    scale = q.shape[1] ** -0.25
    w = torch.einsum("bct,bcs->bts", q * scale, k * scale)
    w = torch.softmax(w.float(), dim=-1).type(w.dtype)
    return torch.einsum("bts,bcs->bct", w, v)


class _Stage(nn.Sequential):
    """A sequence of layers, of which residual blocks also receive the time embedding."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        for layer in self:
            x = layer(x, emb) if isinstance(layer, ResBlock) else layer(x)
        return x


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv, time embedding (scale-shift or additive), GroupNorm-SiLU-dropout-conv,
    plus a skip; `down` halves the resolution with average pooling inside the block."""

    def __init__(self, channels: int, emb_channels: int, out_channels: int | None = None,
                 dropout: float = 0.0, use_scale_shift_norm: bool = True, down: bool = False):
        super().__init__()
        out = out_channels or channels
        self.down = down
        self.use_scale_shift_norm = use_scale_shift_norm
        self.in_layers = nn.Sequential(_norm(channels), nn.SiLU(), nn.Conv2d(channels, out, 3, padding=1))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, 2 * out if use_scale_shift_norm else out))
        self.out_layers = nn.Sequential(_norm(out), nn.SiLU(), nn.Dropout(dropout), nn.Conv2d(out, out, 3, padding=1))
        nn.init.zeros_(self.out_layers[3].weight)
        nn.init.zeros_(self.out_layers[3].bias)
        self.skip_connection = nn.Identity() if out == channels else nn.Conv2d(channels, out, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.in_layers[1](self.in_layers[0](x))
        if self.down:
            h, x = F.avg_pool2d(h, 2), F.avg_pool2d(x, 2)
        h = self.in_layers[2](h)
        e = self.emb_layers(emb).type(h.dtype)[..., None, None]
        if self.use_scale_shift_norm:
            scale, shift = e.chunk(2, dim=1)
            h = self.out_layers[0](h) * (1 + scale) + shift
            h = self.out_layers[3](self.out_layers[2](self.out_layers[1](h)))
        else:
            h = self.out_layers(h + e)
        return self.skip_connection(x) + h


class AttentionBlock(nn.Module):
    """Self-attention over positions; heads split before q/k/v ("legacy" order, ADM's default)."""

    def __init__(self, channels: int, num_head_channels: int = 64):
        super().__init__()
        if channels % num_head_channels:
            raise ValueError(f"{channels} channels are not a multiple of {num_head_channels} per head")
        self.heads = channels // num_head_channels
        self.norm = _norm(channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj_out = nn.Conv1d(channels, channels, 1)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, *spatial = x.shape
        x = x.reshape(b, c, -1)
        qkv = self.qkv(self.norm(x))
        q, k, v = qkv.reshape(b * self.heads, 3 * c // self.heads, -1).chunk(3, dim=1)
        h = self.proj_out(_attention(q, k, v).reshape(b, c, -1))
        return (x + h).reshape(b, c, *spatial)


class AttentionPool2d(nn.Module):
    """CLIP-style attention pooling: the spatial mean attends to all positions; its output is kept."""

    def __init__(self, spatial: int, channels: int, num_head_channels: int, out_channels: int):
        super().__init__()
        self.positional_embedding = nn.Parameter(torch.randn(channels, spatial**2 + 1) / channels**0.5)
        self.qkv_proj = nn.Conv1d(channels, 3 * channels, 1)
        self.c_proj = nn.Conv1d(channels, out_channels, 1)
        self.heads = channels // num_head_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        x = x.reshape(b, c, -1)
        x = torch.cat([x.mean(dim=-1, keepdim=True), x], dim=-1) + self.positional_embedding.to(x.dtype)
        q, k, v = self.qkv_proj(x).chunk(3, dim=1)   # split q/k/v before heads here
        heads = [t.reshape(b * self.heads, c // self.heads, -1) for t in (q, k, v)]
        return self.c_proj(_attention(*heads).reshape(b, c, -1))[:, :, 0]


class EncoderUNet(nn.Module):
    """ADM's encoder: input conv, residual (+ attention) blocks per level with residual
    down-sampling between levels, a middle block (res, attention, res), attention pooling.

    forward(x, tau) -> [N, out_channels] logits; forward(x, tau, features=True) -> the middle
    block's feature map (what DG's feature extractor hands to the discriminator head).
    """

    def __init__(self, image_size: int, in_channels: int = 3, model_channels: int = 128,
                 out_channels: int = 1000, num_res_blocks: int = 2,
                 attention_resolutions: tuple[int, ...] = (32, 16, 8),
                 channel_mult: tuple[float, ...] | None = None, num_head_channels: int = 64,
                 dropout: float = 0.0, use_scale_shift_norm: bool = True, num_classes: int | None = None):
        super().__init__()
        if channel_mult is None:
            if image_size not in CHANNEL_MULT:
                raise ValueError(f"no ADM channel multipliers for image size {image_size}: "
                                 f"use one of {sorted(CHANNEL_MULT)} or pass channel_mult")
            channel_mult = CHANNEL_MULT[image_size]
        self.model_channels = model_channels
        # ADM lists attention by resolution; blocks check the down-sampling factor ds.
        attn_ds = {image_size // r for r in attention_resolutions if r <= image_size}
        emb = 4 * model_channels
        self.time_embed = nn.Sequential(nn.Linear(model_channels, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.label_emb = nn.Embedding(num_classes, emb) if num_classes else None
        ch = int(channel_mult[0] * model_channels)
        self.input_blocks = nn.ModuleList([_Stage(nn.Conv2d(in_channels, ch, 3, padding=1))])
        ds = 1
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                out = int(mult * model_channels)
                layers: list[nn.Module] = [ResBlock(ch, emb, out, dropout, use_scale_shift_norm)]
                ch = out
                if ds in attn_ds:
                    layers.append(AttentionBlock(ch, num_head_channels))
                self.input_blocks.append(_Stage(*layers))
            if level != len(channel_mult) - 1:
                self.input_blocks.append(_Stage(ResBlock(ch, emb, ch, dropout, use_scale_shift_norm, down=True)))
                ds *= 2
        self.middle_block = _Stage(ResBlock(ch, emb, ch, dropout, use_scale_shift_norm),
                                   AttentionBlock(ch, num_head_channels),
                                   ResBlock(ch, emb, ch, dropout, use_scale_shift_norm))
        self.out = nn.Sequential(_norm(ch), nn.SiLU(),
                                 AttentionPool2d(image_size // ds, ch, num_head_channels, out_channels))
        self.feature_channels = ch
        self.feature_size = image_size // ds

    def embed(self, tau: torch.Tensor, class_labels: torch.Tensor | None = None) -> torch.Tensor:
        e = self.time_embed(timestep_embedding(tau * 999.0, self.model_channels).to(self.time_embed[0].weight.dtype))
        if self.label_emb is not None:
            if class_labels is None:
                raise ValueError("this encoder is class-conditional: pass class_labels")
            idx = class_labels if class_labels.ndim == 1 else class_labels.argmax(dim=1)
            e = e + self.label_emb(idx)
        return e

    def forward(self, x: torch.Tensor, tau: torch.Tensor, class_labels: torch.Tensor | None = None,
                features: bool = False) -> torch.Tensor:
        tau = torch.as_tensor(tau, device=x.device).reshape(-1).expand(x.shape[0])
        emb = self.embed(tau, class_labels)
        h = x
        for stage in self.input_blocks:
            h = stage(h, emb)
        h = self.middle_block(h, emb)
        return h if features else self.out(h)


def adm_classifier(image_size: int = 32, in_channels: int = 3, width: int = 128, depth: int | None = None,
                   num_head_channels: int = 64, out_channels: int = 1000) -> EncoderUNet:
    """DG's feature extractor: ADM's classifier as DG builds it (depth 4 at 32 and 64 pixels, else 2)."""
    if depth is None:
        depth = 4 if image_size in (32, 64) else 2
    return EncoderUNet(image_size, in_channels, width, out_channels, depth, (32, 16, 8),
                       num_head_channels=num_head_channels)


def dg_head(in_channels: int = 512, feature_size: int = 8, width: int = 128, depth: int = 2,
            num_head_channels: int = 64, num_classes: int | None = None) -> EncoderUNet:
    """DG's trainable discriminator: an ADM encoder over the feature map, one logit out."""
    return EncoderUNet(feature_size, in_channels, width, 1, depth, (32, 16, 8), channel_mult=(1,),
                       num_head_channels=num_head_channels, num_classes=num_classes)


class ADMFeatures(nn.Module):
    """Wraps the classifier so that forward(x, tau) returns its middle-block features."""

    def __init__(self, classifier: EncoderUNet):
        super().__init__()
        self.classifier = classifier
        self.out_channels = classifier.feature_channels

    def forward(self, x: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        return self.classifier(x, tau, features=True)

    def out_size(self, resolution: int) -> int:
        """Side of the feature map (the classifier was built for this resolution)."""
        return self.classifier.feature_size


class ADMHead(nn.Module):
    """Wraps DG's head so that forward(features, tau) returns one logit per sample."""

    def __init__(self, head: EncoderUNet):
        super().__init__()
        self.head = head

    def forward(self, features: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        return self.head(features, tau).reshape(-1)
