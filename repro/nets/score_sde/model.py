"""A score SDE release network as the suite's samplers call it.

`ScoreSdeScoreNet.module` is the release's NCSNpp: the attribute is named `module` so that the
state dict keys are the release's own `module.all_modules...` (saved from DataParallel) and a
released `checkpoint_N.pth['model']` loads with strict keys. Score conventions of the release
(models/utils.py get_score_fn, continuous training):
- VE: score = net(x, sigma(t)) (the net divides by sigma itself);
- VP / sub-VP: score = -net(x, 999 t) / std(t).
`forward(x, noise_level)` takes the suite's noise level std(t) (repro.diffusion.sde.net_score_fn)
and, for VP / sub-VP, recovers t from it in closed form; samplers use `score_fn(sde)`, which
passes t straight through as the release does.
"""
from __future__ import annotations

import torch
from torch import nn

from repro.nets.score_sde.ncsnpp import NCSNpp, ScoreSdeNetConfig


class ScoreSdeScoreNet(nn.Module):
    def __init__(self, config: ScoreSdeNetConfig, sde: str = "ve", beta_min: float = 0.1, beta_max: float = 20.0):
        super().__init__()
        if sde not in ("ve", "vp", "subvp"):
            raise ValueError(f"ScoreSdeScoreNet: sde must be ve, vp or subvp, got {sde!r}")
        self.module = NCSNpp(config)
        self.sde_name, self.beta_min, self.beta_max = sde, float(beta_min), float(beta_max)

    @property
    def config(self) -> ScoreSdeNetConfig:
        return self.module.config

    def _t_of_std(self, std: torch.Tensor) -> torch.Tensor:
        """Invert std(t): VP std^2 = 1 - e^{2 l(t)}, sub-VP std = 1 - e^{2 l(t)}, with
        l(t) = -(b1 - b0) t^2 / 4 - b0 t / 2 (sde_lib marginal_prob); the positive root."""
        s = std.double()
        one_minus = 1.0 - (s * s if self.sde_name == "vp" else s)
        lmc = 0.5 * torch.log(one_minus)
        a, b = 0.25 * (self.beta_max - self.beta_min), 0.5 * self.beta_min
        t = (-b + torch.sqrt(b * b - 4.0 * a * lmc)) / (2.0 * a)
        return t.to(std.dtype)

    def forward(self, x: torch.Tensor, noise_level: torch.Tensor) -> torch.Tensor:
        if self.sde_name == "ve":
            return self.module(x, noise_level)
        t = self._t_of_std(noise_level)
        return -self.module(x, t * 999) / noise_level.reshape(-1, *([1] * (x.ndim - 1)))

    def score_fn(self, sde):
        """score(x, t) exactly as the release's get_score_fn(sde, model, continuous=True)."""
        name = self.sde_name

        def score(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            if name == "ve":
                return self.module(x, sde.sigma_min * (sde.sigma_max / sde.sigma_min) ** t)
            lmc = -0.25 * t ** 2 * (sde.beta_max - sde.beta_min) - 0.5 * t * sde.beta_min
            std = torch.sqrt(1.0 - torch.exp(2.0 * lmc)) if name == "vp" else 1 - torch.exp(2.0 * lmc)
            return -self.module(x, t * 999) / std[:, None, None, None]

        return score


__all__ = ["ScoreSdeScoreNet"]
