"""A trained score model (kind `score_sde`, repro.trainers.score_sde) as the samplers take it.

`score_model_for(trained)` turns a loaded model into the SDE, a `score_fn(x, t)`, and the maps
between images in [0, 1] and the model's data space (VE: [0, 1]; VP / sub-VP: centred to
[-1, 1], as in the score SDE configs).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from repro.diffusion.sde import VESDE, VPSDE, SubVPSDE, net_score_fn


def make_sde(params: dict[str, Any]):
    """The SDE described by meta["sde"] ({"name": ve|vp|subvp, its parameters, "N"})."""
    name, n = params["name"], int(params.get("N", 1000))
    if name == "ve":
        return VESDE(params["sigma_min"], params["sigma_max"], N=n)
    cls = VPSDE if name == "vp" else SubVPSDE
    return cls(params["beta_min"], params["beta_max"], N=n)


def to_model_space(images: torch.Tensor, centered: bool) -> torch.Tensor:
    """Images in [0, 1] -> the data space the score model was trained on."""
    return images * 2.0 - 1.0 if centered else images


def to_images(x: torch.Tensor, centered: bool) -> torch.Tensor:
    """Model-space samples -> images clamped to [0, 1]."""
    return ((x + 1.0) / 2.0 if centered else x).clamp(0.0, 1.0)


@dataclass
class ScoreModel:
    """A trained score model as the samplers see it."""

    sde: Any
    score_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    centered: bool
    shape: tuple[int, int, int]  # (C, H, W) of one sample
    net: torch.nn.Module

    def to_images(self, x: torch.Tensor) -> torch.Tensor:
        return to_images(x, self.centered)

    def from_images(self, images: torch.Tensor) -> torch.Tensor:
        return to_model_space(images, self.centered)


def score_model_for(trained) -> ScoreModel:
    """SDE + score_fn(x, t) of a `repro.models.TrainedModel` of kind score_sde (its EMA weights)."""
    meta = trained.meta
    sde = make_sde(meta["sde"])
    net = trained.net.eval()
    # the release's networks take t as the release does (repro.nets.score_sde.model); ours take std(t)
    score_fn = net.score_fn(sde) if callable(getattr(net, "score_fn", None)) else net_score_fn(net, sde)
    return ScoreModel(sde=sde, score_fn=score_fn, centered=bool(meta["centered"]),
                      shape=tuple(meta["sample_shape"]), net=net)
