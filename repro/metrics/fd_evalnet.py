"""`fd_evalnet`: the Frechet distance (thesis Eq. 5.7) on the suite's own evaluator features.

For the embedded datasets, where pytorch-fid's Inception features mean little (8x8 digits,
32x64 synthetic scenes), the evaluator network trained by `repro.trainers.evaluator` gives the
feature space. It is another metric than the papers' `fid` and always carries its own name.
"""
from __future__ import annotations

import torch

from repro.metrics.frechet import frechet_distance_from_features


@torch.no_grad()
def evalnet_features(net: torch.nn.Module, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Penultimate features [N, D] of images in [0, 1]."""
    device = next(net.parameters()).device
    was = net.training
    net.eval()
    feats = [net.features(images[i: i + batch_size].to(device).float()).cpu()
             for i in range(0, images.shape[0], batch_size)]
    net.train(was)
    return torch.cat(feats).double()


def fd_evalnet(net: torch.nn.Module, real: torch.Tensor, fake: torch.Tensor,
               allow_rank_deficient: bool = False) -> float:
    """Frechet distance between evaluator features of real and generated images.

    Refuses (InsufficientSamples) when either set has no more images than feature dimensions.
    """
    return frechet_distance_from_features(evalnet_features(net, real), evalnet_features(net, fake),
                                          allow_rank_deficient=allow_rank_deficient)
