"""Tiny evaluator networks for the embedded datasets.

Their pooled features are the feature space of the offline Frechet distance
`fd_evalnet` (DESIGN.md, 'Metrics and their names'); it is never reported as `fid`.
Keep `feature_dim` small: a Frechet distance needs more samples than dimensions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _conv_block(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    groups = 4 if out_channels % 4 == 0 else 1
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.GroupNorm(groups, out_channels),
        nn.ReLU(inplace=True),
    )


class DigitsClassifier(nn.Module):
    """Small CNN for 1-channel digit images (any size, e.g. sklearn's 8x8 or MNIST's 28x28).

    features(x [N,C,H,W]) -> [N, feature_dim]; forward(x) -> class logits [N, num_classes].
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, feature_dim: int = 64, width: int = 16):
        super().__init__()
        self.feature_dim = feature_dim
        self.body = nn.Sequential(
            _conv_block(in_channels, width, 1),
            _conv_block(width, 2 * width, 2),
            _conv_block(2 * width, 4 * width, 2),
        )
        self.project = nn.Linear(4 * width, feature_dim)
        self.classify = nn.Linear(feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.body(x).mean(dim=(2, 3))
        return F.relu(self.project(pooled))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.features(x))


class SceneFeatureNet(nn.Module):
    """Small CNN for 3-channel scene images.

    features(x) -> [N, feature_dim], the global average pool of the last block.
    forward(x) -> per-pixel logits [N, num_classes, H, W] (a tiny FCN head, upsampled
    bilinearly), so the caller can train it as a segmenter on image + label data;
    classify(x) -> image-level logits [N, num_classes] for training it as a classifier.
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 8, feature_dim: int = 64, width: int = 16):
        super().__init__()
        self.feature_dim = feature_dim
        self.body = nn.Sequential(
            _conv_block(in_channels, width, 1),
            _conv_block(width, 2 * width, 2),
            _conv_block(2 * width, 2 * width, 1),
            _conv_block(2 * width, feature_dim, 2),
        )
        self.seg_head = nn.Conv2d(feature_dim, num_classes, 1)
        self.cls_head = nn.Linear(feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).mean(dim=(2, 3))

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        return self.cls_head(self.features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.seg_head(self.body(x))
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
