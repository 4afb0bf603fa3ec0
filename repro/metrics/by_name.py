"""One Frechet metric by its name (thesis Eq. 5.7): what each name means, the features it takes,
and the error for a name that is unknown or cannot be computed here.

- `fid`: pytorch-fid's InceptionV3 pool3 features (2048 dims) with its FID weights, images
  quantised as `fid_inputs` says (repro.metrics.inception.FID_INPUTS); FIDUnavailable without
  the weights file (never downloaded);
- `fd_evalnet`: the penultimate features of the suite's evaluator network (a model of kind
  `evaluator`) on float images (repro.metrics.fd_evalnet); it needs that model.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from repro.errors import UserError
from repro.metrics.fd_evalnet import evalnet_features
from repro.metrics.inception import InceptionFeatures

FRECHET_METRICS = ("fid", "fd_evalnet")


@dataclass(frozen=True)
class FrechetFeatures:
    """The feature space of one named Frechet metric."""

    name: str
    features: Callable[[torch.Tensor], torch.Tensor]   # images [N, C, H, W] in [0, 1] -> [N, D] float64, CPU
    network: torch.nn.Module   # the network the features come from
    inputs: str     # how images reach it: a key of repro.metrics.inception.FID_INPUTS
    protocol: str   # the feature space in words, for the record


def frechet_features(name: str, device: torch.device | str | None, *,
                     evaluator: Callable[[], Any] | None = None, fid_weights: str | None = None,
                     fid_inputs: str = "uint8", fid_batch_size: int = 50) -> FrechetFeatures:
    """The features of the Frechet metric `name` (one of FRECHET_METRICS).

    `evaluator` is called (only for `fd_evalnet`) to get the trained evaluator model, a
    repro.models.TrainedModel (its .net, .name, .hash, .meta); `fid_weights` names the Inception
    weights file (None: $REPRO_FID_WEIGHTS or the torch hub cache), `fid_inputs` how images are
    quantised before it and `fid_batch_size` its batch size."""
    if name == "fid":
        extractor = InceptionFeatures(fid_weights, device, inputs=fid_inputs)   # FIDUnavailable without weights
        return FrechetFeatures("fid", lambda images: extractor.features(images, fid_batch_size).double(),
                               extractor.model, fid_inputs, extractor.protocol)
    if name == "fd_evalnet":
        if evaluator is None:
            raise UserError("`fd_evalnet` needs the suite's evaluator network (a model of role `evaluator`)")
        trained = evaluator()
        net = trained.net
        return FrechetFeatures("fd_evalnet", lambda images: evalnet_features(net, images), net, "float",
                               f"evaluator {trained.name} ({trained.meta.get('feature_dim')} dims, hash "
                               f"{trained.hash}) on float images")
    raise UserError(f"unknown Frechet metric {name!r}; choose one of {', '.join(FRECHET_METRICS)}")
