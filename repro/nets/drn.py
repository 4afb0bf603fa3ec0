"""Dilated Residual Networks (Yu, Koltun & Funkhouser, CVPR 2017) as fyu/drn builds them.

The thesis (000 Sec. 5.4.5) scores generated Cityscapes images with "a pretrained version of
the semantic segmentation network Dilated Residual Network (DRN)", as SPADE's evaluation did:
fyu/drn's `segment.py` `DRNSeg` on `drn_d_105` with 19 classes, released as
`drn-d-105_ms_cityscapes.pth`. The module and parameter names here follow that state dict:

- `base.<i>` are the DRN's children in registration order without its avgpool and fc
  (DRN-D: layer0..layer8; DRN-C: conv1, bn1, relu, layer1..layer8);
- `seg` is the 1x1 classifier conv, `up` the depthwise ConvTranspose2d (kernel 16, stride 8)
  initialised to bilinear interpolation and frozen (its weight is still in the state dict).

So `DRNSeg("drn_d_105", 19).load_state_dict(state, strict=True)` reads the released file. Files
from PyTorch < 0.4.1 lack BatchNorm's `num_batches_tracked`; torch fills it in when the state
dict carries no version metadata (`load_segmenter_state` passes a plain dict).
`DRNSegmenter` wraps it in the interface of the suite's scene evaluator (images in [0, 1] ->
per-pixel logits at the input size over the dataset's classes).
"""
from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

#: fyu/drn datasets/cityscapes/info.json: per-channel mean and std of the Cityscapes training
#: images in [0, 1], what segment.py normalises with before DRNSeg (README rounds to 6 digits).
CITYSCAPES_MEAN = (0.29010095242892997, 0.32808144844279574, 0.28696394422942517)
CITYSCAPES_STD = (0.1829540508368939, 0.18656561047509476, 0.18447508988480435)

#: Channels of the eight stages (fyu/drn's default for every DRN-C/D).
CHANNELS = (16, 32, 64, 128, 256, 512, 512, 512)


