"""Classifier guidance for score-SDE samplers (000 thesis Sec. 4.5 and 5.1; Eq. 4.22, 5.6).

The conditional reverse SDE needs grad_x log p_t(x | y) = grad_x log p_t(x) + grad_x log p_t(y | x)
(thesis Eq. 4.22); the thesis weights the second term by a factor s, which for class-conditional
MNIST was a constant of about 1000 (Sec. 5.1) and for semantic synthesis a function s(t)
(Eq. 5.5, 5.6). `ClassifierGuidance` is that term, s * grad_x log p_t(y | x), as the `guidance(x, t)`
callable the PC sampler adds to the score at every evaluation (corrector and predictor alike).

The classifier is noise-conditional: `classifier(x, noise_level) -> logits [B, K]`, where
noise_level = sde.noise_level(t) (sigma(t) for the VE SDE), the same convention as the score
network's. log p_t(y | x) is the log-softmax of the logits at the requested class. Each sample's
log-probability depends on that sample alone (no batch statistics in the classifier), so the
gradient of their sum is every sample's own gradient: one forward and one backward pass a call.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

Classifier = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Scale = float | Callable[[torch.Tensor], torch.Tensor]


def _noise_level(sde, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(t, device=x.device, dtype=x.dtype)
    t = t.expand(x.shape[0]) if t.ndim == 0 else t
    return sde.noise_level(t)


def class_log_prob_grad(classifier: Classifier, x: torch.Tensor, noise_level: torch.Tensor,
                        labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(grad_x log p(y_i | x_i) per sample, log p(y_i | x_i) [B]) in x's dtype; x is not modified."""
    with torch.enable_grad():
        x_ = x.detach().requires_grad_(True)
        logits = classifier(x_, noise_level)
        log_p = torch.log_softmax(logits, dim=1).gather(1, labels.view(-1, 1).to(logits.device)).squeeze(1)
        (grad,) = torch.autograd.grad(log_p.sum(), x_)
    return grad.to(x.dtype), log_p.detach()


class ClassifierGuidance:
    """guidance(x, t) = scale * grad_x log p_t(y | x) with y = labels[i] for sample i (Eq. 4.22, 5.6).

    `labels` [B] are the requested classes of the batch being sampled; `scale` is a constant
    (thesis Sec. 5.1: ~1000) or a function of t [B] -> [B] (an s(t) as Eq. 5.5). With scale 0
    the classifier is not called.
    """

    def __init__(self, classifier: Classifier, labels: torch.Tensor, scale: Scale, sde):
        self.classifier, self.labels, self.scale, self.sde = classifier, labels, scale, sde

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if not callable(self.scale) and float(self.scale) == 0.0:
            return torch.zeros_like(x)
        if x.shape[0] != self.labels.shape[0]:
            raise ValueError(f"ClassifierGuidance has {self.labels.shape[0]} labels for a batch of {x.shape[0]}")
        grad, _ = class_log_prob_grad(self.classifier, x, _noise_level(self.sde, t, x), self.labels)
        if callable(self.scale):
            s = torch.as_tensor(self.scale(torch.as_tensor(t, device=x.device)), device=x.device, dtype=x.dtype)
            return s.reshape(-1, *([1] * (x.ndim - 1))) * grad if s.ndim else s * grad
        return float(self.scale) * grad


@torch.no_grad()
def guidance_norms(score_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], classifier: Classifier,
                   sde, x: torch.Tensor, labels: torch.Tensor, t: float | torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-sample L2 norms at time t: `score` = ||s_theta(x, t)||, `class_grad` = ||grad_x log p_t(y | x)||
    (unscaled), their `ratio` score / class_grad (the thesis's "around 1000 times smaller"), and
    `log_prob` = log p_t(y | x). All [B] on the CPU, float64."""
    b = x.shape[0]
    tt = torch.as_tensor(t, device=x.device, dtype=x.dtype)
    tt = tt.expand(b) if tt.ndim == 0 else tt
    score = score_fn(x, tt).reshape(b, -1).double().norm(dim=1)
    grad, log_p = class_log_prob_grad(classifier, x, _noise_level(sde, tt, x), labels)
    g = grad.reshape(b, -1).double().norm(dim=1)
    ratio = score / g.clamp_min(torch.finfo(torch.float64).tiny)
    return {"score": score.cpu(), "class_grad": g.cpu(), "ratio": ratio.cpu(), "log_prob": log_p.double().cpu()}
