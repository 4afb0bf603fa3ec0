"""Perceptual loss on VGG-19 features (pix2pixHD / SPADE's VGGLoss, lambda_vgg 10).

sum_i w_i * mean |phi_i(G(m)) - phi_i(x)| over relu1_1 ... relu5_1 with w = 1/32, 1/16, 1/8,
1/4, 1; images enter in [-1, 1] as the releases feed them. It needs torchvision's ImageNet
VGG-19 weights (vgg19-dcbb9e9d.pth): from the torch hub cache, where torchvision puts them on a
machine with internet, or a file the user names. The suite never downloads them.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from repro.errors import UserError

VGG19_FILE = "vgg19-dcbb9e9d.pth"
LAYER_WEIGHTS = (1.0 / 32, 1.0 / 16, 1.0 / 8, 1.0 / 4, 1.0)
_SLICES = ((0, 2), (2, 7), (7, 12), (12, 21), (21, 30))   # torchvision vgg19.features up to relu{1..5}_1


def vgg19_weights_path(explicit: str | None = None) -> Path | None:
    """The named file, else the hub cache's copy, else None."""
    if explicit:
        return Path(explicit)
    cached = Path(torch.hub.get_dir()) / "checkpoints" / VGG19_FILE
    return cached if cached.is_file() else None


class VGGLoss(nn.Module):
    def __init__(self, weights_path: str | Path):
        super().__init__()
        from torchvision.models import vgg19

        path = Path(weights_path)
        if not path.is_file():
            raise UserError(f"VGG-19 weights {path} not found: put torchvision's {VGG19_FILE} there (or in "
                            f"{Path(torch.hub.get_dir()) / 'checkpoints'}), or set vgg_loss: false")
        net = vgg19(weights=None)
        try:
            net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        except Exception as e:
            raise UserError(f"cannot load VGG-19 weights {path}: {type(e).__name__}; use torchvision's "
                            f"{VGG19_FILE}") from None
        features = net.features.eval().requires_grad_(False)
        self.slices = nn.ModuleList(nn.Sequential(*features[a:b]) for a, b in _SLICES)

    def train(self, mode: bool = True):   # a fixed feature extractor: always in eval mode
        return super().train(False)

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        loss = fake.new_zeros(())
        x, y = fake, real
        for w, s in zip(LAYER_WEIGHTS, self.slices):
            x, y = s(x), s(y)
            loss = loss + w * F.l1_loss(x, y.detach())
        return loss