def _conv(cin: int, cout: int, k: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    """A bias-free conv that keeps the size at stride 1 (padding = dilation * (k - 1) / 2)."""
    return nn.Conv2d(cin, cout, k, stride=stride, padding=dilation * (k // 2), dilation=dilation, bias=False)


def _shortcut(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))


class BasicBlock(nn.Module):
    """Two 3x3 convs with BN; the sum with the (projected) input is skipped when residual=False
    (DRN-C's degridding layers 7 and 8, which keep their `downsample` weights unused)."""

    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None, residual: bool = True):
        super().__init__()
        self.conv1 = _conv(cin, planes, 3, stride, dilation)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv(planes, planes, 3, 1, dilation)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        if self.residual:
            h = h + (x if self.downsample is None else self.downsample(x))
        return F.relu(h)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided, dilated), 1x1 expand by 4, each with BN; always residual."""

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None, residual: bool = True):
        super().__init__()
        self.conv1 = _conv(cin, planes, 1)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv(planes, planes, 3, stride, dilation)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv(planes, planes * 4, 1)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn1(self.conv1(x)))
        h = F.relu(self.bn2(self.conv2(h)))
        h = self.bn3(self.conv3(h))
        return F.relu(h + (x if self.downsample is None else self.downsample(x)))


def _residual_stage(block: type, cin: int, planes: int, n: int, stride: int = 1, dilation: int = 1,
                    residual: bool = True) -> tuple[nn.Sequential, int]:
    """n blocks; the first strides and gets a 1x1 projection when the shape changes. Every block
    of a dilated stage uses the stage's dilation in both convs (fyu/drn's rule for the stages it
    builds with new_level=False, which are all its dilated ones)."""
    cout = planes * block.expansion
    down = _shortcut(cin, cout, stride) if stride != 1 or cin != cout else None
    blocks = [block(cin, planes, stride, dilation, down, residual)]
    blocks += [block(cout, planes, 1, dilation, None, residual) for _ in range(n - 1)]
    return nn.Sequential(*blocks), cout


def _conv_stage(cin: int, cout: int, n: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    """DRN-D's plain stages: n x (3x3 conv, BN, ReLU), the first one strided."""
    layers: list[nn.Module] = []
    for i in range(n):
        layers += [_conv(cin if i == 0 else cout, cout, 3, stride if i == 0 else 1, dilation),
                   nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


#: fyu/drn drn.py: family, residual block, blocks (convs) per stage 1..8.
ARCHS: dict[str, tuple[Literal["C", "D"], type, tuple[int, ...]]] = {
    "drn_c_26": ("C", BasicBlock, (1, 1, 2, 2, 2, 2, 1, 1)),
    "drn_c_42": ("C", BasicBlock, (1, 1, 3, 4, 6, 3, 1, 1)),
    "drn_c_58": ("C", Bottleneck, (1, 1, 3, 4, 6, 3, 1, 1)),
    "drn_d_22": ("D", BasicBlock, (1, 1, 2, 2, 2, 2, 1, 1)),
    "drn_d_24": ("D", BasicBlock, (1, 1, 2, 2, 2, 2, 2, 2)),
    "drn_d_38": ("D", BasicBlock, (1, 1, 3, 4, 6, 3, 1, 1)),
    "drn_d_40": ("D", BasicBlock, (1, 1, 3, 4, 6, 3, 2, 2)),
    "drn_d_54": ("D", Bottleneck, (1, 1, 3, 4, 6, 3, 1, 1)),
    "drn_d_56": ("D", Bottleneck, (1, 1, 3, 4, 6, 3, 2, 2)),
    "drn_d_105": ("D", Bottleneck, (1, 1, 3, 4, 23, 3, 1, 1)),
    "drn_d_107": ("D", Bottleneck, (1, 1, 3, 4, 23, 3, 2, 2)),
}


def drn_trunk(arch: str) -> tuple[nn.Sequential, int]:
    """The DRN `arch` up to its last stage (output stride 8), as fyu/drn's DRN children in order,
    and its output channels."""
    if arch not in ARCHS:
        raise ValueError(f"unknown DRN {arch!r}; known: {', '.join(ARCHS)}")
    family, block, n = ARCHS[arch]
    c = CHANNELS
    if family == "C":   # 7x7 conv, then BasicBlock stages 1 and 2
        stages: list[nn.Module] = [nn.Conv2d(3, c[0], 7, padding=3, bias=False), nn.BatchNorm2d(c[0]),
                                   nn.ReLU(inplace=True)]
        s1, ch = _residual_stage(BasicBlock, c[0], c[0], n[0])
        s2, ch = _residual_stage(BasicBlock, ch, c[1], n[1], stride=2)
    else:               # DRN-D: 7x7 conv stage, then plain conv stages 1 and 2 (no max pooling)
        stages = [nn.Sequential(nn.Conv2d(3, c[0], 7, padding=3, bias=False), nn.BatchNorm2d(c[0]),
                                nn.ReLU(inplace=True))]
        s1, s2, ch = _conv_stage(c[0], c[0], n[0]), _conv_stage(c[0], c[1], n[1], stride=2), c[1]
    stages += [s1, s2]
    for planes, blocks, stride, dilation in ((c[2], n[2], 2, 1), (c[3], n[3], 2, 1), (c[4], n[4], 1, 2),
                                             (c[5], n[5], 1, 4)):
        if blocks:
            stage, ch = _residual_stage(block, ch, planes, blocks, stride, dilation)
            stages.append(stage)
    for planes, blocks, dilation in ((c[6], n[6], 2), (c[7], n[7], 1)):   # degridding stages 7, 8
        if not blocks:
            continue
        if family == "C":
            stage, ch = _residual_stage(BasicBlock, ch, planes, blocks, dilation=dilation, residual=False)
        else:
            stage, ch = _conv_stage(ch, planes, blocks, dilation=dilation), planes
        stages.append(stage)
    return nn.Sequential(*stages), ch


def bilinear_up_kernel(size: int) -> torch.Tensor:
    """fyu/drn's fill_up_weights: w[i, j] = (1 - |i/f - c|)(1 - |j/f - c|), f = ceil(size/2),
    c = (2f - 1 - f mod 2) / (2f): bilinear interpolation as a transposed conv."""
    f = math.ceil(size / 2)
    c = (2 * f - 1 - f % 2) / (2.0 * f)
    line = 1 - (torch.arange(size, dtype=torch.float64) / f - c).abs()
    return torch.outer(line, line).float()


class DRNSeg(nn.Module):
    """fyu/drn's segmentation network: DRN trunk, 1x1 `seg` conv, x8 bilinear `up`.

    forward(x normalised [N,3,H,W]) -> class scores [N, classes, 8*ceil(H/8), 8*ceil(W/8)], i.e.
    `up(seg(base(x)))`; fyu/drn returns (log_softmax of that, seg output) and takes the argmax.
    """

    def __init__(self, arch: str = "drn_d_105", classes: int = 19):
        super().__init__()
        self.base, out_dim = drn_trunk(arch)
        self.seg = nn.Conv2d(out_dim, classes, 1)
        self.up = nn.ConvTranspose2d(classes, classes, 16, stride=8, padding=4, groups=classes, bias=False)
        for m in self.modules():   # fyu/drn's init (He normal over fan-out); weights are loaded anyway
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / (m.kernel_size[0] * m.kernel_size[1] * m.out_channels)))
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.zeros_(self.seg.bias)
        with torch.no_grad():
            self.up.weight.copy_(bilinear_up_kernel(16).expand_as(self.up.weight))
        self.up.weight.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.seg(self.base(x)))


