"""Segmentation guidance for semantic image synthesis (000 thesis Sec. 4.5, 5.2.5).

The conditional score is grad log p_t(x) + s(t) grad_x log p_t(y | x) (thesis Eq. 4.22, 5.6):
a noise-conditional segmenter p_theta(y | x(t), noise level) scores the current sample
against the target map y, and its gradient, scaled by s(t), is added to the unconditional
score at every score evaluation of the sampler (corrector and predictor alike).

The segmenter sees what it saw in training: the sample min-max normalised per sample to
[0, 1] (Eq. 5.3) and the noise channel (log sigma or t, as it was trained), the noise level
being the score SDE's sigma(t) at the sampling time.

Two readings of the guidance, both kept and named (`GuidanceSettings`):
- objective `log_prob` (the text, Eq. 4.22): grad of sum_pixels log p(y_ij | x);
  objective `prob` (the authors' public code): grad of the summed softmax probability of the
  target class;
- `chain_rule=True` differentiates through the normalisation (the gradient with respect to x,
  as Eq. 4.22 asks); `chain_rule=False` takes the gradient with respect to the normalised
  image and adds it as it is (the authors' code).
The scale s(t) is Eq. 5.5 with its two thresholds as parameters (thesis: t_start 0.8 and
t_decay 0.45 for Cityscapes, 0.7 for S-FLCKR; the authors' code hard-codes 0.7 and 0.45), plus
the two on/off windows of the thesis's Fig. 5.3 and 5.4 experiments.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable

import torch
import torch.nn.functional as F

OBJECTIVES = ("log_prob", "prob")
SCHEDULES = ("eq5_5", "off_below", "on_below", "constant")


def normalize_per_sample(x: torch.Tensor) -> torch.Tensor:
    """Min-max normalise every sample to [0, 1] (thesis Eq. 5.3)."""
    flat = x.flatten(1)
    shape = (-1,) + (1,) * (x.dim() - 1)
    lo, hi = flat.min(dim=1).values.view(shape), flat.max(dim=1).values.view(shape)
    return (x - lo) / (hi - lo).clamp_min(1e-12)


def eq5_5_scale(t: torch.Tensor, s0: float, t_start: float = 0.8, t_decay: float = 0.45) -> torch.Tensor:
    """s(t) of thesis Eq. 5.5: 0 for t > t_start, s0 for t_decay < t <= t_start,
    s0 t^2 / t_decay^2 for t <= t_decay."""
    t = torch.as_tensor(t, dtype=torch.float64)
    ramp = s0 * t**2 / t_decay**2 if t_decay > 0 else torch.zeros_like(t)
    return torch.where(t > t_start, torch.zeros_like(t), torch.where(t > t_decay, torch.full_like(t, s0), ramp))


@dataclass(frozen=True)
class ScaleSchedule:
    """The scale s(t) as a function of the sampling time.

    kind `eq5_5`: thesis Eq. 5.5 with (t_start, t_decay);
    `off_below`: s0 for t > t_stop, 0 at and below (the guidance switched off at t_stop, Fig. 5.3);
    `on_below`: s0 for t < t_start, 0 at and above (switched on at t_start, Fig. 5.4);
    `constant`: s0 everywhere (the static factor of Sec. 5.1 and the start of Sec. 5.2.5).
    """

    kind: str = "eq5_5"
    s0: float = 0.002
    t_start: float = 0.8
    t_decay: float = 0.45
    t_stop: float = 0.0

    def __post_init__(self):
        if self.kind not in SCHEDULES:
            raise ValueError(f"unknown guidance schedule {self.kind!r}; choose one of {', '.join(SCHEDULES)}")
        if not (math.isfinite(self.s0) and self.s0 >= 0):
            raise ValueError(f"guidance scale s0 must be finite and >= 0, got {self.s0}")
        if self.kind == "eq5_5" and not 0.0 <= self.t_decay <= self.t_start:
            raise ValueError(f"Eq. 5.5 needs 0 <= t_decay <= t_start, got t_decay={self.t_decay}, "
                             f"t_start={self.t_start}")

    def __call__(self, t: torch.Tensor) -> torch.Tensor:
        """s(t) for a tensor of times, float64."""
        t = torch.as_tensor(t, dtype=torch.float64)
        s0 = torch.full_like(t, self.s0)
        if self.kind == "eq5_5":
            return eq5_5_scale(t, self.s0, self.t_start, self.t_decay)
        if self.kind == "off_below":
            return torch.where(t > self.t_stop, s0, torch.zeros_like(t))
        if self.kind == "on_below":
            return torch.where(t < self.t_start, s0, torch.zeros_like(t))
        return s0


@dataclass(frozen=True)
class GuidanceSettings:
    """Which reading of the guidance produced a result (recorded in every result)."""

    objective: str = "log_prob"
    chain_rule: bool = True
    normalize: bool = True   # Eq. 5.3 before the segmenter; False only for segmenters of raw x (toys)

    def __post_init__(self):
        if self.objective not in OBJECTIVES:
            raise ValueError(f"unknown guidance objective {self.objective!r}; choose one of {', '.join(OBJECTIVES)}")

    def describe(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SegmenterNoise:
    """How the guiding segmenter was conditioned on noise: its channel value for a noise level
    sigma. `log_sigma` gives log sigma; `t` gives the segmenter's own VE time of sigma,
    log(sigma / sigma_min) / log(sigma_max / sigma_min) (thesis Eq. 5.2 inverted), so a
    segmenter trained with another sigma_max still reads the noise actually in the sample."""

    encoding: str
    sigma_min: float
    sigma_max: float

    def channel(self, sigma: torch.Tensor) -> torch.Tensor:
        if self.encoding == "log_sigma":
            return torch.log(sigma)
        if self.encoding == "t":
            return torch.log(sigma / self.sigma_min) / math.log(self.sigma_max / self.sigma_min)
        raise ValueError(f"unknown noise encoding {self.encoding!r}")


def target_objective(logits: torch.Tensor, target: torch.Tensor, objective: str,
                     ignore_index: int | None = None) -> torch.Tensor:
    """Per-sample objective [B]: sum over pixels of log p(y_ij) (`log_prob`) or p(y_ij) (`prob`)."""
    log_p = F.log_softmax(logits if logits.dtype == torch.float64 else logits.float(), dim=1)
    valid = torch.ones_like(target, dtype=torch.bool) if ignore_index is None else target != ignore_index
    picked = log_p.gather(1, target.clamp_min(0).unsqueeze(1)).squeeze(1)
    if objective == "prob":
        picked = picked.exp()
    elif objective != "log_prob":
        raise ValueError(f"unknown guidance objective {objective!r}")
    return (picked * valid).flatten(1).sum(1)


def segmentation_log_likelihood_grad(segmenter: Callable, x: torch.Tensor, target: torch.Tensor,
                                     level: torch.Tensor, settings: GuidanceSettings,
                                     ignore_index: int | None = None) -> torch.Tensor:
    """grad_x of the per-sample objective of `segmenter(normalised x, level)` against `target`.

    One forward and one backward pass in float32 (float64 stays float64); the result has x's
    dtype. Each sample's gradient depends on that sample alone (the objective is a sum of
    per-sample terms and the segmenter is used in eval mode); bit for bit so only where the
    segmenter's own kernels are batch-invariant (CPU float64 convolutions are; float32 ones
    differ from one-by-one in the last bits).
    """
    work = torch.float64 if x.dtype == torch.float64 else torch.float32
    with torch.enable_grad():
        x_ = x.detach().to(work).requires_grad_(True)
        if not settings.normalize:
            inp = wrt = x_
        elif settings.chain_rule:
            inp = normalize_per_sample(x_)
            wrt = x_
        else:  # the authors' code: the gradient with respect to the normalised image itself
            inp = normalize_per_sample(x_).detach().requires_grad_(True)
            wrt = inp
        obj = target_objective(segmenter(inp, level), target, settings.objective, ignore_index)
        (grad,) = torch.autograd.grad(obj.sum(), wrt)
    return grad.to(x.dtype)


class SegmentationGuidance:
    """`guidance(x, t)` for the score-SDE samplers: s(t) grad_x log p_t(y | x) (thesis Eq. 5.6).

    `sigma_of_t` is the score SDE's noise level sigma(t); `noise` says how the segmenter reads
    it. Where s(t) is 0 for every sample no segmenter pass is made. `calls` counts segmenter
    forward+backward passes (for the cost benchmark).
    """

    def __init__(self, segmenter: Callable, target: torch.Tensor, schedule: ScaleSchedule,
                 sigma_of_t: Callable[[torch.Tensor], torch.Tensor], noise: SegmenterNoise,
                 settings: GuidanceSettings = GuidanceSettings(), ignore_index: int | None = None):
        self.segmenter, self.target, self.schedule = segmenter, target.long(), schedule
        self.sigma_of_t, self.noise, self.settings, self.ignore_index = sigma_of_t, noise, settings, ignore_index
        self.calls = 0

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t, device=x.device).reshape(-1).expand(x.shape[0])
        work = torch.float64 if x.dtype == torch.float64 else torch.float32
        scale = self.schedule(t.detach().cpu()).to(device=x.device, dtype=work)
        if not bool((scale != 0).any()):
            return torch.zeros_like(x)
        level = self.noise.channel(self.sigma_of_t(t).to(work))
        self.calls += 1
        grad = segmentation_log_likelihood_grad(self.segmenter, x, self.target.to(x.device), level,
                                                self.settings, self.ignore_index)
        return (scale.reshape((-1,) + (1,) * (x.dim() - 1)) * grad.to(work)).to(x.dtype)