#: The log-probability of channels DRN does not predict: exp(-1e4) is 0 in every float type, so a
#: softmax over all channels is DRN's own distribution; finite (and within float16), unlike -inf,
#: so a cross-entropy or a difference of these logits stays finite.
NEVER = -1.0e4


class DRNSegmenter(nn.Module):
    """A trained DRNSeg behind the suite's segmenter interface (that of SceneFeatureNet.forward).

    forward(images [N,3,H,W] in [0,1]) -> per-pixel log-probabilities [N, num_classes, H, W]:
    normalised with the training set's mean/std, DRNSeg, log-softmax over its classes, resized
    bilinearly to H x W when DRN's x8 output differs (as fyu/drn's multi-scale test resizes its
    log-softmax maps), then `num_classes - classes` channels that never win an argmax (below
    every DRN class: the suite's Cityscapes background 19, which DRN was never trained on).
    """

    def __init__(self, arch: str = "drn_d_105", classes: int = 19, num_classes: int = 20,
                 mean: tuple[float, ...] = CITYSCAPES_MEAN, std: tuple[float, ...] = CITYSCAPES_STD):
        super().__init__()
        if num_classes < classes:
            raise ValueError(f"num_classes {num_classes} < the {classes} classes DRN predicts")
        self.classes, self.num_classes = classes, num_classes
        self.drn = DRNSeg(arch, classes)
        # Not persistent: the stored weights are DRN's alone; the normalisation is part of the design.
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = (images - self.mean.to(images.dtype)) / self.std.to(images.dtype)
        logp = torch.log_softmax(self.drn(x).float(), dim=1)
        if logp.shape[-2:] != images.shape[-2:]:
            logp = F.interpolate(logp, size=images.shape[-2:], mode="bilinear", align_corners=False)
        extra = self.num_classes - self.classes
        if extra:
            # Strictly below every class even if a resized map went below NEVER; argmax ties
            # would go to the lower index anyway.
            low = torch.clamp(logp.amin(1, keepdim=True) - 1, max=NEVER)
            logp = torch.cat([logp, low.expand(-1, extra, -1, -1)], dim=1)
        return logp


def load_segmenter_state(net: DRNSeg, state: dict[str, torch.Tensor]) -> DRNSeg:
    """Strictly load a DRNSeg state dict (the 'module.' prefix already stripped); a plain dict,
    so BatchNorm fills the num_batches_tracked that pre-0.4.1 files lack. Raises RuntimeError
    on a key or shape mismatch."""
    net.load_state_dict(dict(state), strict=True)
    return net
